/**
 * Small source patches to dependencies, applied after every `npm install` by
 * patch-dependencies.mjs. Each one removes per-stream or per-frame work that profiles of real
 * nodes showed on every routed request; none changes what goes over the wire beyond how often
 * yamux window updates are sent, which is what the Go and Rust yamux implementations already do.
 *
 * A patch is a list of exact text replacements in one file of one package version, applied all
 * or none. When the installed version differs and the text is gone, the patch is skipped with a
 * warning: the mesh works without it, only slower (the test suite checks every patch is in place).
 */
export const dependencyPatches = [
  {
    name: 'yamux: send a window update once half the receive window is used, not per frame',
    package: '@chainsafe/libp2p-yamux',
    version: '8.0.1',
    file: 'dist/src/stream.js',
    // Without this every received data frame, however small, is answered with a window-update
    // frame of its own: one more Noise message, socket write and wake-up of the peer per frame.
    // Frames carrying flags (SYN/ACK) still go out at once.
    edits: [
      {
        find: `        const flags = this.getSendFlags();
        // If the stream has already been established`,
        replace: `        const flags = this.getSendFlags();
        if (flags === 0 && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) {
            return;
        }
        // If the stream has already been established`,
      },
    ],
  },
  {
    name: 'libp2p: record a stream protocol in the peer store once per connection, not per stream',
    package: 'libp2p',
    version: '3.3.11',
    file: 'dist/src/connection.js',
    // Both ends of every new stream merged its protocol into the peer store: a read, protobuf
    // decode, multiaddr parsing, re-encode and write of the whole peer record, about a tenth of
    // a node's CPU per routed request. Once per connection and protocol records the same fact.
    edits: [
      {
        find: `    async onIncomingStream(evt) {`,
        replace: `    mergedProtocols = new Set();
    async mergeProtocol(protocol, options) {
        if (this.mergedProtocols.has(protocol)) {
            return;
        }
        await this.components.peerStore.merge(this.remotePeer, { protocols: [protocol] }, options);
        this.mergedProtocols.add(protocol);
    }
    async onIncomingStream(evt) {`,
      },
      {
        find: `            await this.components.peerStore.merge(this.remotePeer, {
                protocols: [muxedStream.protocol]
            });`,
        replace: `            await this.mergeProtocol(muxedStream.protocol);`,
      },
      {
        find: `            await this.components.peerStore.merge(this.remotePeer, {
                protocols: [muxedStream.protocol]
            }, {
                signal
            });`,
        replace: `            await this.mergeProtocol(muxedStream.protocol, { signal });`,
      },
    ],
  },
  {
    name: 'libp2p utils: stop decoding length-prefixed messages at an empty buffer without throwing',
    package: '@libp2p/utils',
    version: '7.4.1',
    file: 'dist/src/length-prefixed-decoder.js',
    // The decoder learns that no length prefix is left by catching the RangeError its length
    // decoder throws, so every Noise message received ended in a thrown error and a captured
    // stack trace (≈ 7 µs each, a few per routed request on each node). An empty buffer can
    // never hold a prefix, so that case now ends the loop without one.
    edits: [
      {
        find: `        while (true) {
            let dataLength;`,
        replace: `        while (this.buffer.byteLength > 0) {
            let dataLength;`,
      },
    ],
  },
];
