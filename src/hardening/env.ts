/**
 * Detection of start-up inputs that can load foreign code into this process: dynamic-loader
 * variables, Node options and preloads, debugger flags. Pure functions over (env, execArgv).
 *
 * Judgement calls (documented in docs/hardening.md):
 * - unsafe: any variable that makes the loader, Node or OpenSSL load code, and any Node option
 *   that is not the launcher's own.
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

/**
 * The launcher's own Node options: the bin's shebang (--max-semi-space-size), the re-exec's
 * --disable-sigusr1, and the heap limit an operator may size. Every other option re-executes:
 * Node keeps adding ways to run code or write memory out (--require, --import, config files
 * with nodeOptions, --heapsnapshot-signal, --report-on-signal, --cpu-prof, --inspect, ...), so
 * this is an allowlist, not a list of the known dangers.
 */
const LAUNCHER_FLAGS = new Set(['--max-semi-space-size', '--max-old-space-size', '--disable-sigusr1']);

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
  return !LAUNCHER_FLAGS.has(flagName(arg).replaceAll('_', '-'));
}

/**
 * Splits execArgv into unsafe flags (reported by flag name only: values can be paths) and the
 * launcher's own, which are kept on re-exec. execArgv holds only Node's options and their
 * values, so an argument that is not an option is the value of the option before it.
 */
export function partitionExecArgv(execArgv: readonly string[]): { unsafe: string[]; safe: string[] } {
  const unsafe: string[] = [];
  const safe: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    const value = !arg.includes('=') && i + 1 < execArgv.length && !execArgv[i + 1]!.startsWith('-');
    if (isUnsafeFlag(arg)) {
      unsafe.push(flagName(arg));
    } else {
      safe.push(arg);
      if (value) safe.push(execArgv[i + 1]!);
    }
    if (value) i++;
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
