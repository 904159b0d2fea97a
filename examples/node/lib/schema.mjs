// A JSON Schema (2020-12) validator for the subset the MASP body schemas use:
// type, enum, const, anyOf, $ref (to #/$defs/…), properties, additionalProperties,
// required, items, minItems/maxItems, minLength/maxLength, pattern, minimum/maximum,
// and the formats date, time, date-time and uuid (checked, as the broker does).
// Anything else in a schema is an error here, so a schema change cannot be ignored silently.
// Returns a list of failing paths (`victim_address.postcode`, `orders[0].status`).

import { readFile } from 'node:fs/promises';

const ANNOTATIONS = new Set(['title', 'description', 'default', '$id', '$schema', 'examples', 'deprecated', 'readOnly', 'writeOnly', '$comment']);
const KNOWN = new Set([
  'type', 'enum', 'const', 'anyOf', '$ref', '$defs', 'properties', 'additionalProperties', 'required', 'items',
  'minItems', 'maxItems', 'minLength', 'maxLength', 'pattern', 'minimum', 'maximum', 'format',
]);

const FORMATS = {
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && isCalendarDate(s),
  time: (s) => /^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$/.test(s),
  'date-time': (s) =>
    /^\d{4}-\d{2}-\d{2}[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/.test(s) &&
    isCalendarDate(s.slice(0, 10)),
  uuid: (s) => /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s),
};

function isCalendarDate(s) {
  const [y, m, d] = s.split('-').map(Number);
  const date = new Date(Date.UTC(y, m - 1, d));
  return date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d;
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v; // string, boolean, object
}

function typeMatches(want, v) {
  const got = typeOf(v);
  return want === got || (want === 'number' && got === 'integer');
}

function pathJoin(path, key) {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

const sameJson = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export function validate(schema, value) {
  const errors = [];
  const root = schema;

  const resolve = (s) => {
    if (!s.$ref) return s;
    const m = /^#\/\$defs\/([^/]+)$/.exec(s.$ref);
    if (!m || !root.$defs?.[m[1]]) throw new Error(`cannot resolve ${s.$ref}`);
    return root.$defs[m[1]];
  };

  const check = (s, v, path) => {
    for (const k of Object.keys(s)) {
      if (!KNOWN.has(k) && !ANNOTATIONS.has(k) && !k.startsWith('x-')) throw new Error(`schema keyword ${k} is not supported`);
    }
    const fail = (why) => errors.push(`${path || '<body>'} (${why})`);
    if (s.$ref && !check(resolve(s), v, path)) return false;
    if (s.anyOf) {
      const before = errors.length;
      const ok = s.anyOf.some((sub) => {
        const good = check(sub, v, path);
        errors.length = before;
        return good;
      });
      if (!ok) {
        // Name the inner path when only one branch is of the value's type
        // (`{"anyOf": [Address, null]}` with a bad postcode → `victim_address.postcode`).
        const sameType = s.anyOf.filter((sub) => {
          const t = resolve(sub).type;
          return t === undefined || typeMatches(t, v);
        });
        if (sameType.length === 1) check(sameType[0], v, path);
        else fail('matches none of the allowed forms');
        return false;
      }
    }
    if (s.type && !typeMatches(s.type, v)) return fail(`expected ${s.type}`), false;
    if (s.enum && !s.enum.some((e) => sameJson(e, v))) return fail('not an allowed value'), false;
    if ('const' in s && !sameJson(s.const, v)) return fail('not the required value'), false;
    const mark = errors.length;
    if (typeof v === 'string') {
      const len = [...v].length;
      if (s.minLength !== undefined && len < s.minLength) fail('too short');
      if (s.maxLength !== undefined && len > s.maxLength) fail('too long');
      if (s.pattern && !new RegExp(s.pattern, 'u').test(v)) fail('pattern mismatch');
      if (s.format && FORMATS[s.format] && !FORMATS[s.format](v)) fail(`not a ${s.format}`);
    }
    if (typeof v === 'number') {
      if (s.minimum !== undefined && v < s.minimum) fail('below minimum');
      if (s.maximum !== undefined && v > s.maximum) fail('above maximum');
    }
    if (Array.isArray(v)) {
      if (s.minItems !== undefined && v.length < s.minItems) fail('too few items');
      if (s.maxItems !== undefined && v.length > s.maxItems) fail('too many items');
      if (s.items) v.forEach((item, i) => check(s.items, item, pathJoin(path, i)));
    }
    if (typeOf(v) === 'object') {
      for (const name of s.required ?? []) if (!Object.hasOwn(v, name)) errors.push(`${pathJoin(path, name)} (missing)`);
      for (const [name, item] of Object.entries(v)) {
        if (s.properties && Object.hasOwn(s.properties, name)) check(s.properties[name], item, pathJoin(path, name));
        else if (s.additionalProperties === false) errors.push(`${pathJoin(path, name)} (unknown field)`);
        else if (typeof s.additionalProperties === 'object') check(s.additionalProperties, item, pathJoin(path, name));
      }
    }
    return errors.length === mark;
  };

  check(schema, value, '');
  return errors;
}

/** The repository's body schema for a message type (schemas/json/<type>.v1.schema.json). */
export async function loadBodySchema(schemasDir, maspType) {
  return JSON.parse(await readFile(new URL(`${maspType}.v1.schema.json`, `file://${schemasDir.replace(/\/?$/, '/')}`), 'utf8'));
}

/** The deployment-independent received variant: top-level `required` removed. */
export function receivedVariant(bodySchema) {
  const { required, ...rest } = bodySchema;
  return rest;
}
