// JSON.parse that refuses repeated member names and deep nesting.
//
// The spec (conventions.md "JSON") requires recipients to refuse a repeated member name
// anywhere in what they receive: JSON.parse silently keeps the last one, and another
// parser might keep the first, so one signed text could mean two things.
// This is a small recursive-descent parser; values (strings, numbers) are decoded by
// JSON.parse itself, so it accepts exactly what JSON.parse accepts, minus repeats.

const MAX_DEPTH = 128;
const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const LITERAL = /true|false|null/y;

export function parseStrict(text) {
  let pos = 0;

  const fail = (what) => {
    throw new SyntaxError(`JSON: ${what} at offset ${pos}`);
  };
  const skip = () => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  const token = (re) => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return null;
    pos = re.lastIndex;
    return m[0];
  };

  const value = (depth) => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    skip();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const out = {};
      const names = new Set();
      skip();
      if (text[pos] === '}') {
        pos++;
        return out;
      }
      for (;;) {
        skip();
        const raw = token(STRING);
        if (raw === null) fail('expected a member name');
        const name = JSON.parse(raw);
        if (names.has(name)) fail(`repeated member name ${raw}`);
        names.add(name);
        skip();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        // defineProperty: a member called "__proto__" stays an ordinary member
        Object.defineProperty(out, name, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return out;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      pos++;
      const out = [];
      skip();
      if (text[pos] === ']') {
        pos++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return out;
        }
        fail('expected "," or "]"');
      }
    }
    const raw = token(STRING) ?? token(NUMBER) ?? token(LITERAL);
    if (raw === null) fail('unexpected character');
    return JSON.parse(raw);
  };

  if (typeof text !== 'string') throw new TypeError('JSON: not a string');
  const result = value(0);
  skip();
  if (pos !== text.length) fail('trailing characters');
  return result;
}
