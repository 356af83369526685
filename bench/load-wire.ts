/**
 * How a host should tell the mesh its load (issue #17, docs/pooling.md): by re-signing and
 * gossiping its announcement on every change, or by a LoadReport frame on a long-lived
 * /mesh-llm/load/1.0.0 stream. Measured on two real nodes in this process (host + client,
 * software attestation, E2E on, so the announcement is its real size), then the bare
 * per-message costs.
 *
 *   node bench/load-wire.ts [--quick]
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { generateKeyPair } from '@libp2p/crypto/keys';
import {
  announcementContentChanged,
  decodeAnnouncement,
  decodeSignedAnnouncement,
  signAnnouncement,
  verifySignedAnnouncement,
} from '../src/mesh/announcements.ts';
import { encodeFrame } from '../src/mesh/frames.ts';
import { endpointIdToBytes } from '../src/mesh/identity.ts';
import { PeerAnnouncementSchema } from '../src/proto/gen/mesh_pb.js';
import { decodeLoadReport, encodeLoadReport } from '../src/routing/load-reports.ts';
import { TestCluster, waitUntil } from '../test/helpers/cluster.ts';
import { startFakeOpenAi } from '../test/helpers/fake-openai-server.ts';
import { printTable } from './lib/load.ts';

const quick = process.argv.includes('--quick');
const UPDATES = quick ? 30 : 100;

async function perOp(op: () => unknown | Promise<unknown>, minMs = quick ? 150 : 400): Promise<number> {
  await op();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < minMs) {
    await op();
    n++;
  }
  return ((performance.now() - start) * 1000) / n;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const fake = await startFakeOpenAi({ model: 'm' });
const cluster = new TestCluster();
try {
  const host = await cluster.start('host', { backend: { url: fake.url, model: 'm', slots: 4 } });
  const client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
  await waitUntil(
    () => client.router.load.estimate(host.endpointId, 'm', undefined).slots === 4,
    'the client to follow the host’s load',
  );
  const record = client.mesh.peer(host.endpointId)!;

  // 1. On the wire, end to end: N changes, each waited for until the client sees it.
  let cpu = cpuMs();
  let start = performance.now();
  for (let i = 0; i < UPDATES; i++) {
    await host.mesh.updateAnnouncement({ demand: i + 1 });
    await waitUntil(
      () => client.mesh.peer(host.endpointId)?.announcement.demand === i + 1,
      'announcement',
      10_000,
    );
  }
  const annWallMs = (performance.now() - start) / UPDATES;
  const annCpuMs = (cpuMs() - cpu) / UPDATES;

  cpu = cpuMs();
  start = performance.now();
  const ends: ((served: boolean) => void)[] = [];
  for (let i = 0; i < UPDATES; i++) {
    ends.push(host.router.localLoad.begin('m'));
    await waitUntil(
      () => client.router.load.estimate(host.endpointId, 'm', undefined).load === i + 1,
      'report',
      10_000,
    );
  }
  const loadWallMs = (performance.now() - start) / UPDATES;
  const loadCpuMs = (cpuMs() - cpu) / UPDATES;
  for (const end of ends) end(true);

  // 2. The bare costs of one update, sender and each receiver.
  const key = await generateKeyPair('Ed25519');
  const announcement = create(PeerAnnouncementSchema, {
    ...record.announcement,
    endpointId: endpointIdToBytes(Buffer.from(key.publicKey.raw).toString('hex')),
  });
  let seq = announcement.announcementSeq;
  const sign = () => signAnnouncement(key, { ...announcement, announcementSeq: ++seq });
  const signed = await sign();
  const signedBytes =
    toBinary(PeerAnnouncementSchema, announcement).byteLength + signed.signature.byteLength + 4;
  const signUs = await perOp(sign);
  const encodedSigned = record.signedBytes;
  const verifyUs = await perOp(async () => {
    const s = decodeSignedAnnouncement(encodedSigned);
    const a = decodeAnnouncement(s);
    await verifySignedAnnouncement(s, a);
    announcementContentChanged(record.announcement, a);
  });
  const snapshot = host.router.localLoad.snapshot();
  const frame = encodeFrame(encodeLoadReport(snapshot));
  const encodeUs = await perOp(() => encodeFrame(encodeLoadReport(host.router.localLoad.snapshot())));
  const decodeUs = await perOp(() => decodeLoadReport(frame.subarray(1)));

  printTable(
    `Telling the mesh about a load change (${UPDATES} changes, host + client in one process)`,
    [
      'carrier',
      'bytes per peer',
      'sender µs',
      'receiver µs',
      'change seen after ms',
      'CPU ms per change, both nodes',
    ],
    [
      [
        'signed announcement, gossiped',
        String(encodedSigned.byteLength || signedBytes),
        signUs,
        verifyUs,
        annWallMs,
        annCpuMs,
      ],
      [
        'LoadReport on /mesh-llm/load/1.0.0',
        String(frame.byteLength),
        encodeUs,
        decodeUs,
        loadWallMs,
        loadCpuMs,
      ],
    ],
  );
  process.stdout.write(
    'Every announcement is also relayed by each receiver to its other peers (each verifies it\n' +
      'again); a load report goes only to the nodes that follow that host. The load stream\n' +
      'sends at most one report per 100 ms, so "seen after" includes that pacing.\n',
  );
} finally {
  await cluster.stopAll();
  await fake.close();
}
