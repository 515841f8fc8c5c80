/**
 * JSON as results, arguments and progress cross the wire: strict, so that a value JSON
 * cannot carry fails loudly (Celery's EncodeError) instead of being silently mangled
 * (JSON.stringify would drop functions, turn a Map into {} and NaN into null).
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export class EncodeError extends Error {
  override readonly name = 'EncodeError';
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  const ctor = (value as object).constructor;
  return ctor && typeof ctor.name === 'string' && ctor.name ? ctor.name : 'Object';
}

/** Throws EncodeError naming the first value (and where) that JSON cannot carry. */
export function assertJson(value: unknown, path = '$', seen = new Set<object>()): asserts value is JsonValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new EncodeError(`${value} at ${path} is not JSON serializable`);
      return;
    case 'object': {
      if (value === null) return;
      if (seen.has(value)) throw new EncodeError(`circular reference at ${path} is not JSON serializable`);
      const proto = Object.getPrototypeOf(value);
      if (Array.isArray(value)) {
        seen.add(value);
        for (const [i, v] of value.entries()) assertJson(v, `${path}[${i}]`, seen);
        seen.delete(value);
        return;
      }
      if (proto !== Object.prototype && proto !== null) {
        throw new EncodeError(`Object of type ${typeName(value)} at ${path} is not JSON serializable`);
      }
      seen.add(value);
      for (const [k, v] of Object.entries(value)) assertJson(v, `${path}.${k}`, seen);
      seen.delete(value);
      return;
    }
    default:
      throw new EncodeError(`Object of type ${typeof value} at ${path} is not JSON serializable`);
  }
}

/** JSON text of a value, or EncodeError. Dates become ISO strings, as JSON.stringify does. */
export function encodeJson(value: unknown): string {
  const plain = value instanceof Date ? value.toISOString() : value;
  assertJson(plain);
  return JSON.stringify(plain);
}
