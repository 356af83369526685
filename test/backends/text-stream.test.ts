import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenTextStream } from '../../src/backends/text-stream.ts';

/** Each token id is one byte; decoding follows UTF-8 with replacement characters. */
const bytes = (tokens: readonly number[]) => Buffer.from(tokens).toString('utf8');
const ids = (text: string) => [...Buffer.from(text, 'utf8')];

function run(stream: TokenTextStream, tokens: number[]): { pieces: string[]; text: string } {
  const pieces: string[] = [];
  for (const t of tokens) {
    const p = stream.push(t);
    if (p) pieces.push(p);
    if (stream.stopped) break;
  }
  const rest = stream.flush();
  if (rest) pieces.push(rest);
  return { pieces, text: pieces.join('') };
}

describe('TokenTextStream', () => {
  it('emits ASCII token by token', () => {
    const { pieces, text } = run(new TokenTextStream(bytes), ids('hello'));
    assert.deepEqual(pieces, ['h', 'e', 'l', 'l', 'o']);
    assert.equal(text, 'hello');
  });

  it('holds a split multi-byte character until it is complete', () => {
    const { pieces, text } = run(new TokenTextStream(bytes), ids('aé€b'));
    assert.deepEqual(pieces, ['a', 'é', '€', 'b']);
    assert.equal(text, 'aé€b');
  });

  it('gives up holding invalid bytes after a few tokens instead of stalling', () => {
    const stream = new TokenTextStream(bytes);
    const out = [0xff, 0xfe, 0xfd, 0xfc, 0x41].map((t) => stream.push(t)).join('') + stream.flush();
    assert.ok(out.endsWith('A'));
    assert.ok(out.includes('\uFFFD'));
  });

  it('cuts at a stop string, even one spanning tokens, and emits nothing after', () => {
    const { text } = run(new TokenTextStream(bytes, ['END']), ids('abcENDxyz'));
    assert.equal(text, 'abc');
    const stream = new TokenTextStream(bytes, ['END']);
    run(stream, ids('xxENDyy'));
    assert.equal(stream.stopped, true);
  });

  it('releases held text that turned out not to be a stop string', () => {
    const { pieces, text } = run(new TokenTextStream(bytes, ['ENDS']), ids('aENDb'));
    assert.equal(text, 'aENDb');
    assert.deepEqual(pieces, ['a', 'ENDb']);
  });

  it('flushes a held stop-string prefix at the end', () => {
    const { text } = run(new TokenTextStream(bytes, ['STOP']), ids('okST'));
    assert.equal(text, 'okST');
  });

  it('uses the earliest of several stop strings', () => {
    const { text } = run(new TokenTextStream(bytes, ['zz', 'b']), ids('aabzz'));
    assert.equal(text, 'aa');
  });
});
