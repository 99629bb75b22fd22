import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../cli/exit-codes.ts';
import { ExitCode } from '../cnb/exit-codes.ts';
import { writeInlineBuildpack } from './inline-buildpack.ts';
import { parseProjectDescriptor, readProjectDescriptor } from './project-descriptor.ts';

const FILE = '/proj/project.toml';

function rejects(text: string, pattern: RegExp) {
  assert.throws(
    () => parseProjectDescriptor(text, FILE),
    (err: Error & { exitCode?: number }) => {
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith(`${FILE}: `), `names the file: ${err.message}`);
      assert.equal(exitCodeOf(err), ExitCode.InvalidArgs);
      return true;
    },
  );
}

describe('parseProjectDescriptor() schema 0.2', () => {
  const full = `
[_]
schema-version = "0.2"
id = "io.example.app"
name = "Example"
version = "1.2.3"
authors = ["Ada", "Linus"]
documentation-url = "https://docs.example.com"
source-url = "https://git.example.com/app"
[[_.licenses]]
type = "MIT"
[_.metadata]
team = "web"
cost = { center = 42 }

[io.buildpacks]
builder = "example/builder:1"
exclude = ["*.md", "node_modules/"]

[[io.buildpacks.group]]
id = "kiln/nodejs-engine"
version = "1.0.0"
[[io.buildpacks.group]]
uri = "./buildpacks/local"
[[io.buildpacks.group]]
uri = "docker://example/bp:1"
[[io.buildpacks.group]]
id = "me/inline"
[io.buildpacks.group.script]
api = "0.10"
inline = "echo hello"

[[io.buildpacks.pre.group]]
id = "me/pre"
[[io.buildpacks.post.group]]
id = "me/post"
version = "2"

[[io.buildpacks.build.env]]
name = "BP_NODE_VERSION"
value = "22"
[[io.buildpacks.build.env]]
name = "GREETING"
value = "hi"
[[io.buildpacks.build.env]]
name = "GREETING"
value = "hello"

[com.example.other]
anything = true
`;

  test('resolves every field', () => {
    const d = parseProjectDescriptor(full, FILE);
    assert.equal(d.schemaVersion, '0.2');
    assert.equal(d.file, FILE);
    assert.deepEqual(d.project, {
      id: 'io.example.app',
      name: 'Example',
      version: '1.2.3',
      authors: ['Ada', 'Linus'],
      documentationUrl: 'https://docs.example.com',
      sourceUrl: 'https://git.example.com/app',
      licenses: [{ type: 'MIT' }],
    });
    assert.deepEqual(JSON.parse(JSON.stringify(d.metadata)), { team: 'web', cost: { center: 42 } });
    assert.equal(d.builder, 'example/builder:1');
    assert.deepEqual(d.exclude, ['*.md', 'node_modules/']);
    assert.equal(d.include, undefined);
    assert.deepEqual(d.env, { BP_NODE_VERSION: '22', GREETING: 'hello' }); // later entry wins
    assert.deepEqual(d.group, [
      { id: 'kiln/nodejs-engine', version: '1.0.0' },
      { uri: './buildpacks/local', resolvedUri: '/proj/buildpacks/local' },
      { uri: 'docker://example/bp:1', resolvedUri: 'docker://example/bp:1' },
      { id: 'me/inline', script: { api: '0.10', inline: 'echo hello', shell: '/bin/sh' } },
    ]);
    assert.deepEqual(d.pre, [{ id: 'me/pre' }]);
    assert.deepEqual(d.post, [{ id: 'me/post', version: '2' }]);
    assert.deepEqual(d.warnings, []);
    assert.equal(d.filter.mode, 'exclude');
    assert.equal(d.filter.includes('README.md', false), false);
    assert.equal(d.filter.includes('docs/a.md', false), false);
    assert.equal(d.filter.includes('index.js', false), true);
    assert.equal(d.filter.mayContain('node_modules'), false);
    assert.equal(
      d.filter.includes('node_modules', false),
      true,
      'a file named node_modules is not a directory',
    );
  });

  test('reads the deprecated [[io.buildpacks.env.build]] and warns', () => {
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.env.build]]\nname="A"\nvalue="1"\n',
      FILE,
    );
    assert.deepEqual(d.env, { A: '1' });
    assert.match(d.warnings.join('\n'), /deprecated/);
  });

  test('warns about unknown keys in _ and io.buildpacks', () => {
    const d = parseProjectDescriptor('[_]\nschema-version="0.2"\nfoo=1\n[io.buildpacks]\nbar=2\n', FILE);
    assert.deepEqual(d.warnings, ['_.foo', 'io.buildpacks.bar']);
  });

  test('schema 0.3 keeps exec-env', () => {
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.3"\n[[io.buildpacks.group]]\nid="a"\nexec-env=["production"]\n',
      FILE,
    );
    assert.deepEqual(d.group, [{ id: 'a', execEnv: ['production'] }]);
  });

  test('include builds an include filter', () => {
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.2"\n[io.buildpacks]\ninclude=["src", "*.json"]\n',
      FILE,
    );
    assert.equal(d.filter.mode, 'include');
    assert.equal(d.filter.includes('src/a/b.js', false), true);
    assert.equal(d.filter.includes('package.json', false), true);
    assert.equal(d.filter.includes('test/x.js', false), false);
  });
});

