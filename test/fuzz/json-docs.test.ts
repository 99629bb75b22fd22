import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { z } from 'zod';
import {
  parseBuildMetadata,
  parseCacheMetadata,
  parseLifecycleMetadata,
  parseProjectMetadata,
  stringifyLabel,
} from '../../src/cnb/lifecycle-metadata.ts';
import { parseFingerprints } from '../../src/lifecycle/cache-image.ts';
import {
  ConfigFileSchema,
  DescriptorSchema,
  IndexSchema,
  ManifestSchema,
  parseJson,
} from '../../src/oci/schema.ts';
import { expectCleanError, mutatedJson, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of the JSON documents a registry, an image or a cache hands kiln: OCI
// manifests, indexes and image configs, and the lifecycle's metadata labels. Each parser gives a
// validated value or one TypeError line naming the document, never a crash on a null where an
// object was expected, a stack overflow on deep nesting, or a hang; what parses re-serialises to
// the same value.

const D = `sha256:${'a'.repeat(64)}`;
const descriptor = {
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  digest: D,
  size: 10,
  annotations: { a: 'b' },
};

const OCI: readonly { what: string; schema: z.ZodType; example: unknown }[] = [
  {
    what: 'manifest',
    schema: ManifestSchema,
    example: {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { ...descriptor, mediaType: 'application/vnd.oci.image.config.v1+json' },
      layers: [descriptor, { ...descriptor, urls: ['https://x'] }],
      subject: descriptor,
      annotations: { 'org.opencontainers.image.created': '2020-01-01T00:00:00Z' },
    },
  },
  {
    what: 'index',
    schema: IndexSchema,
    example: {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          ...descriptor,
          platform: { architecture: 'amd64', os: 'linux', 'os.features': ['x'], variant: 'v8' },
        },
      ],
    },
  },
  {
    what: 'config',
    schema: ConfigFileSchema,
    example: {
      architecture: 'amd64',
      os: 'linux',
      created: '2020-01-01T00:00:00Z',
      config: {
        User: '1000:1000',
        Env: ['PATH=/bin'],
        Entrypoint: ['/cnb/lifecycle/launcher'],
        Cmd: null,
        Labels: { 'io.buildpacks.lifecycle.metadata': '{}' },
        ExposedPorts: { '8080/tcp': {} },
        WorkingDir: '/workspace',
      },
      rootfs: { type: 'layers', diff_ids: [D, D] },
      history: [{ created_by: 'kiln', empty_layer: true }, { comment: 'x' }],
    },
  },
  { what: 'descriptor', schema: DescriptorSchema, example: descriptor },
];

const LABELS: readonly { what: string; parse: (raw: string) => unknown; example: unknown }[] = [
  {
    what: 'io.buildpacks.lifecycle.metadata',
    parse: parseLifecycleMetadata,
    example: {
      app: [{ sha: D }],
      config: { sha: D },
      launcher: { sha: D },
      'process-types': { sha: D },
      buildpacks: [
        {
          key: 'acme/node',
          version: '1',
          layers: { node: { sha: D, data: { v: 1 }, launch: true, cache: true } },
          store: { metadata: {} },
        },
      ],
      runImage: { topLayer: D, reference: 'run@sha256:x', image: 'run', mirrors: ['m'] },
      stack: { runImage: { image: 'run', mirrors: [] } },
    },
  },
  {
    what: 'io.buildpacks.build.metadata',
    parse: parseBuildMetadata,
    example: {
      bom: null,
      buildpacks: [{ id: 'a', version: '1', homepage: 'h', api: '0.10' }],
      launcher: { version: '0.1', source: { git: { repository: 'r', commit: 'c' } } },
      processes: [{ type: 'web', command: ['node'], args: null, direct: true, buildpackID: 'a' }],
      'buildpack-default-process-type': 'web',
    },
  },
  {
    what: 'io.buildpacks.project.metadata',
    parse: parseProjectMetadata,
    example: { source: { type: 'git', version: { commit: 'c' }, metadata: { repository: 'r' } } },
  },
  {
    what: 'io.buildpacks.lifecycle.cache.metadata',
    parse: parseCacheMetadata,
    example: { buildpacks: [{ key: 'a', version: '1', layers: {} }] },
  },
];

// ---- generators ----

const mutated = mutatedJson;

/** JSON text damaged at the character level, raw bytes, and pathological nesting. */
function damaged(example: unknown): fc.Arbitrary<string> {
  const text = JSON.stringify(example);
  return fc
    .array(fc.tuple(fc.nat({ max: text.length }), fc.nat({ max: 6 }), nastyString(4)), {
      minLength: 1,
      maxLength: 3,
    })
    .map((edits) => {
      let s = text;
      for (const [at, del, ins] of edits) s = s.slice(0, at) + ins + s.slice(at + del);
      return s;
    });
}

const garbage: fc.Arbitrary<string> = fc.oneof(
  nastyString(200),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('utf8')),
  fc.nat({ max: 100000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.nat({ max: 100000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
  fc.constantFrom(
    'null',
    '[]',
    '""',
    '1e999',
    '{"__proto__":{"schemaVersion":2}}',
    '{"constructor":{"prototype":{}}}',
  ),
);

function input(example: unknown): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: mutated(example) },
    { weight: 2, arbitrary: damaged(example) },
    { weight: 1, arbitrary: garbage },
  );
}

