import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChunkedDecoder } from '../../src/http/chunked.ts';
import { HttpWireError } from '../../src/http/http1.ts';
import { mulberry32 } from '../helpers/prng.ts';

/** Encodes `pieces` as chunks, with an extension on the first and a trailer after the last. */
function encode(pieces: Buffer[], trailer = 'x-checksum: 1\r\n'): Buffer {
  const parts: Buffer[] = [];
  pieces.forEach((piece, i) => {
    parts.push(Buffer.from(`${piece.byteLength.toString(16)}${i === 0 ? ';name=value' : ''}\r\n`));
    parts.push(piece, Buffer.from('\r\n'));
  });
  parts.push(Buffer.from(`0\r\n${trailer}\r\n`));
  return Buffer.concat(parts);
}

/** Feeds `wire` split at `cuts`; returns the decoded body and the bytes after it. */
function decode(wire: Buffer, cuts: number[]): { body: Buffer; rest: Buffer; done: boolean } {
  const decoder = new ChunkedDecoder();
  const body: Uint8Array[] = [];
  const rest: Uint8Array[] = [];
  let done = false;
  let from = 0;
  for (const to of [...cuts, wire.byteLength]) {
    const input = wire.subarray(from, to);
    from = to;
    if (done) {
      rest.push(input);
      continue;
    }
    const out = decoder.push(input);
    body.push(...out.data);
    if (out.done) {
      done = true;
      rest.push(out.rest);
    }
  }
  return { body: Buffer.concat(body), rest: Buffer.concat(rest), done };
}

describe('ChunkedDecoder', () => {
  const pieces = [Buffer.from('data: {"a":1}\n\n'), Buffer.from('x'.repeat(300)), Buffer.from('end')];
  const body = Buffer.concat(pieces);
  const wire = encode(pieces);

  test('decodes a body whole, and split at every single byte boundary', () => {
    assert.deepEqual(decode(wire, []), { body, rest: Buffer.alloc(0), done: true });
    for (let cut = 1; cut < wire.byteLength; cut++) {
      const out = decode(wire, [cut]);
      assert.ok(out.done, `cut at ${cut}`);
      assert.deepEqual(out.body, body, `cut at ${cut}`);
    }
  });

  test('decodes byte by byte, and hands back what follows the body', () => {
    const next = Buffer.from('HTTP/1.1 200 OK\r\n');
    const fed = Buffer.concat([wire, next]);
    const out = decode(
      fed,
      Array.from({ length: fed.byteLength - 1 }, (_, i) => i + 1),
    );
    assert.deepEqual(out.body, body);
    assert.deepEqual(out.rest, next);
  });

  test('body bytes come out as they arrive, before the chunk is complete', () => {
    const decoder = new ChunkedDecoder();
    const first = decoder.push(Buffer.from('a\r\nhello'));
    assert.equal(Buffer.concat(first.data).toString(), 'hello');
    assert.equal(first.done, false);
    const second = decoder.push(Buffer.from('world\r\n0\r\n\r\n'));
    assert.equal(Buffer.concat(second.data).toString(), 'world');
    assert.ok(second.done && decoder.done);
  });

  test('random bodies split at random points decode exactly (seeded)', () => {
    const random = mulberry32(20261122);
    for (let round = 0; round < 300; round++) {
      const count = Math.floor(random() * 6);
      const parts = Array.from({ length: count }, () =>
        Buffer.from(Array.from({ length: 1 + Math.floor(random() * 600) }, () => Math.floor(random() * 256))),
      );
      const encoded = encode(parts, random() < 0.5 ? '' : 'a: b\r\nc: d\r\n');
      const cuts = Array.from({ length: Math.floor(random() * 8) }, () =>
        Math.floor(random() * encoded.byteLength),
      ).sort((a, b) => a - b);
      const out = decode(encoded, cuts);
      assert.ok(out.done, `round ${round}`);
      assert.deepEqual(out.body, Buffer.concat(parts), `round ${round}`);
    }
  });

  for (const [name, wireText] of [
    ['a size that is not hex', 'zz\r\nab\r\n0\r\n\r\n'],
    ['a negative size', '-1\r\n'],
    ['a size line ended by a bare LF', '2\nab\r\n0\r\n\r\n'],
    ['data not followed by CRLF', '2\r\nabX\r\n0\r\n\r\n'],
    ['a size too large to be real', 'fffffffffffffff\r\n'],
    ['an empty size line', '\r\n'],
  ] as const) {
    test(`refuses ${name}`, () => {
      assert.throws(() => new ChunkedDecoder().push(Buffer.from(wireText)), HttpWireError);
    });
  }

  test('refuses an endless size line or endless trailers instead of buffering them', () => {
    assert.throws(
      () => new ChunkedDecoder().push(Buffer.from(`1;${'e'.repeat(2000)}`)),
      /chunk size line too long/,
    );
    const decoder = new ChunkedDecoder();
    decoder.push(Buffer.from('0\r\n'));
    assert.throws(() => {
      for (let i = 0; i < 1000; i++) decoder.push(Buffer.from(`x-trailer-${i}: ${'v'.repeat(100)}\r\n`));
    }, /trailers too large/);
  });
});
