// What the client relies on in panva/jose, checked against the installed version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as jose from 'jose';

// RFC 8037 §A.1-A.4: an Ed25519 key and a JWS with alg "EdDSA".
const RFC8037_KEY = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
};
const RFC8037_JWS =
  'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.' +
  'hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg';
const { d, ...RFC8037_PUBLIC } = RFC8037_KEY;

test('RFC 8037 A.4: Ed25519 signing is deterministic and verifies under "EdDSA"', async () => {
  const priv = await jose.importJWK(RFC8037_KEY, 'EdDSA');
  const jws = await new jose.CompactSign(new TextEncoder().encode('Example of Ed25519 signing'))
    .setProtectedHeader({ alg: 'EdDSA' })
    .sign(priv);
  assert.equal(jws, RFC8037_JWS);
  const pub = await jose.importJWK(RFC8037_PUBLIC, 'EdDSA');
  const { payload } = await jose.compactVerify(RFC8037_JWS, pub, { algorithms: ['EdDSA'] });
  assert.equal(new TextDecoder().decode(payload), 'Example of Ed25519 signing');
});

test('one imported Ed25519 key verifies both alg names; `algorithms` picks which are allowed', async () => {
  // RFC 9864 registers "Ed25519" as the fully specified name; "EdDSA" is the older
  // polymorphic one. A sender may use either, so a verifier lists both.
  const pub = await jose.importJWK(RFC8037_PUBLIC, 'Ed25519');
  const priv = await jose.importJWK(RFC8037_KEY, 'Ed25519');
  const data = new TextEncoder().encode('x');
  for (const alg of ['EdDSA', 'Ed25519']) {
    const jws = await new jose.CompactSign(data).setProtectedHeader({ alg }).sign(priv);
    const { protectedHeader } = await jose.compactVerify(jws, pub, { algorithms: ['EdDSA', 'Ed25519'] });
    assert.equal(protectedHeader.alg, alg);
  }
  const eddsa = await new jose.CompactSign(data).setProtectedHeader({ alg: 'EdDSA' }).sign(priv);
  await assert.rejects(jose.compactVerify(eddsa, pub, { algorithms: ['Ed25519'] }), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' });
  await assert.rejects(jose.compactVerify(eddsa.slice(0, -2) + 'AA', pub, { algorithms: ['EdDSA'] }));
});

test('JWE ECDH-ES+A256KW / A256GCM to an X25519 key, with typ, cty and kid protected', async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  assert.deepEqual([jwk.kty, jwk.crv], ['OKP', 'X25519']);
  const to = await jose.importJWK(jwk, 'ECDH-ES+A256KW');
  const jwe = await new jose.CompactEncrypt(new TextEncoder().encode('hello'))
    .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', typ: 't', cty: 'c', kid: 'k' })
    .encrypt(to);
  assert.equal(jwe.split('.').length, 5);
  const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, privateKey, {
    keyManagementAlgorithms: ['ECDH-ES+A256KW'],
    contentEncryptionAlgorithms: ['A256GCM'],
  });
  assert.equal(new TextDecoder().decode(plaintext), 'hello');
  assert.equal(protectedHeader.kid, 'k');
  assert.equal(protectedHeader.cty, 'c');
  assert.equal(protectedHeader.epk.crv, 'X25519');
  await assert.rejects(
    jose.compactDecrypt(jwe, privateKey, { keyManagementAlgorithms: ['ECDH-ES'] }),
    { code: 'ERR_JOSE_ALG_NOT_ALLOWED' },
  );
});
