import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { SecureEnclaveKeyProvider } from './secure-enclave.ts';
import { SoftwareKeyProvider } from './software.ts';
import { Tpm2KeyProvider } from './tpm2.ts';
import type { AttestationKeyChoice, AttestationKeyProvider, KeyStorage } from './types.ts';

export const TPM_RM_DEVICE = '/dev/tpmrm0';

/** Host facts that decide which provider `auto` picks; injectable for tests. */
export interface ProviderEnvironment {
  platform: NodeJS.Platform;
  arch: string;
  env: NodeJS.ProcessEnv;
  tpmDevicePresent(): Promise<boolean>;
  tpm2ToolsInstalled(): Promise<boolean>;
}

export function hostProviderEnvironment(env: NodeJS.ProcessEnv = process.env): ProviderEnvironment {
  return {
    platform: process.platform,
    arch: process.arch,
    env,
    async tpmDevicePresent() {
      try {
        await access(TPM_RM_DEVICE);
        return true;
      } catch {
        return false;
      }
    },
    tpm2ToolsInstalled() {
      return new Promise((resolve) => {
        execFile('tpm2_createprimary', ['--version'], { env, timeout: 5000 }, (error) => resolve(!error));
      });
    },
  };
}

/** Which provider `auto` would choose here. */
export async function autoKeyStorage(host: ProviderEnvironment): Promise<KeyStorage> {
  if (host.platform === 'darwin' && host.arch === 'arm64') return 'secure-enclave';
  if ((await host.tpmDevicePresent()) || host.env.TPM2TOOLS_TCTI) return 'tpm2';
  return 'software';
}

/**
 * Opens the attestation key provider. `auto`: Secure Enclave on Apple Silicon, TPM 2.0 when
 * /dev/tpmrm0 exists or TPM2TOOLS_TCTI is set, else software. An explicit choice that is not
 * available is a ConfigError (never a silent downgrade).
 */
export async function selectAttestationKeyProvider(options: {
  choice: AttestationKeyChoice;
  dataDir: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  host?: ProviderEnvironment;
}): Promise<AttestationKeyProvider> {
  const host = options.host ?? hostProviderEnvironment(options.env ?? process.env);
  const { logger, dataDir } = options;
  const choice = options.choice === 'auto' ? await autoKeyStorage(host) : options.choice;
  let provider: AttestationKeyProvider;
  switch (choice) {
    case 'secure-enclave':
      if (host.platform !== 'darwin' || host.arch !== 'arm64') {
        throw new ConfigError('--attestation-key secure-enclave needs macOS on Apple Silicon');
      }
      provider = await SecureEnclaveKeyProvider.open({ logger });
      break;
    case 'tpm2':
      if (!(await host.tpmDevicePresent()) && !host.env.TPM2TOOLS_TCTI) {
        throw new ConfigError(`--attestation-key tpm2: no ${TPM_RM_DEVICE} and TPM2TOOLS_TCTI is not set`);
      }
      if (!(await host.tpm2ToolsInstalled())) {
        throw new ConfigError(
          '--attestation-key tpm2: tpm2-tools is not installed (apt-get install tpm2-tools)',
        );
      }
      // Pin the kernel resource manager unless the operator chose a TCTI.
      provider = await Tpm2KeyProvider.open({
        dataDir,
        logger,
        env: { ...host.env, TPM2TOOLS_TCTI: host.env.TPM2TOOLS_TCTI || `device:${TPM_RM_DEVICE}` },
      });
      break;
    case 'software':
      provider = await SoftwareKeyProvider.open({ dataDir, logger });
      break;
    default:
      throw new ConfigError(`unknown attestation key provider '${String(choice)}'`);
  }
  logger.info({ provider: provider.kind, hardware: provider.hardware }, 'attestation key ready');
  return provider;
}
