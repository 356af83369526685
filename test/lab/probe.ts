/**
 * TCP probes for the lab's wiring test (run inside a namespace with `ip netns exec`):
 *
 *   node test/lab/probe.ts listen HOST PORT      prints `listening`, then `from ADDR` per connection
 *   node test/lab/probe.ts connect HOST PORT MS  prints `connected`, `timeout` or the error code
 *   node test/lab/probe.ts punch PORT HOST PORT MS  UDP hole punch: sends from local PORT to HOST:PORT
 *                                                every 50 ms; prints `received` once a datagram from
 *                                                there arrives, or `timeout`
 */
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';

const [mode, host, port, ms] = process.argv.slice(2);
if (mode === 'listen') {
  const server = createServer((socket) => {
    process.stdout.write(`from ${socket.remoteAddress}\n`);
    socket.end();
  });
  server.listen(Number(port), host, () => process.stdout.write('listening\n'));
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else if (mode === 'connect') {
  const socket = connect({ host: host!, port: Number(port) });
  const timer = setTimeout(() => {
    process.stdout.write('timeout\n');
    process.exit(0);
  }, Number(ms));
  socket.on('connect', () => {
    clearTimeout(timer);
    process.stdout.write('connected\n');
    socket.end();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    process.stdout.write(`${err.code ?? err.message}\n`);
  });
} else if (mode === 'punch') {
  const [, localPort, peerHost, peerPort] = process.argv.slice(2);
  const socket = createSocket('udp4');
  let received = false;
  const finish = (what: string) => {
    process.stdout.write(`${what}\n`);
    // Keep sending a little longer, so the peer's side of the hole opens too.
    setTimeout(() => process.exit(0), 500);
  };
  socket.on('message', (_msg, rinfo) => {
    if (received || rinfo.address !== peerHost) return;
    received = true;
    finish('received');
  });
  socket.bind(Number(localPort), () => {
    setInterval(() => socket.send('punch', Number(peerPort), peerHost!), 50);
    setTimeout(() => received || finish('timeout'), Number(process.argv[6]));
  });
} else {
  process.stderr.write('usage: probe.ts listen HOST PORT | connect HOST PORT MS | punch PORT HOST PORT MS\n');
  process.exitCode = 2;
}
