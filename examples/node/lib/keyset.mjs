// Public key sets (docs/spec/keys.md): the broker's (/.well-known/jwks.json) and the
// agencies' (/v1/agency-keys). A verifier looks a key up by `kid` and accepts it only for
// the owner and use it was asked for, and only while its status allows.

import * as jose from 'jose';
import * as b64url from './b64url.mjs';
import { kidAgency } from './jws.mjs';
import { KEY_ALG } from './jwe.mjs';
import { now } from './ids.mjs';

const CURVE = { sig: 'Ed25519', enc: 'X25519' };

export class KeySet {
  constructor(entries) {
    this.byKid = new Map(entries.map((e) => [e.jwk.kid, e]));
  }

  /** Imports a JWKS, keeping only well-formed OKP keys whose kid, use and owner agree. */
  static async fromJwks(jwks, { owner } = {}) {
    if (!jwks || !Array.isArray(jwks.keys)) throw new Error('not a JWKS');
    const entries = [];
    for (const jwk of jwks.keys) {
      const agency = kidAgency(jwk.kid);
      const use = jwk.kid?.split('-')[1];
      if (!agency || agency !== jwk.masp_agency || jwk.use !== use || jwk.kty !== 'OKP' || jwk.crv !== CURVE[use]) {
        throw new Error(`key ${JSON.stringify(jwk.kid)} is not a well-formed ${use ?? ''} key`);
      }
      if (owner && agency !== owner) throw new Error(`key ${jwk.kid} in the ${owner} set belongs to ${agency}`);
      if (b64url.decode(jwk.x).length !== 32) throw new Error(`key ${jwk.kid}: x is not 32 bytes`);
      const { kty, crv, x, kid } = jwk; // import the public members only
      const key = await jose.importJWK({ kty, crv, x }, use === 'sig' ? 'Ed25519' : KEY_ALG);
      const thumbprint = await jose.calculateJwkThumbprint({ kty, crv, x }, 'sha256');
      entries.push({ jwk, key, kid, agency, use, thumbprint });
    }
    return new KeySet(entries);
  }

  /** Is this key usable now? active; retiring until its exp; never retired or revoked. */
  static usable(entry) {
    if (entry.jwk.status === 'active') return true;
    if (entry.jwk.status === 'retiring') return Number.isInteger(entry.jwk.exp) && entry.jwk.exp > now();
    return false;
  }

  /** The key with this kid, if it is `agency`'s, for `use`, and usable; else null. */
  lookup(kid, { agency, use }) {
    const e = this.byKid.get(kid);
    if (!e || e.agency !== agency || e.use !== use || !KeySet.usable(e)) return null;
    return e;
  }

  /** The newest `active` key of an agency for a use: latest date in the kid, then highest -n. */
  newestActive(agency, use) {
    const order = (kid) => {
      const [, , date, n = '0'] = kid.split('-');
      return Number(date) * 1000 + Number(n);
    };
    const candidates = [...this.byKid.values()].filter((e) => e.agency === agency && e.use === use && e.jwk.status === 'active');
    candidates.sort((a, b) => order(b.kid) - order(a.kid));
    return candidates[0] ?? null;
  }
}
