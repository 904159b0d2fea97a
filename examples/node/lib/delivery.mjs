// Opening and checking a delivery (docs/spec/delivery.md "What a recipient MUST check").
// Every numbered check below is the spec's; a delivery that fails any is refused whole.

import * as jwe from './jwe.mjs';
import * as jws from './jws.mjs';
import * as message from './message.mjs';
import { parseStrict } from './json.mjs';
import { validate } from './schema.mjs';

export const CTY = 'masp-delivery+json';
export const TOKEN_TYP = 'masp-delivery+jwt';

export class DeliveryRefused extends Error {}

/**
 * own:          this agency's keys (loadAgencyKeys)
 * brokerKeys:   the pinned broker KeySet
 * agencyKeys:   the agencies' KeySet (/v1/agency-keys)
 * algorithms:   alg names accepted for the delivery token
 * schemaFor:    async (masp_type) → JSON Schema of the received variant
 * Returns { deliveryId, token, message } (message as message.verify returns it).
 */
export async function openDelivery(compactJwe, { own, brokerKeys, agencyKeys, algorithms, schemaFor }) {
  const step = async (n, what, fn) => {
    try {
      return await fn();
    } catch (err) {
      throw new DeliveryRefused(`check ${n} (${what}): ${err.message}`);
    }
  };

  // 1. Decrypt with our private key named by kid, cty masp-delivery+json.
  const { plaintext } = await step(1, 'decrypt', () =>
    jwe.open(compactJwe, { cty: CTY, keyFor: (kid) => (kid === own.enc.kid ? own.enc.key : null) }),
  );

  // 2. A JSON object (no repeated members) with exactly the string members sd_jwt and delivery.
  const body = await step(2, 'body', () => {
    const b = parseStrict(plaintext);
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new Error('not an object');
    if (Object.keys(b).sort().join() !== 'delivery,sd_jwt') throw new Error('members are not exactly sd_jwt and delivery');
    if (typeof b.sd_jwt !== 'string' || typeof b.delivery !== 'string') throw new Error('members are not strings');
    return b;
  });

  // 3. The delivery token, with a pinned broker signing key only.
  const { header: tokenHeader, payload: token } = await step(3, 'delivery token', () =>
    jws.verify(body.delivery, {
      typ: TOKEN_TYP,
      keyFor: (kid) => brokerKeys.lookup(kid, { agency: 'broker', use: 'sig' }),
      algorithms,
    }),
  );

  // 4. Addressed to us, by the broker.
  await step(4, 'token audience', () => {
    if (token.aud !== own.agency) throw new Error(`aud ${JSON.stringify(token.aud)}`);
    if (token.iss !== 'broker') throw new Error(`iss ${JSON.stringify(token.iss)}`);
    for (const c of ['jti', 'message_id', 'sender', 'masp_type', 'purpose']) {
      if (typeof token[c] !== 'string') throw new Error(`${c} is not a string`);
    }
    if (!Array.isArray(token.disclosed) || !Array.isArray(token.subjects)) throw new Error('disclosed/subjects are not arrays');
  });

  // 5. The sender's SD-JWT, with the sender's registered key (kid's agency = sender).
  const msg = await step(5, 'sender signature', () =>
    message.verify(body.sd_jwt, { keyFor: (kid) => agencyKeys.lookup(kid, { agency: token.sender, use: 'sig' }) }),
  );

  // 6. The token describes this message.
  await step(6, 'token matches message', () => {
    if (msg.claims.iss !== token.sender) throw new Error('iss ≠ sender');
    if (msg.claims.jti !== token.message_id) throw new Error('jti ≠ message_id');
    if (msg.claims.masp_type !== token.masp_type) throw new Error('masp_type differs');
    if (msg.claims.purpose !== token.purpose) throw new Error('purpose differs'); // not in the spec's list; implied
  });

  // 7. The disclosures present are exactly `disclosed` (as a multiset).
  await step(7, 'disclosed', () => {
    const got = msg.disclosures.map((d) => d.digest).sort();
    const want = [...token.disclosed].sort();
    if (got.join() !== want.join()) throw new Error(`${got.length} disclosures present, token lists ${want.length} (or other digests)`);
  });

  // 8. A subject's `disclosure` names an element disclosure we received.
  await step(8, 'subjects', () => {
    const elements = new Set(msg.disclosures.filter((d) => d.kind === 'element').map((d) => d.digest));
    for (const s of token.subjects) {
      if (!/^[0-9a-f]{64}$/.test(s.ref)) throw new Error('a subject pseudonym is not 64 lower-case hex');
      if ('disclosure' in s && !elements.has(s.disclosure)) throw new Error('a subject disclosure is not in sd_jwt');
    }
  });

  // 9. The disclosed body against the received variant of the body schema.
  await step(9, 'body schema', async () => {
    const errors = validate(await schemaFor(token.masp_type), msg.body);
    if (errors.length) throw new Error(errors.join('; '));
  });

  // 10. (de-duplication by delivery id) is the caller's: see Inbox in client.mjs.
  return { deliveryId: token.jti, alg: tokenHeader.alg, token, message: msg };
}
