import { createRequire, syncBuiltinESMExports } from 'node:module';

/**
 * Node's own debugger doors: the inspector (opened by --inspect*, by SIGUSR1, or by
 * inspector.open()). Injectable so tests can force each part to fail.
 */
export interface InspectorControl {
  /** The inspector's websocket URL when it is listening, else undefined. */
  url(): string | undefined;
  close(): void;
  /** Replaces inspector.open (CJS and ESM views) with a refusal; true when verified. */
  guardOpen(): boolean;
  /** Makes SIGUSR1 unable to start the inspector; returns how, or undefined on failure. */
  blockSigusr1(execArgv: readonly string[]): string | undefined;
}

type InspectorModule = { url(): string | undefined; close(): void; open: (...a: unknown[]) => unknown };

function refuseOpen(): never {
  throw new Error('The inspector is disabled by mesh-llm hardening');
}

function ignoreSigusr1(): void {
  // Present only so Node does not start the inspector on SIGUSR1.
}

export function nodeInspector(): InspectorControl {
  const require = createRequire(import.meta.url);
  let mod: InspectorModule | undefined;
  let promisesMod: InspectorModule | undefined;
  try {
    mod = require('node:inspector') as InspectorModule;
    promisesMod = require('node:inspector/promises') as InspectorModule;
  } catch {
    // Node built without the inspector: nothing can be opened.
  }
  return {
    url: () => mod?.url(),
    close: () => mod?.close(),
    guardOpen() {
      if (!mod) return true;
      for (const m of [mod, promisesMod]) {
        if (!m) continue;
        Object.defineProperty(m, 'open', { value: refuseOpen, writable: false, configurable: false });
      }
      syncBuiltinESMExports();
      return mod.open === refuseOpen && (!promisesMod || promisesMod.open === refuseOpen);
    },
    blockSigusr1(execArgv) {
      if (execArgv.includes('--disable-sigusr1')) return 'started with --disable-sigusr1';
      if (!process.listeners('SIGUSR1').includes(ignoreSigusr1)) process.on('SIGUSR1', ignoreSigusr1);
      // A JS listener replaces Node's default SIGUSR1 action (starting the inspector).
      return process.listeners('SIGUSR1').length > 0 ? 'SIGUSR1 listener installed' : undefined;
    },
  };
}
