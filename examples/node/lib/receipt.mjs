// Checking a submission's receipt (docs/spec/submission.md "The receipt").

import * as jws from './jws.mjs';
import { payloadDigest } from './message.mjs';

const DECISIONS = ['permit', 'permit_with_redaction', 'require_override', 'deny'];

/** JSON equality that ignores member order. */
function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
  return v;
}
const sameJson = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

/**
 * Verifies the receipt of `sdJwt` (as submitted) for `agency`, with a pinned broker key.
 *   algorithms: the alg names accepted (the one registered for this agency, or both)
 * Returns the receipt's claims.
 */
export async function verifyReceipt(response, { sdJwt, messageId, agency, brokerKeys, algorithms }) {
  const { payload: r } = await jws.verify(response.receipt, {
    typ: 'masp-receipt+jwt',
    keyFor: (kid) => brokerKeys.lookup(kid, { agency: 'broker', use: 'sig' }),
    algorithms,
  });
  if (r.iss !== 'broker') throw new Error('receipt iss is not "broker"');
  if (r.aud !== agency) throw new Error(`receipt aud ${JSON.stringify(r.aud)} is not ${agency}`);
  if (r.message_id !== messageId) throw new Error('receipt message_id is not the jti sent');
  if (r.payload_digest !== payloadDigest(sdJwt)) throw new Error('receipt payload_digest is not the digest of what was sent');
  if (!Number.isInteger(r.iat) || !Number.isInteger(r.audit_seq)) throw new Error('receipt iat/audit_seq are not integers');
  if (!Array.isArray(r.decisions)) throw new Error('receipt decisions is not an array');
  for (const d of r.decisions) {
    if (typeof d.recipient !== 'string' || !DECISIONS.includes(d.decision)) throw new Error('a receipt decision is malformed');
  }
  const sorted = r.decisions.map((d) => d.recipient);
  if (sorted.join() !== [...sorted].sort().join()) throw new Error('receipt decisions are not sorted by recipient');
  // The unsigned members of the response must repeat the signed ones.
  if (response.message_id !== r.message_id || response.audit_seq !== r.audit_seq || !sameJson(response.decisions, r.decisions)) {
    throw new Error('the response differs from its signed receipt');
  }
  return r;
}

/** Recipients that got a delivery: decision permit or permit_with_redaction. */
export const deliveredTo = (receipt) =>
  receipt.decisions.filter((d) => d.decision === 'permit' || d.decision === 'permit_with_redaction').map((d) => d.recipient);
