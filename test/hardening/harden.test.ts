import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  LINUX_SECURE_BOOT_VAR,
  LINUX_YAMA_PTRACE_SCOPE,
  MACOS_CSRUTIL,
  MACOS_NVRAM,
  MACOS_RDMA_CTL,
} from '../../src/hardening/facts.ts';
import { applyHardening, notHardenedReport, refreshPlatformFacts } from '../../src/hardening/harden.ts';
import type { InspectorControl } from '../../src/hardening/inspector.ts';
import type { CommandResult, PlatformCalls, RLimit } from '../../src/hardening/platform/types.ts';
import { buildPosture } from '../../src/hardening/posture.ts';
import type { HardeningReport } from '../../src/hardening/types.ts';

interface FakeOptions {
  files?: Record<string, Uint8Array>;
  dirs?: Record<string, string[]>;
  commands?: Record<string, CommandResult>;
  overrides?: Partial<PlatformCalls>;
}

/** A well-behaved kernel in memory; overrides force individual failures. */
function fakeCalls(o: FakeOptions = {}): PlatformCalls & { calls: string[] } {
  let core: RLimit = { soft: 0n, hard: 18446744073709551615n };
  let dumpable = 1;
  const calls: string[] = [];
  const base: PlatformCalls = {
    setCoreLimit(limit) {
      calls.push(`setrlimit ${limit.soft}/${limit.hard}`);
      core = limit;
      return 0;
    },
    getCoreLimit: () => core,
    prctl(option, arg2) {
      calls.push(`prctl ${option} ${arg2}`);
      if (option === 4) dumpable = arg2;
      return option === 3 ? dumpable : 0;
    },
    ptrace(request, pid) {
      calls.push(`ptrace ${request} ${pid}`);
      return 0;
    },
    readFile: (p) => o.files?.[p],
    listDir: (p) => o.dirs?.[p],
    runCommand: (file, args) => o.commands?.[[file, ...args].join(' ')],
  };
  return Object.assign(base, o.overrides ?? {}, { calls });
}

function fakeInspector(o: Partial<InspectorControl> = {}): InspectorControl {
  let url: string | undefined;
  return {
    url: () => url,
    close: () => {
      url = undefined;
    },
    guardOpen: () => true,
    blockSigusr1: () => 'fake listener',
    ...o,
  };
}

function step(report: HardeningReport, name: string) {
  const s = report.steps.find((x) => x.name === name);
  assert.ok(s, `missing step ${name}`);
  return s;
}

const clean = () => ({ PATH: '/usr/bin' }) as NodeJS.ProcessEnv;

