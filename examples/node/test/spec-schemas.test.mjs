// What the client sends, validated against the wire schemas of docs/spec/schemas/, and the
// spec's own examples against them (a check of the validator). Skipped without docs/spec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import { validate } from '../lib/schema.mjs';
import { AgencyClient } from '../lib/broker.mjs';
import * as message from '../lib/message.mjs';
import * as sd from '../lib/sdjwt.mjs';
import * as jws from '../lib/jws.mjs';
import * as jwe from '../lib/jwe.mjs';
import * as b64url from '../lib/b64url.mjs';
import { caseReferral, victimConsent } from '../lib/example-case.mjs';

const SPEC = (process.env.MASP_SPEC_DIR || fileURLToPath(new URL('../../../docs/spec/', import.meta.url))).replace(/\/?$/, '/');
const skip = existsSync(`${SPEC}schemas/common.schema.json`) ? false : `no spec schemas under ${SPEC}`;

async function registry() {
  const out = {};
  for (const f of await readdir(`${SPEC}schemas`)) {
    if (f.endsWith('.schema.json')) out[f] = JSON.parse(await readFile(`${SPEC}schemas/${f}`, 'utf8'));
  }
  return out;
}

async function testAgency(agency) {
  const { privateKey } = await jose.generateKeyPair('Ed25519', { extractable: true });
  const enc = await jose.generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
  const own = { agency, sig: { kid: `${agency}-sig-20261101`, key: privateKey }, enc: { kid: `${agency}-enc-20261101`, key: enc.privateKey } };
  return { own, encPublic: enc.publicKey };
}

const valid = (reg, name, value) => assert.deepEqual(validate(reg[name], value, reg), [], `${name}: ${JSON.stringify(value)}`);

test('our assertion and acknowledgement match their schemas', { skip }, async () => {
  const reg = await registry();
  const { own } = await testAgency('nhs');
  const client = new AgencyClient('http://127.0.0.1:1', own);
  const assertion = jws.peek(await client.assertion());
  valid(reg, 'jws-header.schema.json', assertion.header);
  valid(reg, 'auth-assertion.schema.json', assertion.payload);
  const ack = jws.peek(await client.signAck({ deliveryId: '01a1fd8c-6900-7000-8000-000000000003', messageId: '01a1fd8c-6900-7000-8000-00000000a001' }));
  valid(reg, 'jws-header.schema.json', ack.header);
  valid(reg, 'ack.schema.json', ack.payload);
});

test('our messages: header, payload, envelope, sealed JWE header', { skip }, async () => {
  const reg = await registry();
  const { own, encPublic } = await testAgency('police');
  const referral = caseReferral();
  for (const draft of [referral, victimConsent(referral)]) {
    const { sdJwt } = await message.compose({ signer: own, ...draft });
    const { jwt, disclosures } = sd.parse(sdJwt);
    const { header, payload } = jws.peek(jwt);
    valid(reg, 'jws-header.schema.json', header);
    valid(reg, 'message-payload.schema.json', payload);
    const { claims } = sd.unpack(payload, disclosures);
    const envelope = Object.fromEntries(
      Object.entries(claims).filter(([k]) => ['iss', 'jti', 'iat', 'exp', 'masp_type', 'masp_schema', 'case_id', 'purpose', 'subjects', 'consent_ref', 'override'].includes(k)),
    );
    valid(reg, 'envelope.schema.json', envelope);
    const sealed = await jwe.seal(sdJwt, { key: encPublic, kid: 'broker-enc-20261101', cty: message.TYP });
    valid(reg, 'jwe-header.schema.json', b64url.decodeJson(sealed.split('.')[0]));
  }
});

test("the spec's examples validate against the spec's schemas with this validator", { skip }, async () => {
  const reg = await registry();
  const ex = async (name) => JSON.parse(await readFile(`${SPEC}examples/${name}`, 'utf8'));
  valid(reg, 'receipt.schema.json', (await ex('receipt.decoded.json')).payload);
  valid(reg, 'receipt-response.schema.json', await ex('receipt-response.json'));
  valid(reg, 'delivery-token.schema.json', (await ex('delivery.nhs.token.decoded.json')).payload);
  valid(reg, 'delivery-body.schema.json', await ex('delivery.nhs.body.json'));
  valid(reg, 'ack.schema.json', (await ex('ack.decoded.json')).payload);
  valid(reg, 'ack-response.schema.json', await ex('ack-response.json'));
  valid(reg, 'message-status.schema.json', await ex('message-status.json'));
  valid(reg, 'mailbox-list.schema.json', await ex('mailbox-list.json'));
  valid(reg, 'jwks.schema.json', await ex('jwks.json'));
  valid(reg, 'jwks.schema.json', await ex('agency-keys.json'));
  for (const e of await ex('events.json')) valid(reg, 'event.schema.json', e.body);
  for (const p of Object.values(await ex('problems.json'))) valid(reg, 'problem.schema.json', p);
  // and a wrong one is caught
  const token = (await ex('delivery.nhs.token.decoded.json')).payload;
  assert.notDeepEqual(validate(reg['delivery-token.schema.json'], { ...token, aud: 'broker' }, reg), []);
});
