import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { serveConfigFromArgs } from '../../src/cli/commands/serve.ts';
import { joinTokensFromFlags } from '../../src/cli/join-tokens.ts';
import { ConfigError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { clusterPerTest, waitFor } from '../mesh/helpers.ts';

const cluster = clusterPerTest();

function capture(lines: string[]) {
  return createLogger({
    format: 'json',
    level: 'trace',
    destination: new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    }),
  });
}

// Issue #15 finding 10: the membership secret leaked through the process list and the logs.
test('--join-file FILE and - (stdin) keep the token off the command line', async () => {
  const dir = await cluster().tempDir();
  const file = join(dir, 'invite');
  await writeFile(file, '# my mesh\n  TOKENAAA  \n\nTOKENBBB\n');
  await chmod(file, 0o600);
  const config = serveConfigFromArgs(['--join-file', file, '--client']);
  assert.deepEqual(config?.join, ['TOKENAAA', 'TOKENBBB']);
  assert.deepEqual(
    joinTokensFromFlags(['TOKENCCC'], ['-'], () => 'TOKENDDD\n'),
    ['TOKENCCC', 'TOKENDDD'],
  );
  const empty = join(dir, 'empty');
  await writeFile(empty, '\n# nothing\n');
  assert.throws(() => joinTokensFromFlags([], [empty]), /holds no invite token/);
  assert.throws(
    () => joinTokensFromFlags([], [join(dir, 'missing')]),
    (error: Error) => error instanceof ConfigError && /ENOENT/.test(error.message),
  );
});

test('the mesh id never reaches a log, at any level', async () => {
  const lines: string[] = [];
  const a = await cluster().node({ meshId: 'secret-mesh-id-4f1c9', logger: capture(lines) });
  const b = await cluster().node({ meshId: 'other-initial-mesh', logger: capture(lines) });
  await b.join(a.inviteToken());
  await waitFor(() => a.peer(b.endpointId) !== undefined && b.peer(a.endpointId) !== undefined, 'joined');
  await b.stop();
  assert.ok(lines.length > 5, 'the nodes logged');
  const leaks = lines.filter((l) => l.includes('secret-mesh-id-4f1c9') || l.includes('other-initial-mesh'));
  assert.deepEqual(leaks, []);
});
