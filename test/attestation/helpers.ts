import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StatementFacts } from '../../src/attestation/statement.ts';
import type { SecurityPostureFacts } from '../../src/hardening/types.ts';
import type { ByteStream } from '../../src/mesh/types.ts';

export function samplePosture(overrides: Partial<SecurityPostureFacts> = {}): SecurityPostureFacts {
  return {
    platform: 'linux',
    sipEnabled: false,
    sipKnown: false,
    rdmaDisabled: false,
    rdmaKnown: false,
    secureBootEnabled: false,
    debuggerBlocked: true,
    coreDumpsDisabled: true,
    inspectorClosed: true,
    environmentClean: true,
    startedWithUnsafeEnvironment: false,
    reexecutedClean: false,
    unsafeEnvironment: [],
    ptraceScope: 'unknown',
    binaryHash: 'ab'.repeat(32),
    plaintextBoundary: 'in-process',
    hardeningVersion: '1',
    ...overrides,
  };
}

export function randomEndpointId(): string {
  return randomBytes(32).toString('hex');
}

export function randomInferenceKey(): string {
  return randomBytes(32).toString('base64');
}

export function sampleFacts(overrides: Partial<StatementFacts> = {}): StatementFacts {
  return {
    chipName: 'Test CPU',
    hardwareModel: 'test-machine',
    unifiedMemoryBytes: 17179869184,
    nodeEndpointId: randomEndpointId(),
    inferencePublicKey: randomInferenceKey(),
    version: '0.1.0',
    posture: samplePosture(),
    nowMs: Date.UTC(2026, 10, 21, 12, 0, 0),
    ...overrides,
  };
}

/** A temp dir removed by the returned cleanup function. */
export async function tempDir(
  prefix = 'mesh-llm-att-',
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** An in-memory ByteStream: `push` feeds its source, `end` closes it, writes are collected. */
class Pipe {
  readonly #queue: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  push(chunk: Uint8Array): void {
    if (this.#ended) return;
    this.#queue.push(chunk);
    this.#wake?.();
  }
  end(error?: Error): void {
    this.#ended = true;
    this.#error ??= error;
    this.#wake?.();
  }
  async *read(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = this.#queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

/** Two connected in-memory streams (what one writes, the other reads). */
export function streamPair(): [ByteStream & { aborted?: Error }, ByteStream & { aborted?: Error }] {
  const aToB = new Pipe();
  const bToA = new Pipe();
  const side = (inbound: Pipe, outbound: Pipe): ByteStream & { aborted?: Error } => {
    const stream: ByteStream & { aborted?: Error } = {
      source: inbound.read(),
      async write(chunk) {
        if (stream.aborted) throw stream.aborted;
        outbound.push(chunk);
      },
      async closeWrite() {
        outbound.end();
      },
      abort(error) {
        stream.aborted = error;
        inbound.end(error);
        outbound.end(error);
      },
    };
    return stream;
  };
  return [side(bToA, aToB), side(aToB, bToA)];
}
