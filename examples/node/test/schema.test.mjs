import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { validate, loadBodySchema, receivedVariant } from '../lib/schema.mjs';
import { caseReferral } from '../lib/example-case.mjs';

const SCHEMAS = fileURLToPath(new URL('../../../schemas/json/', import.meta.url));

test("the client's case_referral is valid against the published schema", async () => {
  const schema = await loadBodySchema(SCHEMAS, 'case_referral');
  assert.deepEqual(validate(schema, caseReferral().body), []);
});

test('failures name the path, never the value', async () => {
  const schema = await loadBodySchema(SCHEMAS, 'case_referral');
  const body = caseReferral().body;
  body.victim_address.postcode = 'ZZ1 11Z';
  body.offence_codes = [];
  body.colour = 'blue';
  delete body.cj_status;
  const errors = validate(schema, body);
  assert.deepEqual(errors.sort(), [
    'cj_status (missing)',
    'colour (unknown field)',
    'offence_codes (too few items)',
    'victim_address.postcode (pattern mismatch)',
  ]);
});

test('the received variant requires nothing but still refuses unknown fields', async () => {
  const schema = receivedVariant(await loadBodySchema(SCHEMAS, 'case_referral'));
  assert.deepEqual(validate(schema, {}), []);
  assert.deepEqual(validate(schema, { sdash_yes_count: 3 }), []);
  assert.deepEqual(validate(schema, { sdash_yes_count: 12 }), ['sdash_yes_count (above maximum)']);
  assert.deepEqual(validate(schema, { surprise: 1 }), ['surprise (unknown field)']);
});

test('formats and unsupported keywords', () => {
  assert.deepEqual(validate({ type: 'string', format: 'date' }, '2026-02-29'), ['<root> (not a date)']);
  assert.deepEqual(validate({ type: 'string', format: 'date' }, '2028-02-29'), []);
  assert.throws(() => validate({ oneOf: [] }, 1), /oneOf/);
});
