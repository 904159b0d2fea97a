// The client's checks against the worked examples of docs/spec/examples/, built there from
// fixed test keys. Skipped when the spec directory is not present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { loadTestKeys } from '../test-support/testkeys.mjs';
import { KeySet } from '../lib/keyset.mjs';
import * as message from '../lib/message.mjs';
import * as jwe from '../lib/jwe.mjs';
import * as jws from '../lib/jws.mjs';
import { verifyReceipt } from '../lib/receipt.mjs';
import { openDelivery } from '../lib/delivery.mjs';
import { loadBodySchema, receivedVariant } from '../lib/schema.mjs';

const SPEC = process.env.MASP_SPEC_DIR || fileURLToPath(new URL('../../../docs/spec/', import.meta.url));
const EXAMPLES = `${SPEC.replace(/\/?$/, '/')}examples/`;
const SCHEMAS = fileURLToPath(new URL('../../../schemas/json/', import.meta.url));
const skip = existsSync(`${EXAMPLES}message.sd-jwt`) ? false : `no spec examples at ${EXAMPLES}`;

const text = async (name) => (await readFile(EXAMPLES + name, 'utf8')).trim();
const json = async (name) => JSON.parse(await readFile(EXAMPLES + name, 'utf8'));
const keySets = async () => ({
  broker: await KeySet.fromJwks(await json('jwks.json'), { owner: 'broker' }),
  agencies: await KeySet.fromJwks(await json('agency-keys.json')),
});

test('message.sd-jwt verifies, and its disclosures are those of message.decoded.json', { skip }, async () => {
  const { agencies } = await keySets();
  const decoded = await json('message.decoded.json');
  const m = await message.verify(await text('message.sd-jwt'), {
    keyFor: (kid) => agencies.lookup(kid, { agency: 'police', use: 'sig' }),
  });
  assert.equal(m.claims.jti, decoded.payload.jti);
  assert.deepEqual(m.disclosures.map((d) => d.digest).sort(), decoded.disclosures.map((d) => d.digest).sort());
});

test('submission.jwe opens with the broker test key to message.sd-jwt', { skip }, async () => {
  const broker = await loadTestKeys(`${EXAMPLES}keys`, 'broker');
  const { plaintext } = await jwe.open(await text('submission.jwe'), {
    cty: 'masp+sd-jwt',
    keyFor: (kid) => (kid === broker.enc.kid ? broker.enc.key : null),
  });
  assert.equal(plaintext, await text('message.sd-jwt'));
});

test('the receipt verifies against the pinned broker key and the recomputed payload_digest', { skip }, async () => {
  const { broker } = await keySets();
  const sdJwt = await text('message.sd-jwt');
  const r = await verifyReceipt(await json('receipt-response.json'), {
    sdJwt,
    messageId: (await json('message.decoded.json')).payload.jti,
    agency: 'police',
    brokerKeys: broker,
    algorithms: jws.SIGNATURE_ALGS,
  });
  assert.equal(r.payload_digest, (await json('receipt.decoded.json')).payload.payload_digest);
});

test('delivery.nhs.jwe passes every recipient check and shows what delivery.nhs.view.json shows', { skip }, async () => {
  const { broker, agencies } = await keySets();
  const own = await loadTestKeys(`${EXAMPLES}keys`, 'nhs');
  const view = await json('delivery.nhs.view.json');
  const d = await openDelivery(await text('delivery.nhs.jwe'), {
    own,
    brokerKeys: broker,
    agencyKeys: agencies,
    algorithms: jws.SIGNATURE_ALGS,
    schemaFor: async (type) => receivedVariant(await loadBodySchema(SCHEMAS, type)),
  });
  assert.deepEqual(d.message.body, view.fields);
  assert.deepEqual(d.message.subjects, view.disclosed_subjects);
  assert.deepEqual(d.token, (await json('delivery.nhs.token.decoded.json')).payload);
});

test('the example assertion and acknowledgement verify with the agency keys', { skip }, async () => {
  const { agencies } = await keySets();
  const a = await jws.verify(await text('auth-assertion.jwt'), {
    typ: 'JWT',
    keyFor: (kid) => agencies.lookup(kid, { agency: 'police', use: 'sig' }),
  });
  assert.deepEqual(a.payload, (await json('auth-assertion.decoded.json')).payload);
  const ack = await jws.verify(await text('ack.jwt'), {
    typ: 'masp-ack+jwt',
    keyFor: (kid) => agencies.lookup(kid, { agency: 'nhs', use: 'sig' }),
  });
  assert.deepEqual(ack.payload, (await json('ack.decoded.json')).payload);
});
