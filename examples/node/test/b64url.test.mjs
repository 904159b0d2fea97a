import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as b64url from '../lib/b64url.mjs';

test('round trip, RFC 4648 §10 vectors in the url alphabet', () => {
  const vectors = { '': '', f: 'Zg', fo: 'Zm8', foo: 'Zm9v', foob: 'Zm9vYg', fooba: 'Zm9vYmE', foobar: 'Zm9vYmFy' };
  for (const [plain, encoded] of Object.entries(vectors)) {
    assert.equal(b64url.encode(plain), encoded);
    assert.equal(b64url.decodeText(encoded), plain);
  }
  assert.equal(b64url.encode(new Uint8Array([0xfb, 0xff])), '-_8');
});

test('refuses padding, the standard alphabet, whitespace, bad lengths and stray bits', () => {
  for (const bad of ['Zg==', 'Zm8=', '+/8', 'Zm 9v', 'Zm9v\n', 'Z', 'Zh', 'Zm9', '-_9']) {
    assert.throws(() => b64url.decode(bad), TypeError, bad);
  }
});

test('decodeText refuses bytes that are not UTF-8', () => {
  assert.throws(() => b64url.decodeText(b64url.encode(new Uint8Array([0xc3, 0x28]))));
});
