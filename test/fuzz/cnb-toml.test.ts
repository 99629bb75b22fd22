import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import type { z } from 'zod';
import { BuilderToml, parseBuilderConfig } from '../../src/builder/builder-config.ts';
import { PackageToml, parsePackageConfig } from '../../src/buildpackage/package-config.ts';
import { AnalyzedToml } from '../../src/cnb/analyzed-toml.ts';
import { DetectPlan, parseDetectPlan } from '../../src/cnb/build-plan.ts';
import { BuildToml } from '../../src/cnb/build-toml.ts';
import { BuildpackPlan } from '../../src/cnb/buildpack-plan.ts';
import { BuildpackToml } from '../../src/cnb/buildpack-toml.ts';
import { GroupToml } from '../../src/cnb/group-toml.ts';
import { LaunchToml } from '../../src/cnb/launch-toml.ts';
import { LayerToml } from '../../src/cnb/layer-toml.ts';
import { MetadataToml } from '../../src/cnb/metadata.ts';
import { OrderToml } from '../../src/cnb/order-toml.ts';
import { PlanToml } from '../../src/cnb/plan-toml.ts';
import { ProjectMetadataToml } from '../../src/cnb/project-metadata-toml.ts';
import { ReportToml } from '../../src/cnb/report-toml.ts';
import { RunToml } from '../../src/cnb/run-toml.ts';
import { StoreToml } from '../../src/cnb/store-toml.ts';
import { SystemToml } from '../../src/cnb/system-toml.ts';
import { CnbFileError, parseTomlText, toTomlText } from '../../src/cnb/toml-file.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { parseProjectDescriptor } from '../../src/platform/project-descriptor.ts';
import { expectCleanError, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of the TOML files a buildpack, a builder or an app hands kiln. Each file
// is parsed from text (file reads are another module's concern): a valid value or one CnbFileError
// line naming the file, never a TypeError, a stack overflow or a hang; and what parses survives
// the writer (toTomlText) unchanged.

/** A valid example of each file, mutated by the properties. */
const FILES: readonly { name: string; schema: z.ZodType; example: string }[] = [
  {
    name: 'buildpack.toml',
    schema: BuildpackToml,
    example: `api = "0.10"
[buildpack]
id = "acme/node"
version = "1.0.0"
name = "Node"
exec-env = ["production"]
sbom-formats = ["application/vnd.cyclonedx+json"]
[[order]]
[[order.group]]
id = "acme/a"
version = "1.0.0"
optional = true
[[targets]]
os = "linux"
arch = "amd64"
[[targets.distros]]
name = "debian"
version = "12"
[metadata]
x = 1
`,
  },
  {
    name: 'buildpack.toml (stacks)',
    schema: BuildpackToml,
    example: `api = "0.7"
[buildpack]
id = "acme/old"
version = "0.1.0"
[[stacks]]
id = "*"
mixins = ["a"]
`,
  },
  {
    name: 'order.toml',
    schema: OrderToml,
    example: `[[order]]
[[order.group]]
id = "a"
version = "1"
[[order.group]]
id = "b"
version = "2"
optional = true
[[order-extensions]]
[[order-extensions.group]]
id = "e"
version = "1"
`,
  },
  {
    name: 'system.toml',
    schema: SystemToml,
    example: `[system.pre]
[[system.pre.buildpacks]]
id = "p"
version = "1"
[system.post]
[[system.post.buildpacks]]
id = "q"
version = "1"
optional = true
`,
  },
  {
    name: 'group.toml',
    schema: GroupToml,
    example: `[[group]]
id = "a"
version = "1"
api = "0.10"
homepage = "https://x"
[[group-extensions]]
id = "e"
version = "1"
api = "0.10"
extension = true
`,
  },
  {
    name: 'plan.toml',
    schema: PlanToml,
    example: `[[entries]]
[[entries.providers]]
id = "a"
version = "1"
[[entries.requires]]
name = "node"
[entries.requires.metadata]
version = "20"
`,
  },
  {
    name: 'build plan',
    schema: DetectPlan,
    example: `[[provides]]
name = "node"
[[requires]]
name = "node"
version = "20"
[requires.metadata]
launch = true
[[or]]
[[or.provides]]
name = "npm"
[[or.requires]]
name = "npm"
`,
  },
  {
    name: 'buildpack plan',
    schema: BuildpackPlan,
    example: `[[entries]]
name = "node"
[entries.metadata]
version = "20"
`,
  },
  {
    name: 'launch.toml',
    schema: LaunchToml,
    example: `[[labels]]
key = "k"
value = "v"
[[processes]]
type = "web"
command = ["node", "server.js"]
args = ["--port", "8080"]
default = true
working-dir = "/workspace"
exec-env = ["production"]
[[slices]]
paths = ["a/*"]
[[bom]]
name = "x"
`,
  },
  {
    name: 'layer.toml',
    schema: LayerToml,
    example: `[types]
launch = true
build = false
cache = true
[metadata]
version = "20.1.0"
nested = { a = [1, 2] }
`,
  },
  { name: 'store.toml', schema: StoreToml, example: `[metadata]\nkey = "value"\n[metadata.deep]\nn = 1\n` },
  {
    name: 'build.toml',
    schema: BuildToml,
    example: `[[unmet]]
name = "node"
[[bom]]
name = "x"
`,
  },
  {
    name: 'report.toml',
    schema: ReportToml,
    example: `[image]
tags = ["a:latest"]
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
image-id = "x"
manifest-size = 1234
[build]
bom = []
`,
  },
  {
    name: 'run.toml',
    schema: RunToml,
    example: `[[images]]
image = "registry/run:latest"
mirrors = ["mirror/run:latest"]
`,
  },
  {
    name: 'analyzed.toml',
    schema: AnalyzedToml,
    example: `[previous-image]
reference = "app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
[run-image]
reference = "run"
image = "run:latest"
[run-image.target]
os = "linux"
arch = "amd64"
[run-image.target.distro]
name = "debian"
version = "12"
[metadata]
x = 1
`,
  },
  {
    name: 'metadata.toml',
    schema: MetadataToml,
    example: `[[buildpacks]]
id = "a"
version = "1"
api = "0.10"
[[processes]]
type = "web"
command = ["node"]
args = []
direct = true
buildpack-id = "a"
[[labels]]
key = "k"
value = "v"
`,
  },
  {
    name: 'project-metadata.toml',
    schema: ProjectMetadataToml,
    example: `[source]
type = "git"
[source.version]
commit = "abc"
[source.metadata]
repository = "x"
`,
  },
  {
    name: 'builder.toml',
    schema: BuilderToml,
    example: `description = "d"
[[buildpacks]]
uri = "./bp"
id = "a"
version = "1"
[[order]]
[[order.group]]
id = "a"
version = "1"
[build]
image = "build"
[[build.env]]
name = "A"
value = "b"
[[run.images]]
image = "run"
mirrors = ["m"]
[stack]
id = "io.buildpacks.stacks.bookworm"
build-image = "build"
run-image = "run"
[lifecycle]
version = "0.20.0"
`,
  },
  {
    name: 'package.toml',
    schema: PackageToml,
    example: `[buildpack]
uri = "."
[[dependencies]]
uri = "docker://x/y:1"
[platform]
os = "linux"
`,
  },
];

const PROJECT_TOML = `[_]
schema-version = "0.2"
id = "app"
name = "App"
version = "1"
[io.buildpacks]
builder = "b"
include = ["src"]
[[io.buildpacks.build.env]]
name = "A"
value = "b"
[[io.buildpacks.group]]
id = "a"
version = "1"
[[io.buildpacks.group]]
id = "inline"
[io.buildpacks.group.script]
api = "0.10"
inline = "echo hi"
shell = "/bin/sh"
[[io.buildpacks.pre.group]]
uri = "./bp"
`;

// ---- generators ----

/** Values TOML can encode (no null), with nasty keys and strings, bounded in depth and size. */
const tomlValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(
      true,
      false,
      0,
      -1,
      1.5,
      Number.MAX_SAFE_INTEGER,
      2 ** 64,
      -0,
      Number.POSITIVE_INFINITY,
      Number.NaN,
    ),
    nastyString(),
    fc.integer(),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nastyString(12), tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** All paths to values inside `v` (objects and arrays), including the root. */
function pathsOf(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...pathsOf(x, [...at, i]));
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...pathsOf(x, [...at, k]));
  return out;
}

