import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { multiaddr } from '@multiformats/multiaddr';
import { dialableAddr } from '../../src/mesh/services/hole-punch.ts';
import { PunchMessage_Type, PunchMessageSchema } from '../../src/proto/gen/mesh_pb.js';

const message = (addrs: Uint8Array[]) =>
  create(PunchMessageSchema, { type: PunchMessage_Type.CONNECT, addrs });
const addr = (text: string) => multiaddr(text).bytes;

test("a peer's punch address is used only when it is one public /ip4/…/tcp/PORT", () => {
  assert.equal(dialableAddr(message([addr('/ip4/7.0.2.2/tcp/40123')])).toString(), '/ip4/7.0.2.2/tcp/40123');
  const refused: Array<[Uint8Array[], RegExp]> = [
    [[], /no address/],
    [[new Uint8Array([0xff, 0xff, 0xff])], /./],
    [[addr('/ip4/192.168.1.2/tcp/4001')], /not public/],
    [[addr('/ip4/127.0.0.1/tcp/4001')], /not public/],
    [[addr('/ip4/7.0.2.2/udp/4001/quic-v1')], /not \/ip4/],
    [[addr('/ip6/2001:db8::1/tcp/4001')], /not \/ip4/],
    [[addr('/ip4/7.0.2.2/tcp/0')], /not \/ip4/],
    [[addr('/ip4/7.0.2.2/tcp/4001/p2p-circuit')], /not \/ip4/],
  ];
  for (const [addrs, why] of refused) assert.throws(() => dialableAddr(message(addrs)), why);
});
