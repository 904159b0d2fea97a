// An agency's own key pair files, as `masp init` / `masp keys init` write them:
//   <keys dir>/<agency>/sig.private.jwk   Ed25519 (OKP), signs
//   <keys dir>/<agency>/enc.private.jwk   X25519 (OKP), decrypts deliveries
// Each private JWK carries its `kid`.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as jose from 'jose';
import { kidAgency } from './jws.mjs';
import { KEY_ALG } from './jwe.mjs';

async function readJwk(path) {
  return JSON.parse(await readFile(path, 'utf8'));
}

export async function loadAgencyKeys(keysDir, agency) {
  const sig = await readJwk(join(keysDir, agency, 'sig.private.jwk'));
  const enc = await readJwk(join(keysDir, agency, 'enc.private.jwk'));
  return agencyKeysFrom(agency, sig, enc);
}

// An agency's keys from its two private JWKs, checked: right curves, private halves, own kids.
export async function agencyKeysFrom(agency, sig, enc) {
  if (sig.kty !== 'OKP' || sig.crv !== 'Ed25519' || !sig.d) throw new Error(`${agency}: sig key is not a private Ed25519 JWK`);
  if (enc.kty !== 'OKP' || enc.crv !== 'X25519' || !enc.d) throw new Error(`${agency}: enc key is not a private X25519 JWK`);
  for (const k of [sig, enc]) {
    if (kidAgency(k.kid) !== agency) throw new Error(`${agency}: key id ${k.kid} names another agency`);
  }
  return {
    agency,
    sig: { kid: sig.kid, key: await jose.importJWK(sig, 'Ed25519') },
    enc: { kid: enc.kid, key: await jose.importJWK(enc, KEY_ALG) },
  };
}
