import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  defaultAttestationPolicy,
  loadAttestationPolicy,
  parseAttestationPolicy,
  tierAtLeast,
  unmetPosture,
} from '../../src/attestation/policy.ts';
import { ConfigError } from '../../src/errors.ts';
import { samplePosture, tempDir } from './helpers.ts';

const POINT = Buffer.concat([
  Buffer.of(4),
  Buffer.from('6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296', 'hex'),
  Buffer.from('4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5', 'hex'),
]).toString('base64'); // the P-256 generator point: a valid public key

describe('attestation policy', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());

  it('orders tiers', () => {
    assert.equal(tierAtLeast('hardware-claimed', 'self-signed'), true);
    assert.equal(tierAtLeast('self-signed', 'hardware-claimed'), false);
    assert.equal(tierAtLeast('none', 'none'), true);
    assert.equal(tierAtLeast('hardware-rooted', 'hardware-claimed'), true);
  });

  it('defaults to hardware-claimed with no requirements', () => {
    assert.deepEqual(parseAttestationPolicy('{}'), defaultAttestationPolicy());
    assert.equal(defaultAttestationPolicy().minimumTier, 'hardware-claimed');
  });

  it('parses every field (camelCase or snake_case)', () => {
    const endpoint = 'AB'.repeat(32);
    const policy = parseAttestationPolicy(
      JSON.stringify({
        minimumTier: 'self-signed',
        required_posture: {
          debuggerBlocked: true,
          core_dumps_disabled: true,
          plaintextBoundary: 'in-process',
        },
        allowedBinaryHashes: ['AA'.repeat(32)],
        pinnedKeys: { [endpoint]: POINT },
        trustedTpmRoots: [],
      }),
    );
    assert.equal(policy.minimumTier, 'self-signed');
    assert.deepEqual(policy.requiredPosture, {
      debuggerBlocked: true,
      coreDumpsDisabled: true,
      plaintextBoundary: 'in-process',
    });
    assert.deepEqual(policy.allowedBinaryHashes, ['aa'.repeat(32)]);
    assert.deepEqual(policy.pinnedKeys, { [endpoint.toLowerCase()]: POINT });
    assert.deepEqual(unmetPosture(samplePosture(), policy.requiredPosture), []);
    assert.deepEqual(
      unmetPosture(
        samplePosture({ coreDumpsDisabled: false, plaintextBoundary: 'none' }),
        policy.requiredPosture,
      ),
      ['coreDumpsDisabled', 'plaintextBoundary=in-process'],
    );
  });

  const errors: Array<[string, string, RegExp]> = [
    ['not json', '{', /not valid JSON/],
    ['array', '[]', /must be a JSON object/],
    ['unknown key', '{"minTier":"none"}', /unknown key 'minTier'/],
    ['duplicate alias', '{"minimumTier":"none","minimum_tier":"none"}', /given twice/],
    ['bad tier', '{"minimumTier":"gold"}', /minimumTier must be one of/],
    ['tier type', '{"minimumTier":3}', /minimumTier/],
    ['posture type', '{"requiredPosture":["debuggerBlocked"]}', /requiredPosture must be an object/],
    ['posture unknown', '{"requiredPosture":{"fastCpu":true}}', /unknown item 'fastCpu'/],
    ['posture false', '{"requiredPosture":{"debuggerBlocked":false}}', /must be true/],
    ['posture silly', '{"requiredPosture":{"startedWithUnsafeEnvironment":true}}', /unknown item/],
    ['boundary', '{"requiredPosture":{"plaintextBoundary":"cloud"}}', /plaintextBoundary must be one of/],
    ['hashes type', '{"allowedBinaryHashes":"abc"}', /must be an array/],
    ['hashes empty', '{"allowedBinaryHashes":[]}', /is empty/],
    ['hash bad', '{"allowedBinaryHashes":["abc"]}', /allowedBinaryHashes\[0\]/],
    ['pins type', '{"pinnedKeys":[]}', /pinnedKeys must be an object/],
    ['pin endpoint', `{"pinnedKeys":{"abc":"${POINT}"}}`, /not a 64-hex endpoint id/],
    ['pin key', `{"pinnedKeys":{"${'ab'.repeat(32)}":"AAAA"}}`, /uncompressed P-256 point/],
    ['roots type', '{"trustedTpmRoots":"pem"}', /must be an array/],
    [
      'root invalid',
      '{"trustedTpmRoots":["-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"]}',
      /not a valid PEM/,
    ],
  ];
  for (const [name, text, pattern] of errors) {
    it(`rejects ${name} with a readable ConfigError`, () => {
      assert.throws(
        () => parseAttestationPolicy(text, 'policy.json'),
        (e: unknown) =>
          e instanceof ConfigError && pattern.test(e.message) && e.message.startsWith('policy.json: '),
      );
    });
  }

  it('loads a file and names it in errors', async () => {
    const path = join(dir.path, 'policy.json');
    await writeFile(path, '{"minimumTier":"self-signed"}');
    assert.equal((await loadAttestationPolicy(path)).minimumTier, 'self-signed');
    await writeFile(path, '{"minimumTier":"x"}');
    await assert.rejects(
      loadAttestationPolicy(path),
      (e: unknown) => e instanceof ConfigError && e.message.includes(path),
    );
    await assert.rejects(
      loadAttestationPolicy(join(dir.path, 'missing.json')),
      /cannot read attestation policy/,
    );
  });
});
