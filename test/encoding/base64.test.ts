import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeBase64Strict, encodeBase64 } from '../../src/encoding/base64.ts';
import { mulberry32 } from '../helpers/prng.ts';

/** The obvious definition of canonical: decoding and re-encoding gives the same text back. */
function reference(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

describe('strict base64', () => {
  it('decodes canonical text of every length and refuses the usual non-canonical forms', () => {
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
      assert.deepEqual(decodeBase64Strict(encodeBase64(bytes)), bytes);
    }
    for (const bad of [
      'A',
      'AAA',
      'AA=A',
      'A===',
      '====',
      'AB==',
      'AAB=',
      ' AAA',
      'AA\nA',
      'AA-_',
      '++//AA!=',
    ]) {
      assert.equal(decodeBase64Strict(bad), undefined, JSON.stringify(bad));
    }
  });

  it('agrees with decode-and-re-encode on random and mutated inputs', () => {
    const rng = mulberry32(0xb64);
    const rand = (n: number) => Math.floor(rng() * n);
    const alphabet =
      'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t.!\u00e9\u0000%';
    let accepted = 0;
    for (let i = 0; i < 50_000; i++) {
      let text: string;
      if (rng() < 0.5) {
        text = Buffer.from(Array.from({ length: rand(12) }, () => rand(256))).toString('base64');
        for (let m = rand(3); m > 0; m--) {
          const at = rand(text.length + 1);
          const c = alphabet[rand(alphabet.length)]!;
          const op = rand(3);
          if (op === 0) text = text.slice(0, at) + c + text.slice(at + 1);
          else if (op === 1) text = text.slice(0, at) + c + text.slice(at);
          else text = text.slice(0, at) + text.slice(at + 1);
        }
      } else {
        text = Array.from({ length: rand(4) * 4 }, () => alphabet[rand(alphabet.length)]).join('');
      }
      const expected = reference(text);
      if (expected) accepted++;
      assert.deepEqual(decodeBase64Strict(text), expected, JSON.stringify(text));
    }
    assert.ok(accepted > 10_000 && accepted < 40_000, 'the corpus mixes valid and invalid text');
  });
});
