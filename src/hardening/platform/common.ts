import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { CommandResult } from './types.ts';

/** koffi is loaded synchronously and lazily: hardening is synchronous and must run first. */
export function loadKoffi(): typeof import('koffi') {
  const require = createRequire(import.meta.url);
  return require('koffi') as typeof import('koffi');
}

export function readSmallFile(path: string): Uint8Array | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

export function listDirectory(path: string): string[] | undefined {
  try {
    return readdirSync(path);
  } catch {
    return undefined;
  }
}

/** Fixed binaries only, no shell, short timeout: used for read-only status tools. */
export function runStatusCommand(file: string, args: string[]): CommandResult | undefined {
  try {
    const r = spawnSync(file, args, { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.error) return undefined;
    return { status: r.status, stdout: `${r.stdout ?? ''}${r.stderr ?? ''}` };
  } catch {
    return undefined;
  }
}
