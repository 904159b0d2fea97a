// A JSON Schema (2020-12) validator for the subset the MASP schemas use: the message body
// schemas (schemas/json/) and the wire schemas of docs/spec/schemas/.
//
//   type, enum, const, anyOf, allOf, not, if/then/else, $ref (to `#/$defs/…`, or to a
//   sibling file `other.schema.json#/$defs/…` given in `registry`), properties,
//   additionalProperties, required, items, prefixItems, minItems/maxItems,
//   minLength/maxLength, pattern, minimum/maximum, and the formats date, time, date-time
//   and uuid (checked, as the broker does).
//
// Any other keyword is an error here, so a schema change cannot be ignored silently.
// validate() returns the failing paths (`victim_address.postcode`, `orders[0].status`).

import { readFile } from 'node:fs/promises';

const ANNOTATIONS = new Set(['title', 'description', 'default', '$id', '$schema', 'examples', 'deprecated', 'readOnly', 'writeOnly', '$comment']);
const KNOWN = new Set([
  'type', 'enum', 'const', 'anyOf', 'allOf', 'not', 'if', 'then', 'else', '$ref', '$defs', 'properties',
  'additionalProperties', 'required', 'items', 'prefixItems', 'minItems', 'maxItems', 'minLength', 'maxLength',
  'pattern', 'minimum', 'maximum', 'format',
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
  if (Array.isArray(want)) return want.some((w) => typeMatches(w, v));
  const got = typeOf(v);
  return want === got || (want === 'number' && got === 'integer');
}

function pathJoin(path, key) {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
  return v;
}
const sameJson = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

/**
 * Validates `value` against `schema`; `registry` maps sibling file names
 * (`common.schema.json`) to their schemas. Returns a list of failures, empty if valid.
 */
export function validate(schema, value, registry = {}) {
  const errors = [];

  // A $ref is resolved against the document the referring schema is in (`root`).
  const resolve = (s, root) => {
    if (!s.$ref) return { s, root };
    const [file, fragment = ''] = s.$ref.split('#');
    const doc = file ? registry[file] : root;
    const m = /^\/\$defs\/([^/]+)$/.exec(fragment);
    const target = fragment === '' ? doc : m && doc?.$defs?.[m[1]];
    if (!target) throw new Error(`cannot resolve ${s.$ref}`);
    return { s: target, root: doc };
  };

  const check = (s, v, path, root) => {
    if (s === true) return true;
    if (s === false) return errors.push(`${path || '<root>'} (not allowed)`), false;
    for (const k of Object.keys(s)) {
      if (!KNOWN.has(k) && !ANNOTATIONS.has(k) && !k.startsWith('x-')) throw new Error(`schema keyword ${k} is not supported`);
    }
    const fail = (why) => errors.push(`${path || '<root>'} (${why})`);
    // Runs a sub-schema without keeping its errors: for anyOf, not and if.
    const passes = (sub) => {
      const mark = errors.length;
      const ok = check(sub, v, path, root);
      errors.length = mark;
      return ok;
    };

    if (s.$ref) {
      const target = resolve(s, root);
      if (!check(target.s, v, path, target.root)) return false;
    }
    if (s.allOf && !s.allOf.every((sub) => check(sub, v, path, root))) return false;
    if (s.anyOf && !s.anyOf.some(passes)) {
      // Name the inner path when only one branch is of the value's type
      // (`{"anyOf": [Address, null]}` with a bad postcode → `victim_address.postcode`).
      const sameType = s.anyOf.filter((sub) => {
        const t = resolve(sub, root).s.type;
        return t === undefined || typeMatches(t, v);
      });
      if (sameType.length === 1) check(sameType[0], v, path, root);
      else fail('matches none of the allowed forms');
      return false;
    }
    if (s.not && passes(s.not)) return fail('matches a form that is not allowed'), false;
    if (s.if) {
      const branch = passes(s.if) ? s.then : s.else;
      if (branch && !check(branch, v, path, root)) return false;
    }
    if (s.type && !typeMatches(s.type, v)) return fail(`expected ${s.type}`), false;
    if (s.enum && !s.enum.some((e) => sameJson(e, v))) return fail('not an allowed value'), false;
    if ('const' in s && !sameJson(s.const, v)) return fail('not the required value'), false;

    const mark = errors.length;
    if (typeof v === 'string') {
      const len = [...v].length; // JSON Schema counts code points
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
      const prefix = s.prefixItems ?? [];
      v.forEach((item, i) => {
        if (i < prefix.length) check(prefix[i], item, pathJoin(path, i), root);
        else if (s.items !== undefined) check(s.items, item, pathJoin(path, i), root);
      });
    }
    if (typeOf(v) === 'object') {
      for (const name of s.required ?? []) if (!Object.hasOwn(v, name)) errors.push(`${pathJoin(path, name)} (missing)`);
      for (const [name, item] of Object.entries(v)) {
        if (s.properties && Object.hasOwn(s.properties, name)) check(s.properties[name], item, pathJoin(path, name), root);
        else if (s.additionalProperties === false) errors.push(`${pathJoin(path, name)} (unknown field)`);
        else if (typeof s.additionalProperties === 'object') check(s.additionalProperties, item, pathJoin(path, name), root);
      }
    }
    return errors.length === mark;
  };

  check(schema, value, '', schema);
  return errors;
}

/** The repository's body schema for a message type (schemas/json/<type>.v1.schema.json). */
export async function loadBodySchema(schemasDir, maspType) {
  if (!/^[a-z_]+$/.test(maspType)) throw new Error('not a message type');
  return JSON.parse(await readFile(`${schemasDir.replace(/\/?$/, '/')}${maspType}.v1.schema.json`, 'utf8'));
}

/** The deployment-independent received variant: top-level `required` removed. */
export function receivedVariant(bodySchema) {
  const { required, ...rest } = bodySchema;
  return rest;
}
