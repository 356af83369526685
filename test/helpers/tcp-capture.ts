import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP relay that records every byte in both directions: it sits in front of a
 * node's mesh port so a test can inspect exactly what that node received and sent on the wire.
 */
export async function startTcpCapture(targetPort: number): Promise<{
  port: number;
  bytes(): Buffer;
  close(): Promise<void>;
}> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.on('data', (d: Buffer) => {
      chunks.push(d);
      outbound.write(d);
    });
    outbound.on('data', (d: Buffer) => {
      chunks.push(d);
      inbound.write(d);
    });
    inbound.on('end', () => outbound.end());
    outbound.on('end', () => inbound.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    bytes: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
