/**
 * Detection of start-up inputs that can load foreign code into this process: dynamic-loader
 * variables, Node options and preloads, debugger flags. Pure functions over (env, execArgv).
 *
 * Judgement calls (documented in docs/hardening.md):
 * - unsafe: anything that makes the loader, Node or OpenSSL load code, or opens a debugger.
 * - not unsafe: NODE_EXTRA_CA_CERTS (certificate data, not code; the mesh uses Noise, not TLS),
 *   NODE_DEBUG / LD_BIND_NOW style diagnostics that do not load code.
 */

/** Exact names of variables that load code or change what code is loaded. */
const UNSAFE_ENV_NAMES = new Set([
  'LD_PRELOAD',
  'LD_LIBRARY_PATH',
  'LD_AUDIT',
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_REPL_EXTERNAL_MODULE',
  'OPENSSL_CONF', // can load OpenSSL engines/providers (native code)
  'OPENSSL_ENGINES',
  'OPENSSL_MODULES',
  'GCONV_PATH', // glibc iconv loads gconv modules from here
]);

/** Every variable with one of these prefixes is unsafe (the macOS loader reads all DYLD_*). */
const UNSAFE_ENV_PREFIXES = ['DYLD_'];

/** Internal markers passed from the re-executing parent to its clean child. */
export const REEXEC_MARKER = 'MESH_LLM_REEXECUTED';
export const REEXEC_PARENT_UNSAFE = 'MESH_LLM_PARENT_UNSAFE_ENV';
export const ALLOW_UNSAFE_ENV_VAR = 'MESH_LLM_ALLOW_UNSAFE_ENV';
export const ALLOW_UNSAFE_ENV_FLAG = '--allow-unsafe-env';
/** Internal, for the start-up benchmark's control runs: hardening is skipped and reported as such. */
export const NO_HARDENING_VAR = 'MESH_LLM_NO_HARDENING';

/** Node flags that open a debugger or load code before the application runs. */
const UNSAFE_FLAGS_WITH_VALUE = new Set([
  '--require',
  '-r',
  '--import',
  '--loader',
  '--experimental-loader',
  '--inspect-port',
  '--debug-port',
  '--env-file', // may carry NODE_OPTIONS and other variables
  '--env-file-if-exists',
]);
const UNSAFE_FLAG_PREFIXES = ['--inspect', '--debug-port', '--experimental-loader', '--loader', '--import'];
const UNSAFE_FLAGS = new Set(['--expose-internals', '--allow-natives-syntax']);

export function isUnsafeEnvName(name: string): boolean {
  return UNSAFE_ENV_NAMES.has(name) || UNSAFE_ENV_PREFIXES.some((p) => name.startsWith(p));
}

/** Sorted names (never values) of unsafe variables that are set to a non-empty value. */
export function unsafeEnvNames(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((k) => isUnsafeEnvName(k) && env[k] !== undefined && env[k] !== '')
    .sort();
}

function flagName(arg: string): string {
  const eq = arg.indexOf('=');
  return eq === -1 ? arg : arg.slice(0, eq);
}

function isUnsafeFlag(arg: string): boolean {
  const name = flagName(arg);
  if (UNSAFE_FLAGS_WITH_VALUE.has(name) || UNSAFE_FLAGS.has(name)) return true;
  return UNSAFE_FLAG_PREFIXES.some((p) => name.startsWith(p));
}

/**
 * Splits execArgv into unsafe flags (reported by flag name only: values can be paths) and the
 * rest, which is kept on re-exec. A flag that takes a separate value consumes the next arg.
 */
export function partitionExecArgv(execArgv: readonly string[]): { unsafe: string[]; safe: string[] } {
  const unsafe: string[] = [];
  const safe: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (isUnsafeFlag(arg)) {
      unsafe.push(flagName(arg));
      if (!arg.includes('=') && UNSAFE_FLAGS_WITH_VALUE.has(arg) && i + 1 < execArgv.length) i++;
      continue;
    }
    safe.push(arg);
  }
  return { unsafe, safe };
}

export interface EnvironmentFindings {
  /** Unsafe variable names and unsafe execArgv flag names, sorted, de-duplicated. */
  unsafe: string[];
  unsafeEnv: string[];
  unsafeExecArgv: string[];
  clean: boolean;
}

export function inspectEnvironment(env: NodeJS.ProcessEnv, execArgv: readonly string[]): EnvironmentFindings {
  const unsafeEnv = unsafeEnvNames(env);
  const unsafeExecArgv = [...new Set(partitionExecArgv(execArgv).unsafe)].sort();
  const unsafe = [...new Set([...unsafeEnv, ...unsafeExecArgv])].sort();
  return { unsafe, unsafeEnv, unsafeExecArgv, clean: unsafe.length === 0 };
}

/** A copy of env without unsafe variables and without the internal re-exec markers. */
export function cleanEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || isUnsafeEnvName(k) || k === REEXEC_MARKER || k === REEXEC_PARENT_UNSAFE) continue;
    out[k] = v;
  }
  return out;
}

/** Names are restricted to a safe character set before they travel in the marker variable. */
export function encodeNames(names: readonly string[]): string {
  return names.filter((n) => /^[A-Za-z0-9_.-]{1,64}$/.test(n)).join(',');
}

export function decodeNames(value: string | undefined): string[] {
  if (!value) return [];
  return [...new Set(value.split(',').filter((n) => /^[A-Za-z0-9_.-]{1,64}$/.test(n)))].sort();
}

export function userOptedOut(env: NodeJS.ProcessEnv, argv: readonly string[]): boolean {
  return env[ALLOW_UNSAFE_ENV_VAR] === '1' || argv.includes(ALLOW_UNSAFE_ENV_FLAG);
}
