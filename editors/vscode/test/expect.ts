/** A small `expect` on node:assert, enough for these tests (no test framework dependency). */

import * as assert from "node:assert/strict";

interface Matchers {
  toBe(expected: unknown): void;
  toEqual(expected: unknown): void;
  toContain(item: unknown): void;
  toHaveLength(n: number): void;
  toBeNull(): void;
  toBeUndefined(): void;
  toThrow(message?: string): void;
}

function contains(actual: unknown, item: unknown): boolean {
  if (typeof actual === "string") return actual.includes(String(item));
  if (Array.isArray(actual)) return actual.includes(item);
  throw new TypeError(`toContain on ${typeof actual}`);
}

function matchers(actual: unknown, negate: boolean): Matchers {
  const check = (ok: boolean, message: string) => assert.ok(negate ? !ok : ok, (negate ? "not: " : "") + message);
  return {
    toBe: (expected) => (negate ? assert.notStrictEqual(actual, expected) : assert.strictEqual(actual, expected)),
    toEqual: (expected) => (negate ? assert.notDeepStrictEqual(actual, expected) : assert.deepStrictEqual(actual, expected)),
    toContain: (item) => check(contains(actual, item), `${JSON.stringify(actual)} should contain ${JSON.stringify(item)}`),
    toHaveLength: (n) => check((actual as { length: number }).length === n, `length ${(actual as { length: number }).length}, want ${n}`),
    toBeNull: () => check(actual === null, `${String(actual)} should be null`),
    toBeUndefined: () => check(actual === undefined, `${String(actual)} should be undefined`),
    toThrow: (message) => {
      if (typeof actual !== "function") throw new TypeError("toThrow needs a function");
      assert.throws(actual as () => unknown, (err: Error) => !message || err.message.includes(message));
    },
  };
}

export function expect(actual: unknown): Matchers & { not: Matchers; rejects: { toThrow(message?: string): Promise<void> } } {
  return {
    ...matchers(actual, false),
    not: matchers(actual, true),
    rejects: {
      toThrow: (message?: string) =>
        assert.rejects(actual as Promise<unknown>, (err: Error) => !message || err.message.includes(message)),
    },
  };
}