describe('applyHardening on Linux (injected calls)', () => {
  it('achieves and verifies every step on a cooperative kernel', () => {
    const calls = fakeCalls();
    const r = applyHardening({
      platform: 'linux',
      syscalls: calls,
      env: clean(),
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(r.applied, true);
    assert.deepEqual(
      r.steps.map((s) => [s.name, s.achieved]),
      [
        ['core-dumps-disabled', true],
        ['debugger-blocked', true],
        ['inspector-closed', true],
        ['environment-clean', true],
      ],
    );
    assert.deepEqual(calls.calls, ['setrlimit 0/0', 'prctl 4 0', 'prctl 3 0']);
    const p = buildPosture({ report: r, plaintextBoundary: 'in-process' });
    assert.equal(p.debuggerBlocked && p.coreDumpsDisabled && p.inspectorClosed && p.environmentClean, true);
    assert.equal(p.binaryHash, '');
  });

  const failures: [string, string, Partial<PlatformCalls>][] = [
    ['core-dumps-disabled', 'setrlimit fails and the limit stays', { setCoreLimit: () => -1 }],
    [
      'core-dumps-disabled',
      'getrlimit reads back a non-zero hard limit',
      { getCoreLimit: () => ({ soft: 0n, hard: 5n }) },
    ],
    ['core-dumps-disabled', 'getrlimit fails', { getCoreLimit: () => undefined }],
    [
      'core-dumps-disabled',
      'the FFI throws',
      {
        setCoreLimit: () => {
          throw new Error('koffi missing');
        },
      },
    ],
    ['debugger-blocked', 'prctl reads back dumpable=1', { prctl: (o) => (o === 3 ? 1 : 0) }],
    ['debugger-blocked', 'prctl returns -1 everywhere', { prctl: () => -1 }],
    [
      'debugger-blocked',
      'prctl throws',
      {
        prctl: () => {
          throw new Error('no libc');
        },
      },
    ],
  ];
  for (const [name, why, overrides] of failures) {
    it(`never claims ${name} when ${why}`, () => {
      const r = applyHardening({
        platform: 'linux',
        syscalls: fakeCalls({ overrides }),
        env: clean(),
        execArgv: [],
        inspector: fakeInspector(),
      });
      assert.equal(step(r, name).achieved, false);
      const p = buildPosture({ report: r, plaintextBoundary: 'none' });
      if (name === 'core-dumps-disabled') assert.equal(p.coreDumpsDisabled, false);
      if (name === 'debugger-blocked') assert.equal(p.debuggerBlocked, false);
      // The other steps are unaffected.
      assert.equal(step(r, 'inspector-closed').achieved, true);
    });
  }

  const inspectorFailures: [string, Partial<InspectorControl>, string[]?][] = [
    ['the inspector stays open', { url: () => 'ws://127.0.0.1:9229/x' }],
    ['inspector.open cannot be guarded', { guardOpen: () => false }],
    ['SIGUSR1 cannot be blocked', { blockSigusr1: () => undefined }],
    [
      'the guard throws',
      {
        guardOpen: () => {
          throw new Error('frozen');
        },
      },
    ],
    ['the process started with --inspect', {}, ['--inspect=0']],
  ];
  for (const [why, inspector, execArgv] of inspectorFailures) {
    it(`never claims inspector-closed when ${why}`, () => {
      const r = applyHardening({
        platform: 'linux',
        syscalls: fakeCalls(),
        env: clean(),
        execArgv: execArgv ?? [],
        inspector: fakeInspector(inspector),
      });
      assert.equal(step(r, 'inspector-closed').achieved, false);
      assert.equal(buildPosture({ report: r, plaintextBoundary: 'none' }).inspectorClosed, false);
    });
  }

  it('reports an unsafe start (opt-out) by name, and scrubs the variables', () => {
    const env: NodeJS.ProcessEnv = {
      PATH: '/bin',
      LD_PRELOAD: '/secret/path.so',
      NODE_OPTIONS: '--require /x',
    };
    const r = applyHardening({
      platform: 'linux',
      syscalls: fakeCalls(),
      env,
      execArgv: ['-r', '/y.cjs'],
      inspector: fakeInspector(),
    });
    assert.deepEqual(r.environment, {
      clean: false,
      startedWithUnsafeEnvironment: true,
      reexecutedClean: false,
      unsafeNames: ['-r', 'LD_PRELOAD', 'NODE_OPTIONS'],
    });
    assert.equal(step(r, 'environment-clean').achieved, false);
    assert.ok(!JSON.stringify(r).includes('/secret/path.so'), 'values never appear in the report');
    assert.deepEqual(env, { PATH: '/bin' });
    const p = buildPosture({ report: r, plaintextBoundary: 'none' });
    assert.equal(p.environmentClean, false);
    assert.equal(p.startedWithUnsafeEnvironment, true);
    assert.deepEqual(p.unsafeEnvironment, ['-r', 'LD_PRELOAD', 'NODE_OPTIONS']);
  });

  it('a clean re-executed child reports reexecutedClean and what its parent had', () => {
    const env: NodeJS.ProcessEnv = {
      PATH: '/bin',
      MESH_LLM_REEXECUTED: '1',
      MESH_LLM_PARENT_UNSAFE_ENV: 'LD_PRELOAD',
    };
    const r = applyHardening({
      platform: 'linux',
      syscalls: fakeCalls(),
      env,
      execArgv: ['--disable-sigusr1'],
      inspector: fakeInspector(),
    });
    assert.deepEqual(r.environment, {
      clean: true,
      startedWithUnsafeEnvironment: true,
      reexecutedClean: true,
      unsafeNames: ['LD_PRELOAD'],
    });
    assert.equal(env.MESH_LLM_REEXECUTED, undefined, 'markers are not inherited further');
  });

  it('a forged re-exec marker does not make a dirty process clean', () => {
    const env: NodeJS.ProcessEnv = {
      MESH_LLM_REEXECUTED: '1',
      MESH_LLM_PARENT_UNSAFE_ENV: 'LD_PRELOAD',
      LD_PRELOAD: 'x',
    };
    const r = applyHardening({
      platform: 'linux',
      syscalls: fakeCalls(),
      env,
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(r.environment.reexecutedClean, false);
    assert.equal(r.environment.clean, false);
    assert.equal(buildPosture({ report: r, plaintextBoundary: 'none' }).environmentClean, false);
  });

  it('reads Linux platform facts from EFI, Yama and sysfs', () => {
    const calls = fakeCalls({
      files: {
        [LINUX_SECURE_BOOT_VAR]: Uint8Array.of(6, 0, 0, 0, 1),
        [LINUX_YAMA_PTRACE_SCOPE]: Buffer.from('2\n'),
      },
      dirs: { '/sys/class/infiniband': ['mlx5_0'] },
    });
    const r = applyHardening({
      platform: 'linux',
      syscalls: calls,
      env: clean(),
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(r.platformFacts.secureBootEnabled, true);
    assert.equal(r.platformFacts.secureBootKnown, true);
    assert.equal(r.platformFacts.ptraceScope, '2');
    assert.equal(r.platformFacts.rdmaDisabled, false);
    assert.equal(r.platformFacts.sipKnown, false);
    const off = refreshPlatformFacts(
      r,
      fakeCalls({
        files: {
          [LINUX_SECURE_BOOT_VAR]: Uint8Array.of(6, 0, 0, 0, 0),
          [LINUX_YAMA_PTRACE_SCOPE]: Buffer.from('junk'),
        },
      }),
    );
    assert.equal(off.platformFacts.secureBootEnabled, false);
    assert.equal(off.platformFacts.ptraceScope, 'unknown');
    assert.equal(off.platformFacts.rdmaDisabled, true);
    const p = buildPosture({ report: off, plaintextBoundary: 'none' });
    assert.equal(p.secureBootEnabled, false);
    assert.equal(p.sipEnabled, false);
  });

  it('treats missing EFI variables as secure boot off (never assumed on)', () => {
    const r = applyHardening({
      platform: 'linux',
      syscalls: fakeCalls(),
      env: clean(),
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(r.platformFacts.secureBootEnabled, false);
    assert.equal(r.platformFacts.secureBootKnown, false);
    assert.equal(r.platformFacts.ptraceScope, 'unknown');
  });

  it('MESH_LLM_NO_HARDENING reports every action as not achieved', () => {
    const calls = fakeCalls();
    const r = applyHardening({
      platform: 'linux',
      syscalls: calls,
      env: { MESH_LLM_NO_HARDENING: '1' },
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(r.applied, false);
    assert.deepEqual(calls.calls, []);
    assert.equal(r.steps.filter((s) => s.achieved).length, 1); // only environment-clean
    const p = buildPosture({ report: r, plaintextBoundary: 'none' });
    assert.equal(p.debuggerBlocked || p.coreDumpsDisabled || p.inspectorClosed, false);
  });

  it('notHardenedReport claims nothing and does not scrub', () => {
    const env: NodeJS.ProcessEnv = { NODE_OPTIONS: 'x' };
    const r = notHardenedReport('not run', { platform: 'linux', syscalls: fakeCalls(), env, execArgv: [] });
    assert.equal(
      r.steps.every((s) => !s.achieved),
      true,
    );
    assert.equal(env.NODE_OPTIONS, 'x');
  });
});

describe('applyHardening on macOS (injected calls)', () => {
  const sipOn = { status: 0, stdout: 'System Integrity Protection status: enabled.\n' };
  const macCommands = {
    [`${MACOS_CSRUTIL} status`]: sipOn,
    [`${MACOS_RDMA_CTL} status`]: { status: 0, stdout: 'disabled\n' },
    [`${MACOS_NVRAM} 94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy`]: {
      status: 0,
      stdout: '94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy\t%02\n',
    },
  };

  it('uses PT_DENY_ATTACH and setrlimit, never prctl, and reads SIP/RDMA/secure boot', () => {
    const calls = fakeCalls({ commands: macCommands });
    const r = applyHardening({
      platform: 'darwin',
      syscalls: calls,
      env: clean(),
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.deepEqual(calls.calls, ['setrlimit 0/0', 'ptrace 31 0']);
    assert.equal(step(r, 'debugger-blocked').achieved, true);
    assert.equal(step(r, 'core-dumps-disabled').achieved, true);
    assert.deepEqual(
      [
        r.platformFacts.sipEnabled,
        r.platformFacts.sipKnown,
        r.platformFacts.rdmaDisabled,
        r.platformFacts.rdmaKnown,
      ],
      [true, true, true, true],
    );
    assert.equal(r.platformFacts.secureBootEnabled, true);
    assert.equal(r.platformFacts.ptraceScope, 'unknown');
    const p = buildPosture({ report: r, plaintextBoundary: 'in-process' });
    assert.equal(p.platform, 'darwin');
    assert.equal(p.sipEnabled && p.rdmaDisabled && p.secureBootEnabled && p.debuggerBlocked, true);
  });

  it('reports a refused PT_DENY_ATTACH as not blocked', () => {
    const r = applyHardening({
      platform: 'darwin',
      syscalls: fakeCalls({ commands: macCommands, overrides: { ptrace: () => -1 } }),
      env: clean(),
      execArgv: [],
      inspector: fakeInspector(),
    });
    assert.equal(step(r, 'debugger-blocked').achieved, false);
    assert.equal(buildPosture({ report: r, plaintextBoundary: 'none' }).debuggerBlocked, false);
  });

  it('reads SIP off, custom SIP, RDMA on and reduced security honestly; missing tools are unknown', () => {
    const cases: [Record<string, CommandResult>, boolean, boolean, boolean, boolean, boolean][] = [
      [
        {
          [`${MACOS_CSRUTIL} status`]: { status: 0, stdout: 'System Integrity Protection status: disabled.' },
          [`${MACOS_RDMA_CTL} status`]: { status: 0, stdout: 'enabled' },
          [`${MACOS_NVRAM} 94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy`]: {
            status: 0,
            stdout: '94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy\t%01',
          },
        },
        false,
        true,
        false,
        true,
        false,
      ],
      [
        {
          [`${MACOS_CSRUTIL} status`]: {
            status: 0,
            stdout: 'System Integrity Protection status: unknown (Custom Configuration).',
          },
        },
        false,
        true,
        false,
        false,
        false,
      ],
      [{}, false, false, false, false, false],
      [
        {
          [`${MACOS_CSRUTIL} status`]: { status: 1, stdout: 'System Integrity Protection status: enabled.' },
        },
        false,
        false,
        false,
        false,
        false,
      ],
    ];
    for (const [commands, sip, sipKnown, rdmaDisabled, rdmaKnown, secureBoot] of cases) {
      const r = applyHardening({
        platform: 'darwin',
        syscalls: fakeCalls({ commands }),
        env: clean(),
        execArgv: [],
        inspector: fakeInspector(),
      });
      const f = r.platformFacts;
      assert.deepEqual(
        [f.sipEnabled, f.sipKnown, f.rdmaDisabled, f.rdmaKnown, f.secureBootEnabled],
        [sip, sipKnown, rdmaDisabled, rdmaKnown, secureBoot],
      );
      const p = buildPosture({ report: r, plaintextBoundary: 'none' });
      assert.equal(p.sipEnabled, sip);
      assert.equal(p.rdmaDisabled, rdmaDisabled);
    }
  });
});

describe('applyHardening on an unsupported platform', () => {
  it('achieves nothing and does not throw', () => {
    const r = applyHardening({ platform: 'win32', env: clean(), execArgv: [], inspector: fakeInspector() });
    assert.equal(step(r, 'core-dumps-disabled').achieved, false);
    assert.equal(step(r, 'debugger-blocked').achieved, false);
    assert.equal(r.platformFacts.sipKnown, false);
  });
});
