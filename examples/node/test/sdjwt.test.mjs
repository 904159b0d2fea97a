import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as sd from '../lib/sdjwt.mjs';
import * as b64url from '../lib/b64url.mjs';

// RFC 9901 §5.1: disclosures and their SHA-256 digests as published.
const RFC_VECTORS = [
  {
    contents: ['2GLC42sKQveCfGfryNRN9w', 'given_name', 'John'],
    disclosure: 'WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd',
    digest: 'jsu9yVulwQQlhFlM_3JlzMaSFzglhQG0DpfayQwLUK4',
  },
  {
    contents: ['eluV5Og3gSNII8EYnsxA_A', 'family_name', 'Doe'],
    disclosure: 'WyJlbHVWNU9nM2dTTklJOEVZbnN4QV9BIiwgImZhbWlseV9uYW1lIiwgIkRvZSJd',
    digest: 'TGf4oLbgwd5JQaHyKVQZU9UdGE0w5rtDsrZzfUaomLo',
  },
  {
    contents: ['lklxF5jMYlGTPUovMNIvCA', 'US'], // an array element
    disclosure: 'WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIlVTIl0',
    digest: 'pFndjkZ_VCzmyTa6UjlZo3dh-ko8aIKQc9DlGzhaVYo',
  },
];

test('digest = base64url(SHA-256(disclosure text as ASCII)), RFC 9901 §5.1 vectors', () => {
  for (const v of RFC_VECTORS) {
    assert.equal(sd.digestOf(v.disclosure), v.digest);
    const d = sd.decodeDisclosure(v.disclosure);
    assert.deepEqual(d.value, v.contents.at(-1));
    assert.equal(d.salt, v.contents[0]);
    assert.equal(d.kind, v.contents.length === 3 ? 'property' : 'element');
  }
});

test('the digest is over the text sent, not a re-serialisation', () => {
  // The RFC's disclosures have a space after each comma; ours (JSON.stringify) do not.
  const ours = sd.propertyDisclosure('given_name', 'John', '2GLC42sKQveCfGfryNRN9w');
  assert.notEqual(ours.encoded, RFC_VECTORS[0].disclosure);
  assert.notEqual(ours.digest, RFC_VECTORS[0].digest);
  assert.equal(ours.digest, sd.digestOf(ours.encoded));
});

test('unpack restores properties and array elements, and drops undisclosed ones', () => {
  const a = sd.propertyDisclosure('a', 1);
  const hidden = sd.propertyDisclosure('secret', 'x');
  const e1 = sd.elementDisclosure({ ref: 'S-1' });
  const e2 = sd.elementDisclosure({ ref: 'S-2' });
  const payload = { iss: 'police', _sd_alg: 'sha-256', _sd: [a.digest, hidden.digest], list: [{ '...': e1.digest }, 'clear', { '...': e2.digest }] };
  const { claims, disclosures } = sd.unpack(payload, [a.encoded, e2.encoded]);
  assert.deepEqual(claims, { iss: 'police', a: 1, list: ['clear', { ref: 'S-2' }] });
  assert.equal(disclosures.length, 2);
});

test('unpack refuses what RFC 9901 §7.1 says to refuse', () => {
  const a = sd.propertyDisclosure('a', 1);
  const e = sd.elementDisclosure('v');
  assert.throws(() => sd.unpack({ _sd: [a.digest, a.digest] }, [a.encoded]), /more than once/);
  assert.throws(() => sd.unpack({ _sd: [] }, [a.encoded]), /not referenced/);
  assert.throws(() => sd.unpack({ a: 0, _sd: [a.digest] }, [a.encoded]), /already exists/);
  assert.throws(() => sd.unpack({ l: [{ '...': a.digest }] }, [a.encoded]), /property disclosure/);
  assert.throws(() => sd.unpack({ _sd: [e.digest] }, [e.encoded]), /element disclosure/);
  assert.throws(() => sd.unpack({ _sd: [a.digest] }, [a.encoded, a.encoded]), /twice/);
  assert.throws(() => sd.unpack({ _sd_alg: 'sha-1', _sd: [] }, []), /_sd_alg/);
  const reserved = b64url.encode(JSON.stringify(['salt', '_sd', 1]));
  assert.throws(() => sd.decodeDisclosure(reserved), /reserved/);
});

test('parse wants the trailing ~ and strict base64url', () => {
  const { jwt, disclosures } = sd.parse('a.b.c~WyJzIiwgMV0~');
  assert.equal(jwt, 'a.b.c');
  assert.deepEqual(disclosures, ['WyJzIiwgMV0']);
  assert.deepEqual(sd.parse('a.b.c~').disclosures, []);
  assert.throws(() => sd.parse('a.b.c'), /end with/);
  assert.throws(() => sd.parse('a.b.c~~'), /empty/);
  assert.throws(() => sd.parse('a.b.c~WyJzIiwgMV0=~'));
});
