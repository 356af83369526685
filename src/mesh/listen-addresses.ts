import { createSocket } from 'node:dgram';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';

const PORT_FILE = 'mesh-port';
const PICK_TRIES = 20;

export interface ListenPlan {
  /** Multiaddrs to listen on (TCP, and QUIC on the same port number over UDP). */
  addrs: string[];
  port: number;
  loopbackOnly: boolean;
}

/** Host forms accepted for the mesh listener: IPv4, IPv6, or the wildcards. */
export function checkListenHost(host: string): void {
  if (isIP(host) === 0)
    throw new ConfigError(`mesh listen host must be an IPv4 or IPv6 address, got '${host}'`);
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

function isLoopbackHost(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

/** Resolves whether `port` is free on `host` for this transport (0 picks any; returns it). */
function bindTcp(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

function bindUdp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ address: host, port, exclusive: true }, () => socket.close(() => resolve(true)));
  });
}

/** Whether this host can listen on IPv6 at all (a container may have it disabled). */
async function ipv6Available(): Promise<boolean> {
  return (await bindTcp('::', 0)) !== undefined;
}

/** A port number free for TCP and (with QUIC) UDP alike on `host`. */
export async function pickSharedPort(host: string, quic: boolean): Promise<number> {
  for (let i = 0; i < PICK_TRIES; i++) {
    const port = await bindTcp(host, 0);
    if (port === undefined) break;
    if (!quic || (await bindUdp(host, port))) return port;
  }
  throw new ConfigError(`cannot find a free mesh port on ${host}`);
}

/**
 * The mesh port: `requested` when set (non-zero); else the one this data dir used last time,
 * when still free, so peers that remember our address find us again after a restart; else a
 * new free one, saved for next time.
 */
export async function meshPortFor(options: {
  host: string;
  requested: number;
  quic: boolean;
  dataDir?: string;
}): Promise<{ port: number; reused: boolean }> {
  if (options.requested !== 0) return { port: options.requested, reused: false };
  const file = options.dataDir === undefined ? undefined : join(options.dataDir, PORT_FILE);
  if (file !== undefined) {
    const saved = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(saved) && saved > 0 && saved <= 65535) {
      const free = (await bindTcp(options.host, saved)) !== undefined;
      if (free && (!options.quic || (await bindUdp(options.host, saved))))
        return { port: saved, reused: true };
    }
  }
  const port = await pickSharedPort(options.host, options.quic);
  if (file !== undefined) await writeFile(file, `${port}\n`, { mode: 0o600 });
  return { port, reused: false };
}

/**
 * Listen multiaddrs for `host`: a wildcard listens on IPv4 and (where the host has it) IPv6;
 * QUIC listens on the same port number over UDP beside TCP.
 */
export async function listenPlan(host: string, port: number, quic: boolean): Promise<ListenPlan> {
  checkListenHost(host);
  const hosts = isWildcard(host) ? ['0.0.0.0', ...((await ipv6Available()) ? ['::'] : [])] : [host];
  const addrs: string[] = [];
  for (const h of hosts) {
    const base = isIP(h) === 6 ? `/ip6/${h}` : `/ip4/${h}`;
    addrs.push(`${base}/tcp/${port}`);
    if (quic) addrs.push(`${base}/udp/${port}/quic-v1`);
  }
  return { addrs, port, loopbackOnly: isLoopbackHost(host) };
}