// ---- properties ----

describe('fuzz: OCI documents (parseJson)', () => {
  for (const d of OCI) {
    test(`${d.what}: a value or one TypeError line naming it; what parses round-trips`, () => {
      assert.doesNotThrow(() => parseJson(d.schema, JSON.stringify(d.example), d.what));
      fc.assert(
        fc.property(input(d.example), fc.boolean(), (text, asBytes) => {
          let v: unknown;
          try {
            v = parseJson(d.schema, asBytes ? Buffer.from(text) : text, d.what);
          } catch (e) {
            expectCleanError(e, [TypeError], new RegExp(`^invalid ${d.what}: `));
            return;
          }
          assert.deepEqual(parseJson(d.schema, JSON.stringify(v), d.what), v);
        }),
        params(600),
      );
    });
  }
});

describe('fuzz: lifecycle metadata labels', () => {
  for (const l of LABELS) {
    test(`${l.what}: a value or one TypeError line naming it; what parses round-trips`, () => {
      assert.doesNotThrow(() => l.parse(JSON.stringify(l.example)));
      fc.assert(
        fc.property(input(l.example), (text) => {
          let v: unknown;
          try {
            v = l.parse(text);
          } catch (e) {
            expectCleanError(e, [TypeError], new RegExp(`^invalid ${l.what.replaceAll('.', '\\.')} label: `));
            return;
          }
          assert.deepEqual(l.parse(stringifyLabel(v)), v);
        }),
        params(600),
      );
    });
  }
});

describe('fuzz: cache image fingerprint label', () => {
  const entry = { diffID: D, digest: D, size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
  test('only well-formed entries, never a throw, whatever the label holds', () => {
    fc.assert(
      fc.property(input({ 'fp-1': entry, 'fp-2': entry }), (text) => {
        const fps = parseFingerprints(text);
        assert.equal(Object.getPrototypeOf(fps), Object.prototype);
        for (const e of Object.values(fps)) {
          assert.match(e.diffID, /^sha256:[0-9a-f]{64}$/);
          assert.match(e.digest, /^sha256:[0-9a-f]{64}$/);
          assert.ok(Number.isSafeInteger(e.size) && e.size >= 0);
          assert.equal(typeof e.mediaType, 'string');
        }
      }),
      params(600),
    );
  });
  test('regression: a label of null, or an entry of null, reads as no fingerprints (null reached layer reuse)', () => {
    assert.deepEqual(parseFingerprints('null'), {});
    assert.deepEqual(parseFingerprints(JSON.stringify({ a: null, b: entry })), { b: entry });
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: JSON documents', () => {
  test('JSON with a CR or NUL in it gives one line that quotes none of the input', () => {
    assert.throws(
      () => parseJson(ManifestSchema, '\r\u0000', 'manifest'),
      (e: Error) => {
        // The input may be a host file a link pointed at: the message says where, never what.
        expectCleanError(e, [TypeError], /^invalid manifest: not JSON( \(at byte \d+\))?$/);
        return true;
      },
    );
    assert.throws(
      () => parseLifecycleMetadata('\n\u0000'),
      (e: Error) => {
        expectCleanError(e, [TypeError], /^invalid io\.buildpacks\.lifecycle\.metadata label: not JSON: /);
        return true;
      },
    );
  });
  test('a key with a CR in the field path stays one line', () => {
    const m = { ...descriptor, annotations: { '\r': null } };
    assert.throws(
      () => parseJson(DescriptorSchema, JSON.stringify(m), 'descriptor'),
      (e: Error) => {
        expectCleanError(e, [TypeError], /field "annotations\.\\u000d"/);
        return true;
      },
    );
  });
  test('a document nested 100000 deep is refused (JSON.stringify and deep comparison overflowed the stack)', () => {
    const deep = `{"schemaVersion":2,"x":${'{"a":'.repeat(100000)}1${'}'.repeat(100000)}}`;
    assert.throws(
      () => parseJson(ManifestSchema, deep, 'manifest'),
      /^TypeError: invalid manifest: nested deeper than 1000 levels$/,
    );
    assert.throws(
      () => parseLifecycleMetadata(`{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`),
      /nested deeper than 1000 levels/,
    );
    // What the TOML writer can still write back (metadata from a buildpack) parses.
    assert.doesNotThrow(() => parseLifecycleMetadata(`{"a":${'['.repeat(990)}${']'.repeat(990)}}`));
  });
  test('a __proto__ key survives stringifyLabel (assignment made it the prototype and dropped it)', () => {
    const v = parseProjectMetadata(
      '{"source":{"metadata":{"repository":[{"":[{"__proto__":null}]}],"__proto__":{"x":1}}}}',
    );
    assert.deepEqual(parseProjectMetadata(stringifyLabel(v)), v);
    const again = parseProjectMetadata(stringifyLabel(v)) as { source: { metadata: object } };
    assert.equal(Object.getPrototypeOf(again.source.metadata), Object.prototype);
  });
});
