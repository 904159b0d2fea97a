// Compact JWS as the MASP JOSE profile wants it (docs/spec/jose-profile.md).
//
// jose does the cryptography; the checks it leaves to the caller are done here, in the
// order the profile recommends: size → strict base64url → header JSON without repeated
// members → no crit / key-locating parameters → alg → typ → kid → key lookup → curve →
// signature → payload JSON object without repeated members.

import * as jose from 'jose';
import * as b64url from './b64url.mjs';
import { parseStrict } from './json.mjs';

export const SIGNATURE_ALGS = ['Ed25519', 'EdDSA']; // same algorithm, two names
export const MAX_TOKEN_BYTES = 512 * 1024;
const KEY_LOCATING = ['jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256'];
const KID = /^[a-z][a-z0-9_]{1,31}-(sig|enc)-[0-9]{8}(-[0-9]{1,3})?$/;

/** The agency a key id names (`police-sig-20261101` → `police`), or null if malformed. */
export function kidAgency(kid) {
  return typeof kid === 'string' && KID.test(kid) ? kid.slice(0, kid.indexOf('-')) : null;
}

/** Signs a JSON payload: protected header is exactly {alg, kid, typ}. */
export async function sign(payload, { key, kid, typ, alg = 'Ed25519' }) {
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg, kid, typ })
    .sign(key);
}

/** Decodes header and payload without verifying anything but their form. */
export function peek(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  return { header: b64url.decodeJson(parts[0]), payload: b64url.decodeJson(parts[1]) };
}

/**
 * Verifies a compact JWS and returns { header, payload }.
 *   typ:        the exact `typ` required
 *   keyFor(kid): returns { key, jwk } for an acceptable key of that id, or null
 *   algorithms: the accepted alg names (default both Ed25519 names)
 */
export async function verify(token, { typ, keyFor, algorithms = SIGNATURE_ALGS }) {
  if (typeof token !== 'string') throw new Error('token is not a string');
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new Error('token too large');
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  parts.forEach((p) => b64url.decode(p)); // strict: throws on anything but canonical base64url
  const header = b64url.decodeJson(parts[0]);
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error('header is not an object');
  if ('crit' in header) throw new Error('header has crit');
  for (const p of KEY_LOCATING) if (p in header) throw new Error(`header has ${p}`);
  if (!algorithms.includes(header.alg)) throw new Error(`alg ${JSON.stringify(header.alg)} not accepted`);
  if (header.typ !== typ) throw new Error(`typ ${JSON.stringify(header.typ)}, expected ${typ}`);
  if (typeof header.kid !== 'string') throw new Error('no kid');
  const found = keyFor(header.kid);
  if (!found) throw new Error(`unknown or unacceptable key ${header.kid}`);
  if (found.jwk.kty !== 'OKP' || found.jwk.crv !== 'Ed25519') throw new Error(`key ${header.kid} is not Ed25519`);
  // jose parses the header again itself; the checks above already refused what it would
  // let through (repeated members, lenient base64url).
  const { payload: bytes } = await jose.compactVerify(token, found.key, { algorithms });
  const payload = parseStrict(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) throw new Error('payload is not an object');
  return { header, payload };
}