/** setAt returns a copy of `v` with the value at `path` replaced (or, for the root, `value`). */
function setAt(v: unknown, path: readonly (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  if (Array.isArray(v)) return v.map((x, i) => (i === head ? setAt(x, rest, value) : x));
  const o = { ...(v as Record<string, unknown>) };
  Object.defineProperty(o, head as string, {
    value: setAt(o[head as string], rest, value),
    enumerable: true,
    configurable: true,
    writable: true,
  });
  return o;
}

/**
 * mutated derives well-formed but adversarial documents from a valid one: values replaced at
 * random places (wrong types, NUL and newlines in strings and keys, deep nesting, huge numbers).
 */
function mutated(example: string): fc.Arbitrary<string> {
  const doc = parseToml(example);
  const paths = pathsOf(doc);
  return fc
    .array(fc.tuple(fc.nat({ max: paths.length - 1 }), tomlValue, fc.option(nastyString(10), { freq: 3 })), {
      minLength: 1,
      maxLength: 3,
    })
    .map((edits) => {
      let d: unknown = doc;
      for (const [i, value, key] of edits) {
        const p = paths[i]!;
        // Either replace a value or add a key next to it.
        d = key === null ? setAt(d, p, value) : setAt(d, [...p.slice(0, -1), key], value);
      }
      try {
        return typeof d === 'object' && d !== null && !Array.isArray(d) ? stringifyToml(d) : example;
      } catch {
        return example; // smol-toml cannot encode it (e.g. NaN in a strange place): keep the example
      }
    });
}

/** Text-level damage: the example with random characters inserted, deleted or swapped. */
function damaged(example: string): fc.Arbitrary<string> {
  return fc
    .array(fc.tuple(fc.nat({ max: example.length }), fc.nat({ max: 8 }), nastyString(6)), {
      minLength: 1,
      maxLength: 4,
    })
    .map((edits) => {
      let s = example;
      for (const [at, del, ins] of edits) s = s.slice(0, at) + ins + s.slice(at + del);
      return s;
    });
}

/** Raw garbage and pathological nesting. */
const garbage: fc.Arbitrary<string> = fc.oneof(
  nastyString(200),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('utf8')),
  fc.nat({ max: 20000 }).map((n) => `a = ${'['.repeat(n)}${']'.repeat(n)}`),
  fc.nat({ max: 20000 }).map((n) => `a = ${'{ b = '.repeat(n)}1${' }'.repeat(n)}`),
  fc
    .nat({ max: 3000 })
    .map((n) => `${Array.from({ length: n }, (_, i) => `[${'x.'.repeat(i % 50)}t${i}]`).join('\n')}`),
  fc.constantFrom(
    'a = 99999999999999999999',
    'a = 1979-05-27T07:32:00Z',
    'a = inf',
    'a = nan',
    '__proto__ = 1',
    '[__proto__]\nx = 1',
    'a.__proto__.b = 1',
  ),
);

