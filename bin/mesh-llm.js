#!/usr/bin/env -S node --max-semi-space-size=4
// The flag caps V8's young generation at 4 MiB per semi-space (default 16): under many
// concurrent streams it otherwise grows by ~50-100 MiB of resident memory, with no measured gain
// in speed. Started as `node bin/mesh-llm.js`, a node needs the flag passed by hand.
// Process entry. Hardening comes first: the clean re-exec (for hosting commands started with
// code-loading variables or Node flags), then core dumps off, debugger attach blocked and the
// inspector closed. Only then is the CLI (libp2p, the backend, ...) imported.
import { fileURLToPath } from 'node:url';
import { hardenedStartup } from '../src/hardening/startup.ts';

const start = await hardenedStartup({
  argv: process.argv.slice(2),
  scriptPath: fileURLToPath(import.meta.url),
});
if (start.kind === 'exited') {
  process.exitCode = start.code;
} else {
  const { main } = await import('../src/cli/main.ts');
  process.exitCode = await main(start.args, { hardening: start.report });
}
