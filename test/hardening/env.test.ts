import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cleanEnvironment,
  decodeNames,
  encodeNames,
  inspectEnvironment,
  partitionExecArgv,
  REEXEC_MARKER,
  REEXEC_PARENT_UNSAFE,
  unsafeEnvNames,
} from '../../src/hardening/env.ts';
import { planStartup, stripStartupFlags } from '../../src/hardening/reexec.ts';

describe('unsafe environment detection', () => {
  it('finds code-loading variables by name, sorted, ignoring empty values', () => {
    const env = {
      PATH: '/usr/bin',
      LD_PRELOAD: '/tmp/evil.so',
      NODE_OPTIONS: '--require x',
      DYLD_INSERT_LIBRARIES: 'x',
      DYLD_FRAMEWORK_PATH: 'y',
      LD_LIBRARY_PATH: '',
      NODE_EXTRA_CA_CERTS: '/etc/ca.pem',
      OPENSSL_CONF: '/tmp/engine.cnf',
    };
    assert.deepEqual(unsafeEnvNames(env), [
      'DYLD_FRAMEWORK_PATH',
      'DYLD_INSERT_LIBRARIES',
      'LD_PRELOAD',
      'NODE_OPTIONS',
      'OPENSSL_CONF',
    ]);
  });

  it('splits execArgv into unsafe flags (names only) and the rest', () => {
    const r = partitionExecArgv([
      '--max-old-space-size=512',
      '--require',
      '/tmp/secret-path.cjs',
      '-r',
      'x.cjs',
      '--import=./loader.mjs',
      '--inspect-brk=0',
      '--inspect',
      '--experimental-loader',
      'l.mjs',
      '--enable-source-maps',
      '--env-file=.env',
    ]);
    // An allowlist: only the launcher's own options are kept, harmless-looking ones included.
    assert.deepEqual(r.safe, ['--max-old-space-size=512']);
    assert.deepEqual(r.unsafe, [
      '--require',
      '-r',
      '--import',
      '--inspect-brk',
      '--inspect',
      '--experimental-loader',
      '--enable-source-maps',
      '--env-file',
    ]);
    assert.ok(!r.unsafe.some((f) => f.includes('secret')));
  });

  it("treats every Node option but the launcher's own as unsafe, values never reported", () => {
    const r = partitionExecArgv([
      '--max-semi-space-size=4',
      '--experimental-config-file=/tmp/secret-cfg.json',
      '--experimental-default-config-file',
      '--heapsnapshot-signal=SIGUSR2',
      '--report-on-signal',
      '--report-signal',
      'SIGUSR2',
      '--diagnostic-dir',
      '/tmp/secret-dir',
      '--cpu-prof',
      '--max_old_space_size=64',
      '--disable-sigusr1',
    ]);
    assert.deepEqual(r.safe, ['--max-semi-space-size=4', '--max_old_space_size=64', '--disable-sigusr1']);
    assert.deepEqual(r.unsafe, [
      '--experimental-config-file',
      '--experimental-default-config-file',
      '--heapsnapshot-signal',
      '--report-on-signal',
      '--report-signal',
      '--diagnostic-dir',
      '--cpu-prof',
    ]);
    assert.ok(!JSON.stringify(r.unsafe).includes('secret'));
  });

  it('reports a clean start as clean', () => {
    const f = inspectEnvironment({ PATH: '/bin', HOME: '/root' }, ['--disable-sigusr1']);
    assert.equal(f.clean, true);
    assert.deepEqual(f.unsafe, []);
  });

  it('cleans the environment and drops internal markers', () => {
    const env = { PATH: '/bin', LD_AUDIT: 'x', [REEXEC_MARKER]: '1', [REEXEC_PARENT_UNSAFE]: 'A', KEEP: 'v' };
    assert.deepEqual(cleanEnvironment(env), { PATH: '/bin', KEEP: 'v' });
  });

  it('encodes only well-formed names in the marker and decodes defensively', () => {
    assert.equal(encodeNames(['LD_PRELOAD', '--require', 'bad name', 'x=y']), 'LD_PRELOAD,--require');
    assert.deepEqual(decodeNames('NODE_OPTIONS,LD_PRELOAD,,$(rm),LD_PRELOAD'), [
      'LD_PRELOAD',
      'NODE_OPTIONS',
    ]);
    assert.deepEqual(decodeNames(undefined), []);
  });
});

describe('planStartup', () => {
  const base = { scriptPath: '/app/bin/mesh-llm.js', supportsDisableSigusr1: true };

  it('re-executes a hosting command started with NODE_OPTIONS, cleanly', () => {
    const plan = planStartup({
      ...base,
      argv: ['serve', '--model', 'm.gguf'],
      env: { PATH: '/bin', NODE_OPTIONS: '--require p.cjs', LD_PRELOAD: 'x.so' },
      execArgv: ['--inspect', '--max-old-space-size=64'],
    });
    assert.equal(plan.action, 'reexec');
    if (plan.action !== 'reexec') return;
    assert.deepEqual(plan.execArgs, [
      '--disable-sigusr1',
      '--max-old-space-size=64',
      '/app/bin/mesh-llm.js',
      'serve',
      '--model',
      'm.gguf',
    ]);
    assert.equal(plan.env.NODE_OPTIONS, undefined);
    assert.equal(plan.env.LD_PRELOAD, undefined);
    assert.equal(plan.env.PATH, '/bin');
    assert.equal(plan.env[REEXEC_MARKER], '1');
    assert.equal(plan.env[REEXEC_PARENT_UNSAFE], '--inspect,LD_PRELOAD,NODE_OPTIONS');
  });

  it('does not loop: an already re-executed child continues', () => {
    const plan = planStartup({ ...base, argv: ['serve'], env: { LD_PRELOAD: 'x', [REEXEC_MARKER]: '1' } });
    assert.equal(plan.action, 'continue');
  });

  it('honours the opt-out flag and variable', () => {
    assert.equal(
      planStartup({
        ...base,
        argv: ['serve', '--allow-unsafe-env'],
        env: { NODE_OPTIONS: 'x' },
        execArgv: [],
      }).action,
      'continue',
    );
    assert.equal(
      planStartup({
        ...base,
        argv: ['serve'],
        env: { NODE_OPTIONS: 'x', MESH_LLM_ALLOW_UNSAFE_ENV: '1' },
        execArgv: [],
      }).action,
      'continue',
    );
  });

  it('leaves harmless commands and clean starts alone', () => {
    assert.equal(
      planStartup({ ...base, argv: ['status'], env: { NODE_OPTIONS: 'x' }, execArgv: [] }).action,
      'continue',
    );
    assert.equal(
      planStartup({ ...base, argv: ['--help'], env: { NODE_OPTIONS: 'x' }, execArgv: [] }).action,
      'continue',
    );
    assert.equal(
      planStartup({ ...base, argv: ['serve'], env: { PATH: '/bin' }, execArgv: [] }).action,
      'continue',
    );
  });

  it('omits --disable-sigusr1 where Node does not know it', () => {
    const plan = planStartup({
      ...base,
      supportsDisableSigusr1: false,
      argv: ['demo'],
      env: { NODE_PATH: 'x' },
      execArgv: [],
    });
    assert.equal(plan.action, 'reexec');
    if (plan.action === 'reexec') assert.ok(!plan.execArgs.includes('--disable-sigusr1'));
  });

  it('strips the start-up-only flag before the CLI parses argv', () => {
    assert.deepEqual(stripStartupFlags(['serve', '--allow-unsafe-env', '--port', '1']), [
      'serve',
      '--port',
      '1',
    ]);
  });
});
