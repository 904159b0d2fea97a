// SD-JWT (RFC 9901) on top of jose's CompactSign / compactVerify.
//
// An SD-JWT is `<issuer-signed JWT>~<disclosure>~<disclosure>~...~` (the trailing `~`
// says: no key-binding JWT). A disclosure is base64url(JSON array):
//   [salt, name, value]  for an object property, hidden as a digest in that object's `_sd`
//   [salt, value]        for an array element, hidden as {"...": digest} in the array
// and its digest is base64url(SHA-256(the disclosure's base64url text, as ASCII)).
// The digest is over the text as it was sent: a verifier never re-serialises a disclosure.

import { createHash, randomBytes } from 'node:crypto';
import * as b64url from './b64url.mjs';

export const SD_ALG = 'sha-256';

export function newSalt() {
  return b64url.encode(randomBytes(16)); // 128 bits, RFC 9901 §9.3
}

export function digestOf(disclosure) {
  return b64url.encode(createHash('sha256').update(disclosure, 'ascii').digest());
}

/** A disclosure of an object property `name: value`. */
export function propertyDisclosure(name, value, salt = newSalt()) {
  if (name === '_sd' || name === '...') throw new Error(`"${name}" cannot be a disclosed name`);
  const encoded = b64url.encode(JSON.stringify([salt, name, value]));
  return { encoded, digest: digestOf(encoded), salt, name, value };
}

/** A disclosure of one array element. */
export function elementDisclosure(value, salt = newSalt()) {
  const encoded = b64url.encode(JSON.stringify([salt, value]));
  return { encoded, digest: digestOf(encoded), salt, value };
}

/** Joins the signed JWT and the disclosures: `jwt~d1~d2~`. */
export function serialize(jwt, disclosures) {
  return [jwt, ...disclosures.map((d) => (typeof d === 'string' ? d : d.encoded))].join('~') + '~';
}

/** Splits `jwt~d1~...~` into its parts; refuses a key-binding JWT and empty slots. */
export function parse(sdJwt) {
  if (typeof sdJwt !== 'string' || !sdJwt.endsWith('~')) {
    throw new Error('SD-JWT must end with "~" (no key-binding JWT)');
  }
  const [jwt, ...disclosures] = sdJwt.slice(0, -1).split('~');
  if (jwt.split('.').length !== 3) throw new Error('SD-JWT: the issuer-signed part is not a compact JWS');
  for (const d of disclosures) {
    if (d === '') throw new Error('SD-JWT: empty disclosure');
    b64url.decode(d); // strict: throws on anything but canonical base64url
  }
  return { jwt, disclosures };
}

/** Decodes one disclosure and checks its shape (RFC 9901 §7.1 step 3). */
export function decodeDisclosure(encoded) {
  const arr = b64url.decodeJson(encoded);
  if (!Array.isArray(arr) || (arr.length !== 2 && arr.length !== 3)) {
    throw new Error('disclosure is not a JSON array of 2 or 3 elements');
  }
  if (typeof arr[0] !== 'string') throw new Error('disclosure salt is not a string');
  if (arr.length === 3) {
    const [salt, name, value] = arr;
    if (typeof name !== 'string') throw new Error('disclosure name is not a string');
    if (name === '_sd' || name === '...') throw new Error(`disclosure name "${name}" is reserved`);
    return { encoded, digest: digestOf(encoded), salt, name, value, kind: 'property' };
  }
  const [salt, value] = arr;
  return { encoded, digest: digestOf(encoded), salt, value, kind: 'element' };
}

/**
 * RFC 9901 §7.1 steps 3-5: replaces every digest the disclosures answer by its claim,
 * drops the digests nobody disclosed, and checks that
 *   - no digest appears twice in the payload (or in the disclosed values),
 *   - each disclosure is referenced exactly once, and from the right kind of slot
 *     (a property disclosure from an `_sd` array, an element one from {"...": d}),
 *   - a disclosed name does not already exist in its object.
 * Returns { claims, disclosures } where each disclosure has `path` (where it landed).
 */
export function unpack(payload, encodedDisclosures) {
  const byDigest = new Map();
  for (const encoded of encodedDisclosures) {
    const d = decodeDisclosure(encoded);
    if (byDigest.has(d.digest)) throw new Error('the same disclosure is sent twice');
    byDigest.set(d.digest, d);
  }
  const seenDigests = new Set();
  const used = new Set();

  const see = (digest) => {
    if (typeof digest !== 'string') throw new Error('a digest is not a string');
    if (seenDigests.has(digest)) throw new Error(`digest ${digest} appears more than once`);
    seenDigests.add(digest);
  };

  const walk = (node, path) => {
    if (Array.isArray(node)) {
      const out = [];
      node.forEach((item, i) => {
        const isPlaceholder =
          item && typeof item === 'object' && !Array.isArray(item) && Object.keys(item).length === 1 && '...' in item;
        if (isPlaceholder) {
          const digest = item['...'];
          see(digest);
          const d = byDigest.get(digest);
          if (!d) return; // not disclosed to us: the element is simply absent
          if (d.kind !== 'element') throw new Error('a property disclosure sits in an array slot');
          used.add(digest);
          d.path = [...path, out.length];
          out.push(walk(d.value, d.path));
        } else {
          out.push(walk(item, [...path, i]));
        }
      });
      return out;
    }
    if (node && typeof node === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(node)) {
        if (k === '_sd' || (k === '_sd_alg' && path.length === 0)) continue;
        if (k === '...') throw new Error('"..." outside an array element');
        out[k] = walk(v, [...path, k]);
      }
      if ('_sd' in node) {
        if (!Array.isArray(node._sd)) throw new Error('_sd is not an array');
        for (const digest of node._sd) {
          see(digest);
          const d = byDigest.get(digest);
          if (!d) continue;
          if (d.kind !== 'property') throw new Error('an element disclosure sits in an _sd slot');
          if (Object.hasOwn(out, d.name)) throw new Error(`disclosed claim "${d.name}" already exists`);
          used.add(digest);
          d.path = [...path, d.name];
          out[d.name] = walk(d.value, d.path);
        }
      }
      return out;
    }
    return node;
  };

  if (payload._sd_alg !== undefined && payload._sd_alg !== SD_ALG) {
    throw new Error(`unsupported _sd_alg ${JSON.stringify(payload._sd_alg)}`);
  }
  const claims = walk(payload, []);
  for (const digest of byDigest.keys()) {
    if (!used.has(digest)) throw new Error('a disclosure is not referenced by the signed payload');
  }
  return { claims, disclosures: [...byDigest.values()] };
}
