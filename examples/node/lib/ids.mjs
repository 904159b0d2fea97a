// Identifiers (docs/spec/conventions.md "Identifiers").

import { randomBytes, randomUUID } from 'node:crypto';

/** A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, version 7, variant 10, random rest. */
export function uuidv7(now = Date.now()) {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f);
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A fresh `jti` for an assertion or an acknowledgement. */
export const newJti = () => randomUUID();

/** NumericDate: whole seconds since the epoch. */
export const now = () => Math.floor(Date.now() / 1000);

/**
 * Folding, for "equal to a subject's reference" (message.md): Unicode NFKC, case-fold,
 * keep letters and digits only. toLowerCase after NFKC stands in for full case folding,
 * which JavaScript lacks; it agrees on the ASCII references this client sends.
 */
export function fold(text) {
  return text.normalize('NFKC').toLowerCase().replace(/[^\p{L}\p{N}]/gu, '');
}
