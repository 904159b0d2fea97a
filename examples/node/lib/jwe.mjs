// Compact JWE as the MASP JOSE profile wants it: ECDH-ES+A256KW with X25519, A256GCM.

import * as jose from 'jose';
import * as b64url from './b64url.mjs';

export const KEY_ALG = 'ECDH-ES+A256KW';
export const CONTENT_ALG = 'A256GCM';
const REFUSED = ['zip', 'crit', 'jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256'];

/** Encrypts `plaintext` (a string) to `key` (the recipient's X25519 public key). */
export async function seal(plaintext, { key, kid, cty }) {
  return new jose.CompactEncrypt(new TextEncoder().encode(plaintext))
    .setProtectedHeader({ alg: KEY_ALG, enc: CONTENT_ALG, kid, cty })
    .encrypt(key);
}

/**
 * Decrypts a compact JWE addressed to one of our keys; returns { header, plaintext }.
 *   keyFor(kid): our private key for that id, or null
 *   cty: the exact content type required
 */
export async function open(jwe, { keyFor, cty }) {
  if (typeof jwe !== 'string' || !/^[\x21-\x7e]*$/.test(jwe)) throw new Error('JWE is not printable ASCII');
  const parts = jwe.split('.');
  if (parts.length !== 5) throw new Error('not a compact JWE');
  parts.forEach((p) => b64url.decode(p));
  const header = b64url.decodeJson(parts[0]);
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error('JWE header is not an object');
  for (const p of REFUSED) if (p in header) throw new Error(`JWE header has ${p}`);
  if (header.alg !== KEY_ALG) throw new Error(`JWE alg ${JSON.stringify(header.alg)}`);
  if (header.enc !== CONTENT_ALG) throw new Error(`JWE enc ${JSON.stringify(header.enc)}`);
  if (header.cty !== cty) throw new Error(`JWE cty ${JSON.stringify(header.cty)}, expected ${cty}`);
  const epk = header.epk;
  if (!epk || epk.kty !== 'OKP' || epk.crv !== 'X25519' || typeof epk.x !== 'string' || b64url.decode(epk.x).length !== 32) {
    throw new Error('JWE epk is not an X25519 key');
  }
  for (const p of ['apu', 'apv']) if (p in header) b64url.decode(header[p]);
  const key = typeof header.kid === 'string' ? keyFor(header.kid) : null;
  if (!key) throw new Error(`JWE is for key ${JSON.stringify(header.kid)}, not one of ours`);
  const { plaintext } = await jose.compactDecrypt(jwe, key, {
    keyManagementAlgorithms: [KEY_ALG],
    contentEncryptionAlgorithms: [CONTENT_ALG],
  });
  return { header, plaintext: new TextDecoder('utf-8', { fatal: true }).decode(plaintext) };
}
