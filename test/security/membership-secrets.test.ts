import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { Libp2p } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { serveConfigFromArgs } from '../../src/cli/commands/serve.ts';
import { joinTokensFromFlags } from '../../src/cli/join-tokens.ts';
import { ConfigError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { toByteStream } from '../../src/mesh/byte-stream.ts';
import { decodeFrames, encodeFrame } from '../../src/mesh/frames.ts';
import { decodeGossipMessage, encodeGossipMessage } from '../../src/mesh/gossip.ts';
import { PROTOCOL_GOSSIP } from '../../src/mesh/types.ts';
import { clusterPerTest, libp2pOf, waitFor } from '../mesh/helpers.ts';

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

test('a peer found without an invite (mDNS) is sent no announcement and no mesh id', async () => {
  const member = await cluster().node({ meshId: 'lan-secret-mesh-77' });
  // A stranger on the LAN that records every gossip frame it is sent.
  const stranger = await cluster().node({ meshId: 'someone-else' });
  const frames: Buffer[] = [];
  const strangerLibp2p = (stranger as unknown as { libp2p: Libp2p }).libp2p;
  await strangerLibp2p.handle(
    PROTOCOL_GOSSIP,
    async (stream) => {
      const bytes = toByteStream(stream);
      for await (const frame of decodeFrames(bytes.source)) {
        frames.push(Buffer.from(frame));
        break;
      }
      await bytes.write(encodeFrame(encodeGossipMessage([])));
      await bytes.closeWrite();
    },
    { force: true, runOnLimitedConnection: true },
  );
  // What the mDNS discovery handler does: dial the discovered peer.
  await libp2pOf(member).dial(multiaddr(stranger.addresses()[0]!));
  await waitFor(() => frames.length > 0, 'the member opens gossip with the discovered peer');
  for (const frame of frames) {
    assert.equal(decodeGossipMessage(frame).announcements.length, 0, 'no announcement sent');
    assert.ok(!frame.includes('lan-secret-mesh-77'), 'the mesh id never leaves the member');
  }
  // Two members that find each other this way still form a mesh (the proof, docs/membership.md).
  const peer = await cluster().node({ meshId: 'lan-secret-mesh-77' });
  await libp2pOf(peer).dial(multiaddr(member.addresses()[0]!));
  await waitFor(
    () => member.peer(peer.endpointId) !== undefined && peer.peer(member.endpointId) !== undefined,
    'members discovered on the LAN join up',
  );
});