/** Files are read as UTF-8, so text never holds a lone surrogate: decode as a read would. */
function input(example: string): fc.Arbitrary<string> {
  return fc
    .oneof(
      { weight: 3, arbitrary: mutated(example) },
      { weight: 2, arbitrary: damaged(example) },
      { weight: 1, arbitrary: garbage },
    )
    .map((s) => s.toWellFormed());
}

// ---- properties ----

describe('fuzz: CNB TOML files', () => {
  for (const f of FILES) {
    test(`${f.name}: a value or one CnbFileError line; what parses survives the writer`, () => {
      const where = `/layers/x/${f.name.replace(/ .*/, '')}`;
      assert.doesNotThrow(() => parseTomlText(f.example, f.schema, where), 'the example is valid');
      fc.assert(
        fc.property(input(f.example), (text) => {
          let v: unknown;
          try {
            v = parseTomlText(text, f.schema, where);
          } catch (e) {
            expectCleanError(e, [CnbFileError], new RegExp(`^${where}: `));
            return;
          }
          // Round trip through the writer kiln uses for these files.
          const again = parseTomlText(toTomlText(v as object), f.schema, where);
          assert.deepEqual(again, v);
        }),
        params(500),
      );
    });
  }

  test('detect build plan (parseDetectPlan): a value or one CnbFileError line', () => {
    fc.assert(
      fc.property(input(FILES.find((f) => f.name === 'build plan')!.example), (text) => {
        try {
          parseDetectPlan(text, 'plan.toml');
        } catch (e) {
          expectCleanError(e, [CnbFileError], /^plan\.toml: /);
        }
      }),
      params(300),
    );
  });

  test('project.toml (parseProjectDescriptor): a value or one CnbFileError line', () => {
    assert.doesNotThrow(() => parseProjectDescriptor(PROJECT_TOML, '/app/project.toml'));
    fc.assert(
      fc.property(
        fc.oneof(
          input(PROJECT_TOML),
          input('[project]\nid = "a"\n[build]\nexclude = ["x"]\n[[build.buildpacks]]\nid = "a"\n'),
        ),
        (text) => {
          try {
            parseProjectDescriptor(text, '/app/project.toml');
          } catch (e) {
            expectCleanError(e, [CnbFileError], /^\/app\/project\.toml: /);
          }
        },
      ),
      params(600),
    );
  });

  test('builder.toml and package.toml (parse*Config): a value or one KilnError line', () => {
    const builder = FILES.find((f) => f.name === 'builder.toml')!.example;
    const pkg = FILES.find((f) => f.name === 'package.toml')!.example;
    fc.assert(
      fc.property(input(builder), input(pkg), (b, p) => {
        try {
          parseBuilderConfig(b, '/src/builder.toml');
        } catch (e) {
          expectCleanError(e, [KilnError], /^\/src\/builder\.toml: /);
        }
        try {
          parsePackageConfig(p, '/src/package.toml');
        } catch (e) {
          expectCleanError(e, [KilnError], /^\/src\/package\.toml: /);
        }
      }),
      params(400),
    );
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: CNB TOML', () => {
  test('a __proto__ key survives the writer (assignment made it the prototype and dropped it)', () => {
    const text =
      '[metadata]\nkey = true\n[metadata.deep]\nn = 1\n__proto__ = true\n[metadata.__proto__]\nlaunch = true\n';
    const v = parseTomlText(text, StoreToml, 'store.toml');
    const again = parseTomlText(toTomlText(v), StoreToml, 'store.toml');
    assert.deepEqual(again, v);
    assert.equal(Object.getPrototypeOf(again.metadata), Object.prototype);
  });
  test('a key with a newline or CR gives a one-line message', () => {
    assert.throws(
      () =>
        parseTomlText(
          '[[group]]\nid = "a"\nversion = "1"\napi = "0.10"\n"x\\r\\ny" = 1\n[[group]]\n"a\\nb" = 1\n',
          GroupToml,
          'group.toml',
        ),
      (e: Error) => {
        expectCleanError(e, [CnbFileError], /^group\.toml: group\[1\]\.id: /);
        return true;
      },
    );
    assert.throws(
      () =>
        parseProjectDescriptor(
          '[_]\nschema-version = "0.2"\n[io.buildpacks]\n[[io.buildpacks.build.env]]\nname = "A"\nvalue = "b"\n"\\r" = true\n',
          '/app/project.toml',
        ),
      (e: Error) => {
        expectCleanError(e, [CnbFileError], /Unrecognized key: "\\u000d"$/);
        return true;
      },
    );
  });
  test('an unsupported schema-version with a CR is quoted on one line', () => {
    assert.throws(
      () => parseProjectDescriptor('[_]\nschema-version = "\\r"\n', '/app/project.toml'),
      (e: Error) => {
        expectCleanError(e, [CnbFileError], /unsupported project descriptor schema "\\r"/);
        return true;
      },
    );
  });
});
