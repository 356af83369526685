import { Socket } from 'node:net';
import type { Connection } from '@libp2p/interface';

/** The parts of @libp2p/tcp's connection object this reaches into (not public API). */
interface TcpMultiaddrConnection {
  socket?: unknown;
  sendData?: (data: unknown) => unknown;
}

/**
 * The parts of the Noise-encrypted message stream under the muxer (an AbstractMessageStream
 * from @libp2p/utils) this reaches into: its write queue and the method that drains it.
 */
interface SecureMessageStream {
  send(data: unknown): boolean;
  close(options?: unknown): Promise<void>;
  processSendQueue(): boolean;
  writeBuffer: { append(data: unknown): void };
  writeStatus: string;
  writableNeedsDrain: boolean;
}

export type Coalescing = 'noise-messages' | 'socket-writes' | false;

/**
 * Sends everything a connection writes in one event-loop turn as one Noise message and one
 * socket write.
 *
 * Every yamux frame (a request's data, the FIN after it, a window update, each stream open of a
 * batch) used to become a Noise message of its own: an AEAD seal here, and on the peer a
 * length-prefix decode, an AEAD open and a message event through the muxer, each. Frames queued
 * in one turn now wait in the Noise stream's own write queue until the turn ends (setImmediate:
 * nothing waits longer than the current turn), then go out together — one Noise message up to
 * Noise's 64 KiB limit — with the socket corked so its length prefix and ciphertext leave in one
 * writev. Measured interleaved against one message per frame: 18–24 % more streamed tokens/s at
 * 64 streams, 0.1–0.3 ms less CPU per request per node.
 *
 * When the connection has no Noise stream of the expected shape (a changed libp2p), only the
 * socket writes of a turn are batched; when it is not over TCP either (a relayed connection's
 * socket is the relay's), Noise messages are still coalesced. Returns what was set up.
 */
export function coalesceTurnWrites(connection: Connection): Coalescing {
  const maConn = (connection as unknown as { maConn?: TcpMultiaddrConnection }).maConn;
  const socket = maConn?.socket instanceof Socket ? maConn.socket : undefined;
  const secure = secureStreamOf(connection);
  if (secure !== undefined) {
    coalesceNoiseMessages(secure, socket);
    return 'noise-messages';
  }
  if (maConn !== undefined && socket !== undefined && typeof maConn.sendData === 'function') {
    batchSocketWrites(maConn, socket, maConn.sendData);
    return 'socket-writes';
  }
  return false;
}

function secureStreamOf(connection: Connection): SecureMessageStream | undefined {
  const secure = (connection as unknown as { muxer?: { maConn?: Partial<SecureMessageStream> } }).muxer
    ?.maConn;
  if (
    typeof secure?.send !== 'function' ||
    typeof secure.close !== 'function' ||
    typeof secure.processSendQueue !== 'function' ||
    typeof secure.writeBuffer?.append !== 'function' ||
    typeof secure.writeStatus !== 'string'
  ) {
    return undefined;
  }
  return secure as SecureMessageStream;
}

function coalesceNoiseMessages(secure: SecureMessageStream, socket: Socket | undefined): void {
  const send = secure.send.bind(secure);
  const close = secure.close.bind(secure);
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (socket?.destroyed) return;
    socket?.cork();
    try {
      secure.processSendQueue();
    } catch {
      // The stream aborted itself on the failed send; its close event tells everyone using it.
    } finally {
      socket?.uncork();
    }
  };
  secure.send = (data: unknown) => {
    // Not writable: the original decides (it throws for a closing or closed stream).
    if (secure.writeStatus !== 'writable') return send(data);
    secure.writeBuffer.append(data);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
    // False once the socket is full, so the muxer pauses its streams until 'drain' as before.
    return !secure.writableNeedsDrain;
  };
  // What was queued this turn goes out before the connection closes behind it.
  secure.close = (options?: unknown) => {
    if (scheduled) flush();
    return close(options);
  };
}

/** The fallback: a turn's socket writes (each Noise message is two) as one writev. */
function batchSocketWrites(
  maConn: TcpMultiaddrConnection,
  socket: Socket,
  sendData: (data: unknown) => unknown,
): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  maConn.sendData = (data: unknown) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(uncork);
    }
    return sendData.call(maConn, data);
  };
}
