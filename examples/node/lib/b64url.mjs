// Strict base64url (RFC 4648 §5, no padding), as every JOSE and SD-JWT segment must be.
//
// Node's Buffer and atob() are lenient: they accept padding, whitespace, the standard
// alphabet and non-zero trailing bits, so two different strings can decode to the same
// bytes. A verifier that hashes or compares encoded text (SD-JWT digests do) must refuse
// anything but the one canonical encoding.

import { parseStrict } from './json.mjs';

const ALPHABET = /^[A-Za-z0-9_-]*$/;

export function encode(bytes) {
  if (typeof bytes === 'string') bytes = new TextEncoder().encode(bytes);
  return Buffer.from(bytes).toString('base64url');
}

export function decode(text) {
  if (typeof text !== 'string') throw new TypeError('base64url: not a string');
  if (!ALPHABET.test(text)) throw new TypeError('base64url: character outside the alphabet');
  if (text.length % 4 === 1) throw new TypeError('base64url: impossible length');
  const bytes = Buffer.from(text, 'base64url');
  // Re-encoding must give back the same text: this refuses non-zero trailing bits.
  if (bytes.toString('base64url') !== text) throw new TypeError('base64url: not canonical');
  return new Uint8Array(bytes);
}

export function decodeText(text) {
  return new TextDecoder('utf-8', { fatal: true }).decode(decode(text));
}

/** base64url → UTF-8 → JSON, refusing repeated member names. */
export function decodeJson(text) {
  return parseStrict(decodeText(text));
}
