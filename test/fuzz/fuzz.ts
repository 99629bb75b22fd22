import fc from 'fast-check';

// Shared settings of the property-based fuzz tests. `npm test` runs a small, fixed number of
// cases with a fixed seed (so a failure reproduces on every machine); `FUZZ_RUNS=20000` runs more
// locally, and `FUZZ_SEED=<n>` (or `FUZZ_SEED=random`) explores other inputs. fast-check prints
// the seed and the shrunk counterexample's path on failure, so a run can be replayed exactly.

const DEFAULT_SEED = 0x6b696c6e; // "kiln"

/** seed is the fast-check seed of this run. */
export const seed: number =
  process.env.FUZZ_SEED === 'random'
    ? Date.now() ^ (Math.random() * 0x7fffffff)
    : Number.isSafeInteger(Number(process.env.FUZZ_SEED)) && process.env.FUZZ_SEED
      ? Number(process.env.FUZZ_SEED)
      : DEFAULT_SEED;

/** runs is the number of cases of one property: `base` in `npm test`, FUZZ_RUNS when set. */
export function runs(base: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isSafeInteger(n) && n > 0 ? n : base;
}

/** params are the fast-check parameters of a property that runs `base` cases by default. */
export function params<T>(base: number): fc.Parameters<T> {
  return { numRuns: runs(base), seed, endOnFailure: process.env.FUZZ_SHRINK === '0' };
}

/**
 * expectCleanError checks what a parser threw on bad input: one of the `allowed` error classes
 * (a bare TypeError/RangeError from a property read or a stack overflow is a crash, not a
 * refusal), with a one-line message of bounded length that matches `pattern` when given.
 */
export function expectCleanError(
  err: unknown,
  allowed: readonly (abstract new (...args: never[]) => Error)[],
  pattern?: RegExp,
): void {
  const e = err as Error;
  const ok = allowed.some((c) => err instanceof c);
  if (!ok || (pattern && !pattern.test(e.message))) {
    throw new Error(`parser crashed instead of refusing the input: ${e?.name}: ${e?.message}`, {
      cause: err,
    });
  }
  if (/[\n\r]/.test(e.message))
    throw new Error(`error message is not one line: ${JSON.stringify(e.message)}`);
  if (e.message.length > 4096) throw new Error(`error message is ${e.message.length} characters long`);
}

/** Strings with the characters parsers trip over: NUL, control characters, quotes, unicode. */
export const nastyString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.string({
      unit: fc.constantFrom(
        '\0',
        '\n',
        '\r',
        '\t',
        '"',
        "'",
        '\\',
        '=',
        '[',
        ']',
        '.',
        '/',
        ' ',
        'a',
        'é',
        '\u2028',
        '\ud800',
      ),
      maxLength,
    }),
    fc.constantFrom('', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '..', '/', '\0', 'a\nb'),
  );

/** Arbitrary JSON-like values with nasty keys and strings (bounded depth). */
export const nastyJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1.5, Number.MAX_SAFE_INTEGER, 2 ** 64, -0),
    nastyString(),
    fc.integer(),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nastyString(12), tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** All paths to values inside `v` (objects and arrays), including the root. */
export function pathsOf(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...pathsOf(x, [...at, i]));
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...pathsOf(x, [...at, k]));
  return out;
}

/** setAt returns a copy of `v` with the value at `path` replaced (own properties, `__proto__` included). */
export function setAt(v: unknown, path: readonly (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  if (Array.isArray(v)) return v.map((x, i) => (i === head ? setAt(x, rest, value) : x));
  const o = { ...(typeof v === 'object' && v !== null ? v : {}) } as Record<string, unknown>;
  Object.defineProperty(o, head as string, {
    value: setAt(o[head as string], rest, value),
    enumerable: true,
    configurable: true,
    writable: true,
  });
  return o;
}

/** mutatedJson is `example` with values replaced or keys added at random places, as JSON text. */
export function mutatedJson(example: unknown): fc.Arbitrary<string> {
  const paths = pathsOf(example);
  return fc
    .array(fc.tuple(fc.nat({ max: paths.length - 1 }), nastyJson, fc.option(nastyString(10), { freq: 3 })), {
      minLength: 1,
      maxLength: 3,
    })
    .map((edits) => {
      let d = example;
      for (const [i, value, key] of edits) {
        const p = paths[i]!;
        d = key === null ? setAt(d, p, value) : setAt(d, [...p.slice(0, -1), key], value);
      }
      return JSON.stringify(d);
    });
}
