/**
 * A strict JSON reader for the reference server's JSON request form. JSON.parse cannot be
 * used as is: the nonce is a JSON number that may exceed 2^53 and must survive exactly, so
 * numbers are kept as their source text. Member names match case-insensitively and the last
 * duplicate wins, as Go's encoding/json does for the reference's request struct.
 */

export type JsonValue =
  | null
  | boolean
  | string
  | { readonly number: string }
  | JsonValue[]
  | { readonly object: Map<string, JsonValue> };

export class JsonSyntaxError extends Error {}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const MAX_DEPTH = 32;

export function parseJson(text: string): JsonValue {
  let pos = 0;
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at offset ${pos}`);
  };
  const ws = () => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos]!)) pos++;
  };
  const str = (): string => {
    const end = scanString(text, pos);
    if (end < 0) fail('bad string');
    const value = JSON.parse(text.slice(pos, end)) as string;
    pos = end;
    return value;
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const object = new Map<string, JsonValue>();
      ws();
      if (text[pos] === '}') {
        pos++;
        return { object };
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a member name');
        const key = str();
        ws();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        object.set(key, value(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return { object };
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      pos++;
      const items: JsonValue[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return items;
      }
      for (;;) {
        items.push(value(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return items;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected character');
    pos += m[0].length;
    return { number: m[0] };
  };
  const result = value(0);
  ws();
  if (pos !== text.length) fail('trailing data');
  return result;
}

/** The offset just past the JSON string starting at `start` (a quote), or -1. */
function scanString(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return -1;
    if (c === 0x5c) {
      const e = text[i + 1];
      if (e === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return -1;
        i += 6;
        continue;
      }
      if (e === undefined || !'"\\/bfnrt'.includes(e)) return -1;
      i += 2;
      continue;
    }
    i++;
  }
  return -1;
}

/** A member of an object the way Go's encoding/json finds it: exact name, else any case. */
export function member(object: Map<string, JsonValue>, name: string): JsonValue | undefined {
  let found: JsonValue | undefined;
  const lower = name.toLowerCase();
  // Go applies every member in order; the last one that matches the field wins.
  for (const [key, value] of object) {
    if (key === name || key.toLowerCase() === lower) found = value;
  }
  return found;
}
