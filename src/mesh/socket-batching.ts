import { Socket } from 'node:net';
import type { Connection } from '@libp2p/interface';

interface TcpMultiaddrConnection {
  socket?: unknown;
  sendData?: (data: unknown) => unknown;
}

/**
 * Sends everything a TCP connection writes in one event-loop turn with a single syscall.
 *
 * Each yamux frame becomes a Noise message that @libp2p/tcp writes as two separate socket
 * writes (length prefix, then ciphertext), and a routed request makes a dozen frames each way;
 * on loopback or a fast LAN those syscalls are most of a remote hop's cost. Corking the socket
 * at the first write of a turn and uncorking it at the end of the turn (setImmediate: nothing
 * waits longer than the current turn) lets Node hand them to the kernel as one writev.
 *
 * This reaches into @libp2p/tcp's connection object (`maConn.socket`, `maConn.sendData`),
 * which is not public API: when the shape is not what is expected (another transport, a
 * relayed connection, a changed libp2p) it changes nothing and returns false.
 */
export function batchSocketWrites(connection: Connection): boolean {
  const maConn = (connection as unknown as { maConn?: TcpMultiaddrConnection }).maConn;
  const socket = maConn?.socket;
  const sendData = maConn?.sendData;
  if (maConn === undefined || !(socket instanceof Socket) || typeof sendData !== 'function') return false;
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
  return true;
}
