// A recipient refuses a tampered delivery, check by check (delivery.md). Built from the
// spec's example delivery to nhs and its published test keys. Skipped without docs/spec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import { loadTestKeys as loadKeys } from '../test-support/testkeys.mjs';
import { KeySet } from '../lib/keyset.mjs';
import * as jwe from '../lib/jwe.mjs';
import * as jws from '../lib/jws.mjs';
import { openDelivery, DeliveryRefused, CTY, TOKEN_TYP } from '../lib/delivery.mjs';
import { loadBodySchema, receivedVariant } from '../lib/schema.mjs';

const SPEC = (process.env.MASP_SPEC_DIR || fileURLToPath(new URL('../../../docs/spec/', import.meta.url))).replace(/\/?$/, '/');
const EXAMPLES = `${SPEC}examples/`;
const SCHEMAS = fileURLToPath(new URL('../../../schemas/json/', import.meta.url));
const skip = existsSync(`${EXAMPLES}delivery.nhs.body.json`) ? false : `no spec examples at ${EXAMPLES}`;

const json = async (name) => JSON.parse(await readFile(EXAMPLES + name, 'utf8'));
const loadTestKeys = (party) => loadKeys(`${EXAMPLES}keys`, party);

async function setup() {
  const broker = await loadTestKeys('broker');
  const police = await loadTestKeys('police');
  const nhs = await loadTestKeys('nhs');
  const nhsEncPublic = await jose.importJWK(JSON.parse(await readFile(`${EXAMPLES}keys/nhs/enc.public.jwk`, 'utf8')), jwe.KEY_ALG);
  const checks = {
    own: nhs,
    brokerKeys: await KeySet.fromJwks(await json('jwks.json'), { owner: 'broker' }),
    agencyKeys: await KeySet.fromJwks(await json('agency-keys.json')),
    algorithms: jws.SIGNATURE_ALGS,
    schemaFor: async (type) => receivedVariant(await loadBodySchema(SCHEMAS, type)),
  };
  const body = await json('delivery.nhs.body.json');
  const token = (await json('delivery.nhs.token.decoded.json')).payload;
  const fullMessage = (await readFile(`${EXAMPLES}message.sd-jwt`, 'utf8')).trim();

  /** Seals a delivery to nhs as the broker would, with the parts given. */
  const deliver = async ({ sdJwt = body.sd_jwt, claims = token, signer = broker.sig, alg = 'Ed25519', typ = TOKEN_TYP, plaintext } = {}) => {
    const delivery = await jws.sign(claims, { key: signer.key, kid: signer.kid, typ, alg });
    const text = plaintext ?? JSON.stringify({ sd_jwt: sdJwt, delivery });
    return jwe.seal(text, { key: nhsEncPublic, kid: nhs.enc.kid, cty: CTY });
  };
  return { checks, deliver, body, token, police, fullMessage };
}

async function refused(promise, check) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof DeliveryRefused, err.message);
    assert.match(err.message, new RegExp(`^check ${check} `));
    return true;
  });
}

test('a faithful re-sealing of the example passes', { skip }, async () => {
  const { checks, deliver } = await setup();
  const d = await openDelivery(await deliver(), checks);
  assert.equal(d.deliveryId, '01a1fd8c-6900-7000-8000-000000000003');
});

test('check 1: the wrong content type, or a key that is not ours', { skip }, async () => {
  const { checks, deliver } = await setup();
  const good = await deliver();
  const other = await loadTestKeys('probation');
  await refused(openDelivery(good, { ...checks, own: other }), 1);
});

test('check 2: a repeated member in the body', { skip }, async () => {
  const { checks, deliver, body } = await setup();
  const plaintext = `{"sd_jwt":${JSON.stringify(body.sd_jwt)},"delivery":${JSON.stringify(body.delivery)},"sd_jwt":"x"}`;
  await refused(openDelivery(await deliver({ plaintext }), checks), 2);
});

test('check 3: a token signed by an agency key, or with alg none', { skip }, async () => {
  const { checks, deliver, police, body } = await setup();
  await refused(openDelivery(await deliver({ signer: police.sig }), checks), 3);
  await refused(openDelivery(await deliver({ signer: { ...police.sig, kid: 'broker-sig-20261101' } }), checks), 3);
  await refused(openDelivery(await deliver({ typ: 'JWT' }), checks), 3);
  const [, payload] = body.delivery.split('.');
  const unsigned = `${Buffer.from('{"alg":"none","kid":"broker-sig-20261101","typ":"masp-delivery+jwt"}').toString('base64url')}.${payload}.`;
  await refused(openDelivery(await deliver({ plaintext: JSON.stringify({ sd_jwt: body.sd_jwt, delivery: unsigned }) }), checks), 3);
});

test('check 4: a token for another agency', { skip }, async () => {
  const { checks, deliver, token } = await setup();
  await refused(openDelivery(await deliver({ claims: { ...token, aud: 'probation' } }), checks), 4);
});

test('check 5: a disclosure in non-canonical base64url, or another sender', { skip }, async () => {
  const { checks, deliver, body, token } = await setup();
  const parts = body.sd_jwt.split('~');
  parts[1] += '='; // padding
  await refused(openDelivery(await deliver({ sdJwt: parts.join('~') }), checks), 5);
  await refused(openDelivery(await deliver({ claims: { ...token, sender: 'probation' } }), checks), 5);
});

test('check 6: a token about another message', { skip }, async () => {
  const { checks, deliver, token } = await setup();
  await refused(openDelivery(await deliver({ claims: { ...token, message_id: '01a1fd8c-6900-7000-8000-00000000a002' } }), checks), 6);
  await refused(openDelivery(await deliver({ claims: { ...token, masp_type: 'case_closure' } }), checks), 6);
});

test('check 7: a disclosure the token does not list, or one listed but missing', { skip }, async () => {
  const { checks, deliver, body, token, fullMessage } = await setup();
  // The sender's signature still holds over a withheld disclosure: only `disclosed` catches it.
  const withheld = fullMessage.split('~').slice(1, -1).find((d) => !body.sd_jwt.includes(d));
  await refused(openDelivery(await deliver({ sdJwt: `${body.sd_jwt}${withheld}~` }), checks), 7);
  await refused(openDelivery(await deliver({ claims: { ...token, disclosed: token.disclosed.slice(1) } }), checks), 7);
});

test('check 8: a subject disclosure that is not in the presentation', { skip }, async () => {
  const { checks, deliver, token } = await setup();
  const subjects = [{ ...token.subjects[0], disclosure: token.disclosed[0] }]; // a property disclosure
  await refused(openDelivery(await deliver({ claims: { ...token, subjects } }), checks), 8);
});

test('check 9: a body that breaks its schema', { skip }, async () => {
  const { checks, deliver } = await setup();
  const strict = { ...checks, schemaFor: async () => ({ type: 'object', additionalProperties: false, properties: {} }) };
  await refused(openDelivery(await deliver(), strict), 9);
});