describe('parseProjectDescriptor() errors name the key and the file', () => {
  test('include and exclude together', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[io.buildpacks]\ninclude=["a"]\nexclude=["b"]\n',
      /io\.buildpacks: include and exclude cannot both be set/,
    ));
  test('a wrong type', () =>
    rejects('[_]\nschema-version="0.2"\n[io.buildpacks]\nbuilder=3\n', /io\.buildpacks\.builder: .*string/));
  test('a group entry with uri and version', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nuri="x"\nversion="1"\n',
      /io\.buildpacks\.group\[0\]: a buildpack cannot have both uri and version/,
    ));
  test('a group entry with neither id nor uri', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nversion="1"\n',
      /group\[0\]: expected an id or a uri/,
    ));
  test('an inline script without api', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nid="x"\n[io.buildpacks.group.script]\ninline="true"\n',
      /io\.buildpacks\.group\[0\]\.script\.api/,
    ));
  test('an unknown key in a group entry', () =>
    rejects('[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nid="x"\nflavour="y"\n', /group\[0\]/));
  test('an env entry without value', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.build.env]]\nname="A"\n',
      /io\.buildpacks\.build\.env\[0\]\.value/,
    ));
  test('an env name that is not a file name', () =>
    rejects(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.build.env]]\nname="../x"\nvalue="1"\n',
      /io\.buildpacks\.build\.env\[0\]\.name: expected an environment variable name/,
    ));
  test('an unsupported schema version', () =>
    rejects('[_]\nschema-version="9.9"\n', /_\.schema-version: unsupported .*"9\.9"/));
  test('a non-string schema version', () =>
    rejects('[_]\nschema-version=2\n', /_\.schema-version: expected a string/));
  test('invalid TOML', () => rejects('[_\n', /invalid TOML/));
  test('a license with neither type nor uri', () =>
    rejects('[_]\nschema-version="0.2"\n[[_.licenses]]\n', /_\.licenses\[0\]: expected a type or a uri/));
});

describe('parseProjectDescriptor() schema 0.1 (no schema-version)', () => {
  test('reads [project], [build] and [metadata] and warns about the missing version', () => {
    const d = parseProjectDescriptor(
      `
[project]
id = "old"
name = "Old app"
version = "0.9"
source-url = "https://example.com/old"

[build]
include = ["src/"]
builder = "b:1"
[[build.buildpacks]]
id = "x/y"
version = "1"
[[build.buildpacks]]
uri = "../bp"
[[build.env]]
name = "K"
value = "V"

[metadata]
owner = "me"
`,
      FILE,
    );
    assert.equal(d.schemaVersion, '0.1');
    assert.equal(d.project.name, 'Old app');
    assert.equal(d.project.version, '0.9');
    assert.equal(d.builder, 'b:1');
    assert.deepEqual(d.include, ['src/']);
    assert.deepEqual(d.env, { K: 'V' });
    assert.deepEqual(d.group, [
      { id: 'x/y', version: '1' },
      { uri: '../bp', resolvedUri: '/bp' },
    ]);
    assert.deepEqual(d.metadata, { owner: 'me' });
    assert.match(d.warnings[0]!, /schema-version/);
  });

  test('errors name 0.1 keys', () =>
    rejects('[build]\ninclude=["a"]\nexclude=["b"]\n', /build: include and exclude cannot both be set/));
});

describe('readProjectDescriptor()', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-pd-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a project without project.toml gets the empty descriptor', async () => {
    const d = await readProjectDescriptor(dir);
    assert.equal(d.file, undefined);
    assert.deepEqual(d.env, {});
    assert.equal(d.filter.mode, 'all');
  });

  test('an explicit descriptor that does not exist is an error naming it', async () => {
    await assert.rejects(
      readProjectDescriptor(dir, 'other.toml'),
      /other\.toml: project descriptor not found/,
    );
  });

  test('reads the file and anchors relative uris at the project directory', async () => {
    await writeFile(
      path.join(dir, 'project.toml'),
      '[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nuri="bp"\n',
    );
    const d = await readProjectDescriptor(dir);
    assert.equal(d.group[0]!.resolvedUri, path.join(dir, 'bp'));
  });

  test('writeInlineBuildpack() writes a runnable buildpack like pack does', async () => {
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.2"\n[[io.buildpacks.group]]\nid="me/inline"\n[io.buildpacks.group.script]\napi="0.10"\ninline="echo built > $1/out"\nshell="/bin/bash"\n',
      FILE,
    );
    const bp = await writeInlineBuildpack(d.group[0]!, path.join(dir, 'inline'));
    assert.equal(
      await readFile(path.join(bp, 'buildpack.toml'), 'utf8'),
      'api = "0.10"\n\n[buildpack]\nid = "me/inline"\nversion = "0.0.0"\n',
    );
    assert.equal(await readFile(path.join(bp, 'bin/build'), 'utf8'), '#!/bin/bash\n\necho built > $1/out\n');
    assert.equal(await readFile(path.join(bp, 'bin/detect'), 'utf8'), '#!/bin/bash\n\nexit 0\n');
    assert.equal((await stat(path.join(bp, 'bin/build'))).mode & 0o777, 0o755);
  });
});
