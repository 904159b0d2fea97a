import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseStrict } from '../lib/json.mjs';

test('parses what JSON.parse parses', () => {
  const samples = ['{}', '[]', '0', '-1.5e3', '"a\\u00e9\\n"', 'true', 'null', ' {"a": [1, {"b": null}], "c": "d"} ', '{"__proto__": 1}'];
  for (const s of samples) assert.deepEqual(parseStrict(s), JSON.parse(s), s);
  assert.ok(Object.hasOwn(parseStrict('{"__proto__": 1}'), '__proto__'));
});

test('refuses repeated member names, also when spelled differently', () => {
  assert.throws(() => parseStrict('{"a":1,"a":2}'), /repeated/);
  assert.throws(() => parseStrict('{"a":1,"\\u0061":2}'), /repeated/);
  assert.throws(() => parseStrict('[{"x":{"k":1,"k":1}}]'), /repeated/);
  assert.deepEqual(parseStrict('[{"k":1},{"k":2}]'), [{ k: 1 }, { k: 2 }]);
});

test('refuses what JSON.parse refuses, and deep nesting', () => {
  for (const bad of ['', '{', '{"a"}', '[1,]', '{"a":1,}', '01', "'a'", '"\t"', '1 2', 'NaN']) {
    assert.throws(() => parseStrict(bad), SyntaxError, bad);
  }
  assert.throws(() => parseStrict('['.repeat(200) + ']'.repeat(200)), /deep/);
});
