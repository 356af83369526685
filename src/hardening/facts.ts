import type { PlatformCalls } from './platform/types.ts';
import type { PlatformFacts } from './types.ts';

/** EFI global-variable GUID; the variable's data is 4 attribute bytes then one value byte. */
export const LINUX_SECURE_BOOT_VAR =
  '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c';
export const LINUX_YAMA_PTRACE_SCOPE = '/proc/sys/kernel/yama/ptrace_scope';
export const LINUX_RDMA_CLASS_DIR = '/sys/class/infiniband';
export const MACOS_CSRUTIL = '/usr/bin/csrutil';
export const MACOS_RDMA_CTL = '/usr/bin/rdma_ctl';
export const MACOS_NVRAM = '/usr/sbin/nvram';
/** Apple's secure-boot policy NVRAM variable: %02 means Full Security. */
export const MACOS_SECURE_BOOT_POLICY_VAR = '94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy';

function unknownFacts(): PlatformFacts {
  return {
    sipEnabled: false,
    sipKnown: false,
    rdmaDisabled: false,
    rdmaKnown: false,
    secureBootEnabled: false,
    secureBootKnown: false,
    ptraceScope: 'unknown',
    details: {},
  };
}

/**
 * Reads SIP, RDMA, secure boot and Yama state. Call once at start and on an explicit
 * refresh, never per request (macOS facts run commands). Unknown always reads as false.
 */
export function readPlatformFacts(platform: NodeJS.Platform, calls: PlatformCalls): PlatformFacts {
  const facts = unknownFacts();
  try {
    if (platform === 'linux') readLinuxFacts(calls, facts);
    else if (platform === 'darwin') readMacosFacts(calls, facts);
    else facts.details.platform = `no platform facts are read on ${platform}`;
  } catch (err) {
    facts.details.error = `reading platform facts failed: ${(err as Error).message}`;
  }
  return facts;
}

function readLinuxFacts(calls: PlatformCalls, facts: PlatformFacts): void {
  facts.details.sip = 'System Integrity Protection is macOS-only';

  const sb = calls.readFile(LINUX_SECURE_BOOT_VAR);
  if (sb && sb.length >= 5) {
    facts.secureBootKnown = true;
    facts.secureBootEnabled = sb[sb.length - 1] === 1;
    facts.details.secureBoot = `EFI SecureBoot variable = ${sb[sb.length - 1]}`;
  } else {
    facts.details.secureBoot = 'EFI SecureBoot variable not readable (legacy boot or no efivarfs)';
  }

  const scope = calls.readFile(LINUX_YAMA_PTRACE_SCOPE);
  const value = scope ? Buffer.from(scope).toString('utf8').trim() : '';
  if (/^[0-3]$/.test(value)) {
    facts.ptraceScope = value;
    facts.details.ptraceScope = `Yama ptrace_scope = ${value}`;
  } else {
    facts.details.ptraceScope = 'Yama not present';
  }

  // No RDMA device means no peer can DMA into this host's memory over the network.
  const devices = calls.listDir(LINUX_RDMA_CLASS_DIR);
  facts.rdmaKnown = true;
  facts.rdmaDisabled = !devices || devices.length === 0;
  facts.details.rdma = facts.rdmaDisabled
    ? 'no RDMA devices in /sys/class/infiniband'
    : `RDMA devices present: ${devices!.length}`;
}

function readMacosFacts(calls: PlatformCalls, facts: PlatformFacts): void {
  facts.details.ptraceScope = 'Yama is Linux-only';

  const sip = calls.runCommand(MACOS_CSRUTIL, ['status']);
  const sipMatch = sip?.stdout.match(/System Integrity Protection status:\s*([a-z]+)/i);
  if (sip && sip.status === 0 && sipMatch) {
    facts.sipKnown = true;
    // "unknown (Custom Configuration)" is a partially disabled SIP: not enabled.
    facts.sipEnabled = sipMatch[1]!.toLowerCase() === 'enabled';
    facts.details.sip = `csrutil: ${sipMatch[1]!.toLowerCase()}`;
  } else {
    facts.details.sip = 'csrutil status unavailable';
  }

  const rdma = calls.runCommand(MACOS_RDMA_CTL, ['status']);
  const rdmaWord = rdma?.stdout.trim().toLowerCase();
  if (rdma && rdma.status === 0 && (rdmaWord === 'disabled' || rdmaWord === 'enabled')) {
    facts.rdmaKnown = true;
    facts.rdmaDisabled = rdmaWord === 'disabled';
    facts.details.rdma = `rdma_ctl: ${rdmaWord}`;
  } else {
    facts.details.rdma = 'rdma_ctl status unavailable';
  }

  const policy = calls.runCommand(MACOS_NVRAM, [MACOS_SECURE_BOOT_POLICY_VAR]);
  const policyMatch = policy?.stdout.match(/AppleSecureBootPolicy\s+%([0-9a-f]{2})/i);
  if (policy && policy.status === 0 && policyMatch) {
    facts.secureBootKnown = true;
    facts.secureBootEnabled = policyMatch[1] === '02';
    facts.details.secureBoot = `AppleSecureBootPolicy %${policyMatch[1]}`;
  } else {
    facts.details.secureBoot = 'AppleSecureBootPolicy unavailable';
  }
}
