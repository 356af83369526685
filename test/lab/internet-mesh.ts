/**
 * The mesh the internet scenarios and the lab benchmark run on: a relay on its public address,
 * a public host, a host in home A (cone NAT, three dead-end private interfaces), a host in home
 * C (symmetric NAT: relayed only) and a client in home B, each a `mesh-llm serve` process.
 */
import { peerIdFromEndpointId } from '../../src/mesh/identity.ts';
import { decodeInviteToken, encodeInviteToken } from '../../src/mesh/invite.ts';
import { LabNode } from './lab-node.ts';
import { ADDR, type Lab } from './topology.ts';

export const RELAY_PORT = '4001';
export const HOME_MODEL = 'home-model';
export const PUB_MODEL = 'pub-model';
export const SLOW_MODEL = 'slow-model';

export interface InternetMesh {
  relay: LabNode;
  pub: LabNode;
  hostA: LabNode;
  hostC: LabNode;
  clientB: LabNode;
  /** What `mesh-llm invite` printed on the relay: its token, or the CLI's error. */
  relayToken: string | Error;
  /** The token the others joined with: the relay's, or one naming its public address when the relay's lacks it. */
  joinToken: string;
  close(): Promise<void>;
}

export async function startInternetMesh(
  lab: Lab,
  options: { hostCTokenDelayMs: number },
): Promise<InternetMesh> {
  const nodes: LabNode[] = [];
  try {
    // As on a VPS: the operator names the public address (item 1's --announce); a relay alone
    // cannot have it confirmed, since AutoNAT needs dial-backs from 4 peers in 4 different /8s.
    const relay = await LabNode.start(lab, 'relay', [
      '--relay',
      '--bind-port',
      RELAY_PORT,
      '--announce',
      `${ADDR.relay}:${RELAY_PORT}`,
    ]);
    nodes.push(relay);
    const relayToken = await relay.token().catch((err: Error) => err);
    // A relay token without the relay's public address cannot form this mesh; one naming it can,
    // so the scenarios after the token's own still measure their own feature.
    const { meshId, id } = (await relay.status()).node;
    const joinToken =
      typeof relayToken === 'string' &&
      decodeInviteToken(relayToken).addrs.some((a) => a.startsWith(`/ip4/${ADDR.relay}/`))
        ? relayToken
        : encodeInviteToken(meshId, [`/ip4/${ADDR.relay}/tcp/${RELAY_PORT}/p2p/${peerIdFromEndpointId(id)}`]);
    const join = ['--join', joinToken];
    const started = await Promise.allSettled([
      LabNode.start(lab, 'pub', join, { model: PUB_MODEL }),
      LabNode.start(lab, 'hostA', join, { model: HOME_MODEL }),
      LabNode.start(lab, 'hostC', join, { model: SLOW_MODEL, tokenDelayMs: options.hostCTokenDelayMs }),
      LabNode.start(lab, 'clientB', ['--client', ...join]),
    ]);
    for (const result of started) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const [pub, hostA, hostC, clientB] = nodes.slice(1) as [LabNode, LabNode, LabNode, LabNode];
    return {
      relay,
      pub,
      hostA,
      hostC,
      clientB,
      relayToken,
      joinToken,
      close: async () => {
        await Promise.all(nodes.map((n) => n.close().catch(() => undefined)));
      },
    };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.close().catch(() => undefined)));
    throw err;
  }
}
