import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { KilnError } from '../../src/internal/errors.ts';
import { parseChallenges } from '../../src/registry/challenge.ts';
import { dockerConfigKeychain } from '../../src/registry/credentials.ts';
import { parseReference, referenceString } from '../../src/registry/reference.ts';
import { expectCleanError, nastyJson, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of what kiln reads about registries: a registry's WWW-Authenticate
// header, image references (from builders, project.toml, the command line) and the user's
// docker config.json. Each gives a value or one clean error line, never a crash or a hang.

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-reg-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('fuzz: WWW-Authenticate challenges', () => {
  const piece = fc.oneof(
    fc.constantFrom(
      'Bearer',
      'Basic',
      'realm=',
      'service=',
      'scope=',
      '"',
      '\\',
      ',',
      ' ',
      '\t',
      '=',
      'a',
      '"https://x/token"',
      '"a,b\\"c"',
    ),
    nastyString(8),
  );
  test('never throws, always terminates, and each challenge has a lowercase token scheme', () => {
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 30 }).map((p) => p.join('')),
        (header) => {
          const cs = parseChallenges(header);
          for (const c of cs) {
            assert.match(c.scheme, /^[!#$%&'*+\-.^_`|~0-9a-z]+$/);
            for (const k of Object.keys(c.params)) assert.equal(k, k.toLowerCase());
          }
        },
      ),
      params(2000),
    );
  });
  test('a long hostile header is parsed in linear time', () => {
    const start = performance.now();
    parseChallenges(`Bearer ${'a="'.repeat(200000)}`);
    parseChallenges(`${'Bearer realm=x,'.repeat(50000)}`);
    parseChallenges(`Bearer realm="${'\\'.repeat(400000)}`);
    assert.ok(performance.now() - start < 2000, 'took too long');
  });
  test('a well-formed challenge round-trips its quoted parameters', () => {
    const value = fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, ''));
    fc.assert(
      fc.property(
        fc.constantFrom('Bearer', 'Basic'),
        fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/), value, { maxKeys: 4 }),
        (scheme, ps) => {
          const header = `${scheme} ${Object.entries(ps)
            .map(([k, v]) => `${k}="${v.replace(/["\\]/g, '\\$&')}"`)
            .join(', ')}`;
          const [c] = parseChallenges(header);
          assert.equal(c?.scheme, scheme.toLowerCase());
          assert.deepEqual({ ...c?.params }, { ...ps });
        },
      ),
      params(500),
    );
  });
});

describe('fuzz: image references', () => {
  const part = fc.oneof(
    fc.constantFrom(
      'docker://',
      'localhost',
      'localhost:5000',
      '127.0.0.1:5000',
      '[::1]:5000',
      'docker.io',
      'a',
      'library',
      'app',
      '/',
      ':',
      '@',
      'latest',
      'v1.2',
      '.',
      '_',
      '__',
      '-',
      `sha256:${'a'.repeat(64)}`,
      'A',
      'x'.repeat(130),
    ),
    nastyString(6),
  );
  test('a Reference or one TypeError line naming it; what parses round-trips', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(part, { maxLength: 8 }).map((p) => p.join('')),
          fc.string({ maxLength: 1100 }),
        ),
        (input) => {
          let r: ReturnType<typeof parseReference>;
          try {
            r = parseReference(input);
          } catch (e) {
            expectCleanError(e, [TypeError], /^invalid image reference "/);
            return;
          }
          assert.deepEqual(parseReference(referenceString(r)), r);
        },
      ),
      params(2000),
    );
  });
});

describe('fuzz: docker config.json', () => {
  const auth = fc.oneof(
    fc.record(
      {
        auth: fc.oneof(
          nastyString(20),
          fc.string().map((s) => Buffer.from(s).toString('base64')),
          nastyJson,
        ),
        username: fc.oneof(nastyString(10), nastyJson),
        password: fc.oneof(nastyString(10), nastyJson),
        identitytoken: fc.oneof(nastyString(10), nastyJson),
        registrytoken: fc.oneof(nastyString(10), nastyJson),
      },
      { requiredKeys: [] },
    ),
    nastyJson,
  );
  const registries = ['index.docker.io', '127.0.0.1:5000', 'ghcr.io'];
  const key = fc.oneof(
    fc.constantFrom(
      ...registries,
      'https://index.docker.io/v1/',
      'docker.io',
      'http://127.0.0.1:5000/x',
      '__proto__',
    ),
    nastyString(10),
  );
  const config = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record(
        {
          auths: fc.oneof(fc.dictionary(key, auth, { maxKeys: 4 }), nastyJson),
          credHelpers: fc.oneof(
            fc.dictionary(key, fc.oneof(fc.constantFrom('', 'pass', 'a b', '../x'), nastyJson), {
              maxKeys: 3,
            }),
            nastyJson,
          ),
          credsStore: fc.oneof(fc.constantFrom('', 'desktop'), nastyJson),
        },
        { requiredKeys: [] },
      ),
    },
    { weight: 1, arbitrary: nastyJson },
  );
  test('a credential or one KilnError line, for any config.json text', async () => {
    // Helpers are looked up on an empty PATH: a named helper is "not found", never run.
    const emptyPath = fs.mkdtempSync(path.join(tmp, 'path-'));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 5, arbitrary: config.map((c) => JSON.stringify(c)) },
          { weight: 1, arbitrary: nastyString(50) },
        ),
        async (text) => {
          const dir = fs.mkdtempSync(path.join(tmp, 'cfg-'));
          fs.writeFileSync(path.join(dir, 'config.json'), text);
          const kc = dockerConfigKeychain({ dir, env: { PATH: emptyPath } });
          for (const r of registries) {
            try {
              const c = await kc.resolve(r);
              assert.ok(['anonymous', 'basic', 'identityToken', 'registryToken'].includes(c.kind));
            } catch (e) {
              expectCleanError(e, [KilnError]);
            }
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      ),
      params(150),
    );
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: registry inputs', () => {
  test('a reference with a CR gives one line', () => {
    assert.throws(
      () => parseReference('\r'),
      (e: Error) => {
        expectCleanError(e, [TypeError], /^invalid image reference "\\u000d": /);
        return true;
      },
    );
  });
  const configWith = async (text: string) => {
    const dir = fs.mkdtempSync(path.join(tmp, 'reg-'));
    fs.writeFileSync(path.join(dir, 'config.json'), text);
    return dockerConfigKeychain({ dir, env: { PATH: dir } }).resolve('index.docker.io');
  };
  test('an auths entry that is null is anonymous; one that is not an object is a KilnError (was a TypeError)', async () => {
    assert.deepEqual(await configWith('{"auths":{"index.docker.io":null}}'), { kind: 'anonymous' });
    await assert.rejects(configWith('{"auths":{"docker.io":7}}'), (e: Error) => {
      expectCleanError(e, [KilnError], /auths\["docker\.io"\] is not an object$/);
      return true;
    });
  });
  test('a helper name or a JSON error with a CR or NUL gives one line', async () => {
    await assert.rejects(configWith('{"credsStore":"\\r"}'), (e: Error) => {
      expectCleanError(e, [KilnError], /^invalid credential helper name "\\r"$/);
      return true;
    });
    await assert.rejects(configWith('\n\u0000'), (e: Error) => {
      expectCleanError(e, [KilnError], /not JSON: /);
      return true;
    });
  });
});
