// `kiln buildpack package` and `kiln buildpack new` through the CLI: buildpackage labels and
// layers, composites, every destination (oci:, .cnb file, local store, a real registry), skopeo
// as the independent reader, determinism, clear package.toml errors, and builder configs that
// take buildpackages.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseBuilderConfig } from '../../src/builder/builder-config.ts';
import { readBuildpackageLabels } from '../../src/buildpackage/buildpackage.ts';
import { readOciArchive } from '../../src/buildpackage/oci-archive.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { ImageStore } from '../../src/store/store.ts';
import { runMain } from '../helpers/cli.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

const execFileP = promisify(execFile);

let root: string;
let home: string;
let registry: RegistryHandle;

async function kiln(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const before = process.cwd();
  if (cwd) process.chdir(cwd);
  try {
    const r = await runMain(args, { HOME: home, PATH: process.env.PATH, KILN_HOME: home, TMPDIR: root });
    return { code: r.code, stdout: r.out, stderr: r.err };
  } finally {
    if (cwd) process.chdir(before);
  }
}

async function ok(args: string[], cwd?: string): Promise<string> {
  const r = await kiln(args, cwd);
  assert.equal(r.code, 0, `kiln ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** A bash buildpack that writes one launch layer. */
async function bashBuildpack(dir: string, id: string, version: string, extra = ''): Promise<string> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    `api = "0.10"\n[buildpack]\nid = "${id}"\nversion = "${version}"\nhomepage = "https://example.com/${id}"\n${extra}`,
  );
  await writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
  await writeFile(path.join(dir, 'bin', 'build'), '#!/usr/bin/env bash\nset -eu\necho built\n', {
    mode: 0o755,
  });
  await writeFile(path.join(dir, 'README.md'), `# ${id}\n`, { mode: 0o600 }); // modes normalized
  await chmod(path.join(dir, 'bin', 'build'), 0o700);
  return dir;
}

async function layerEntries(image: Image, i: number): Promise<Map<string, { mode: number; uid: number }>> {
  const out = new Map<string, { mode: number; uid: number }>();
  const layer = (await image.layers())[i]!;
  for await (const e of readTar(await layer.uncompressed())) {
    out.set(e.header.path.replace(/\/$/, ''), { mode: e.header.mode & 0o7777, uid: e.header.uid });
    for await (const _ of e.body);
  }
  return out;
}

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'kiln-bp-test-'));
  home = path.join(root, 'home');
  await mkdir(home);
  registry = await startRegistry();
  await bashBuildpack(
    path.join(root, 'bp-a'),
    'test/a',
    '1.0.0',
    '[[stacks]]\nid = "io.test.stack"\n[[stacks]]\nid = "other"\n',
  );
  await bashBuildpack(path.join(root, 'bp-b'), 'test/b', '2.0.0', '[[stacks]]\nid = "io.test.stack"\n');
  await mkdir(path.join(root, 'composite'));
  await writeFile(
    path.join(root, 'composite', 'buildpack.toml'),
    `api = "0.10"
[buildpack]
id = "test/composite"
version = "0.1.0"
name = "Composite"
[[order]]
  [[order.group]]
  id = "test/a"
  version = "1.0.0"
  [[order.group]]
  id = "test/b"
  optional = true
`,
  );
});

after(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('kiln buildpack package', () => {
  test('a bash buildpack: one /cnb/buildpacks layer, both labels, os/arch; skopeo reads the layout', async () => {
    const out = path.join(root, 'layout-a');
    const digest = await ok(['buildpack', 'package', `oci:${out}:a`, '--path', path.join(root, 'bp-a')]);
    const image = await (await Layout.open(out)).image('a');
    assert.equal(await image.digest(), digest);
    const cfg = await image.configFile();
    assert.equal(cfg.os, 'linux');
    assert.equal(cfg.architecture, 'amd64');
    assert.equal(cfg.created, '1980-01-01T00:00:01Z');
    const { metadata, layers } = await readBuildpackageLabels(image, out);
    assert.deepEqual(metadata, {
      id: 'test/a',
      version: '1.0.0',
      homepage: 'https://example.com/test/a',
      stacks: [{ id: 'io.test.stack' }, { id: 'other' }],
    });
    const [layer] = await image.layers();
    assert.equal((await image.layers()).length, 1);
    assert.deepEqual(layers, {
      'test/a': {
        '1.0.0': {
          api: '0.10',
          stacks: [{ id: 'io.test.stack' }, { id: 'other' }],
          layerDiffID: await layer!.diffID(),
          homepage: 'https://example.com/test/a',
        },
      },
    });
    const entries = await layerEntries(image, 0);
    assert.deepEqual([...entries.keys()].sort(), [
      'cnb',
      'cnb/buildpacks',
      'cnb/buildpacks/test_a',
      'cnb/buildpacks/test_a/1.0.0',
      'cnb/buildpacks/test_a/1.0.0/README.md',
      'cnb/buildpacks/test_a/1.0.0/bin',
      'cnb/buildpacks/test_a/1.0.0/bin/build',
      'cnb/buildpacks/test_a/1.0.0/bin/detect',
      'cnb/buildpacks/test_a/1.0.0/buildpack.toml',
    ]);
    assert.equal(entries.get('cnb/buildpacks/test_a/1.0.0/bin/build')!.mode, 0o755);
    assert.equal(entries.get('cnb/buildpacks/test_a/1.0.0/README.md')!.mode, 0o644);
    assert.ok([...entries.values()].every((e) => e.uid === 0));

    const { stdout } = await execFileP('skopeo', ['inspect', `oci:${out}:a`]);
    const inspected = JSON.parse(stdout) as {
      Digest: string;
      Labels: Record<string, string>;
      Layers: string[];
    };
    assert.equal(inspected.Digest, digest);
    assert.equal(JSON.parse(inspected.Labels['io.buildpacks.buildpackage.metadata']!).id, 'test/a');
    assert.deepEqual(inspected.Layers, [await layer!.digest()]);
  });

  test('--format file writes a .cnb OCI layout tar: same digest as oci:, skopeo reads it, byte-identical twice', async () => {
    const oci = await ok([
      'buildpack',
      'package',
      `oci:${path.join(root, 'layout-a2')}`,
      '-p',
      path.join(root, 'bp-a'),
    ]);
    const cnb = path.join(root, 'a.cnb');
    const d1 = await ok(['buildpack', 'package', cnb, '--format', 'file', '-p', path.join(root, 'bp-a')]);
    const bytes1 = await readFile(cnb);
    const d2 = await ok([
      'buildpack',
      'package',
      'ignored',
      '--format',
      'file',
      '--path-to-output',
      cnb,
      '-p',
      path.join(root, 'bp-a'),
    ]);
    assert.equal(d1, oci);
    assert.equal(d2, d1);
    assert.ok(bytes1.equals(await readFile(cnb)), 'the .cnb file is reproducible');
    const { stdout } = await execFileP('skopeo', ['inspect', `oci-archive:${cnb}`]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, d1);
    // kiln reads it back in place, blobs verified
    const img = await readOciArchive(cnb);
    assert.equal(await img.digest(), d1);
    assert.equal((await layerEntries(img, 0)).has('cnb/buildpacks/test_a/1.0.0/bin/detect'), true);
    // no temp file is left next to it
    assert.deepEqual(
      (await readdir(root)).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  test('a composite with a directory and a .cnb dependency: its order, every component, stacks intersected', async () => {
    const cnbB = path.join(root, 'b.cnb');
    await ok(['buildpack', 'package', cnbB, '--format', 'file', '-p', path.join(root, 'bp-b')]);
    const bDiffID = await (await (await readOciArchive(cnbB)).layers())[0]!.diffID();
    await writeFile(
      path.join(root, 'package.toml'),
      '[buildpack]\nuri = "composite"\n[[dependencies]]\nuri = "bp-a"\n[[dependencies]]\nuri = "b.cnb"\n[platform]\nos = "linux"\n',
    );
    const out = path.join(root, 'layout-c');
    const digest = await ok(['buildpack', 'package', `oci:${out}:c`, '--config', 'package.toml'], root);
    const image = await (await Layout.open(out)).image('c');
    assert.equal(await image.digest(), digest);
    const { metadata, layers } = await readBuildpackageLabels(image, out);
    assert.deepEqual(metadata, {
      id: 'test/composite',
      version: '0.1.0',
      name: 'Composite',
      stacks: [{ id: 'io.test.stack' }],
    });
    assert.deepEqual(Object.keys(layers).sort(), ['test/a', 'test/b', 'test/composite']);
    assert.deepEqual(layers['test/composite']!['0.1.0']!.order, [
      {
        group: [
          { id: 'test/a', version: '1.0.0' },
          { id: 'test/b', optional: true },
        ],
      },
    ]);
    assert.equal(layers['test/b']!['2.0.0']!.layerDiffID, bDiffID, 'the .cnb layer is reused as it is');
    const diffIDs = (await image.configFile()).rootfs.diff_ids;
    assert.equal(diffIDs.length, 3);
    for (const [id, v] of [
      ['test/a', '1.0.0'],
      ['test/b', '2.0.0'],
      ['test/composite', '0.1.0'],
    ] as const)
      assert.ok(diffIDs.includes(layers[id]![v]!.layerDiffID as never), `${id} has its layer`);
    // the composite layer holds only its buildpack.toml
    const i = diffIDs.indexOf(layers['test/composite']!['0.1.0']!.layerDiffID as never);
    assert.ok((await layerEntries(image, i)).has('cnb/buildpacks/test_composite/0.1.0/buildpack.toml'));
    // Deterministic: a second package of the same inputs is the same image.
    assert.equal(
      await ok(['buildpack', 'package', `oci:${out}:c2`, '--config', 'package.toml'], root),
      digest,
    );
  });

  test('to the local store and, with --publish, to a real registry', async () => {
    const cfg = path.join(root, 'package.toml');
    const local = await ok(['buildpack', 'package', 'test/composite-pkg:1', '--config', cfg]);
    const store = await ImageStore.open(ImageStore.defaultDir(home));
    assert.equal(await store.digestOf('test/composite-pkg:1'), local);
    const ref = `${registry.host}/buildpacks/composite:1`;
    const pushed = await ok([
      '--insecure-registry',
      registry.host,
      'buildpack',
      'package',
      ref,
      '--config',
      cfg,
      '--publish',
    ]);
    assert.equal(pushed, local, 'same inputs, same digest in the store and the registry');
    const remote = await remoteImage(new RegistryClient({ insecure: [registry.host] }), parseReference(ref));
    assert.equal((await readBuildpackageLabels(remote, ref)).metadata.id, 'test/composite');
    const { stdout } = await execFileP('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, pushed);
    // A package can depend on a published buildpackage by image reference.
    await writeFile(
      path.join(root, 'package-img.toml'),
      `[buildpack]\nuri = "composite"\n[[dependencies]]\nuri = "bp-a"\n[[dependencies]]\nimage = "${registry.host}/buildpacks/composite:1"\n`,
    );
    const viaImage = await ok(
      [
        '--insecure-registry',
        registry.host,
        'buildpack',
        'package',
        `oci:${path.join(root, 'layout-d')}`,
        '--config',
        'package-img.toml',
      ],
      root,
    );
    assert.equal(viaImage, local, 'components from an image keep their layers: the same package');
  });

  test('a tgz buildpack uri is unpacked and packaged like its directory', async () => {
    const tgz = path.join(root, 'bp-a.tgz');
    await execFileP('tar', ['-czf', tgz, '-C', path.join(root, 'bp-a'), '.']);
    await writeFile(path.join(root, 'package-tgz.toml'), '[buildpack]\nuri = "bp-a.tgz"\n');
    const fromTgz = await ok(
      ['buildpack', 'package', `oci:${path.join(root, 'layout-t')}`, '-c', 'package-tgz.toml'],
      root,
    );
    const fromDir = await ok([
      'buildpack',
      'package',
      `oci:${path.join(root, 'layout-t2')}`,
      '-p',
      path.join(root, 'bp-a'),
    ]);
    assert.equal(fromTgz, fromDir);
  });

  test('bad package.toml: one clear error naming the key', async () => {
    const cases: [string, RegExp][] = [
      ['[buildpack]\n', /package-bad\.toml: buildpack\.uri: /],
      ['[[dependencies]]\nuri = "x"\n', /package-bad\.toml: buildpack: /],
      [
        '[buildpack]\nuri = "bp-a"\n[[dependencies]]\nuri = "bp-b"\nimage = "x/y"\n',
        /dependencies\[0\]: exactly one of uri or image/,
      ],
      ['[buildpack]\nuri = "bp-a"\n[platform]\nos = "windows"\n', /platform\.os: only "linux"/],
      [
        '[buildpack]\nuri = "urn:cnb:registry:test/a"\n',
        /buildpack\.uri: "urn:cnb:registry:test\/a": buildpack registry urns/,
      ],
      ['[buildpack]\nuri = "missing-dir"\n', /buildpack\.uri: .*missing-dir does not exist/],
      [
        '[buildpack]\nuri = "composite"\n[[dependencies]]\nuri = "bp-a"\n',
        /order\[0\]\.group\[1\]: test\/b is not in the package/,
      ],
      ['[buildpack\nuri=', /package-bad\.toml: invalid TOML/],
    ];
    for (const [text, re] of cases) {
      await writeFile(path.join(root, 'package-bad.toml'), text);
      const r = await kiln(
        ['buildpack', 'package', `oci:${path.join(root, 'never')}`, '-c', 'package-bad.toml'],
        root,
      );
      assert.notEqual(r.code, 0, text);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line for ${JSON.stringify(text)}: ${r.stderr}`);
      assert.match(lines[0]!, re);
    }
    // A failed package tags nothing (the layout may hold blobs of layers written before the error).
    const never = await Layout.open(path.join(root, 'never')).catch(() => undefined);
    assert.deepEqual((await never?.tags()) ?? [], []);
  });
});

describe('builder configs take buildpackages', () => {
  test('kiln builder create with [[buildpacks]] uri = a .cnb file, oci:DIR:TAG and docker://: their layers unchanged', async () => {
    const cnbA = path.join(root, 'builder-a.cnb');
    await ok(['buildpack', 'package', cnbA, '--format', 'file', '-p', path.join(root, 'bp-a')]);
    const aLayer = (await (await readOciArchive(cnbA)).layers())[0]!;
    const layoutB = path.join(root, 'layout-builder-b');
    await ok(['buildpack', 'package', `oci:${layoutB}:b`, '-p', path.join(root, 'bp-b')]);
    const bDiffID = await (await (await (await Layout.open(layoutB)).image('b')).layers())[0]!.diffID();
    const compRef = `${registry.host}/buildpacks/composite:1`; // published by an earlier test
    const store = await ImageStore.open(ImageStore.defaultDir(home));
    await store.write(
      imageFrom({
        config: {
          os: 'linux',
          architecture: 'amd64',
          config: { Env: ['CNB_USER_ID=1000', 'CNB_GROUP_ID=1000'] },
        },
      }),
      ['example/build'],
    );
    await writeFile(
      path.join(root, 'builder.toml'),
      `[[buildpacks]]
uri = "builder-a.cnb"
[[buildpacks]]
uri = "oci:layout-builder-b:b"
id = "test/b"
[[buildpacks]]
uri = "docker://${compRef}"
[[order]]
  [[order.group]]
  id = "test/composite"
[[order]]
  [[order.group]]
  id = "test/a"
  [[order.group]]
  id = "test/b"
[build]
image = "example/build"
[[run.images]]
image = "example/run"
`,
    );
    const digest = await ok([
      '--insecure-registry',
      registry.host,
      'builder',
      'create',
      'example/builder',
      '--config',
      path.join(root, 'builder.toml'),
    ]);
    const builder = (await store.find('example/builder'))!;
    assert.equal(await builder.digest(), digest);
    const labels = (await builder.configFile()).config!.Labels!;
    const layers = JSON.parse(labels['io.buildpacks.buildpack.layers']!);
    assert.equal(layers['test/a']['1.0.0'].layerDiffID, await aLayer.diffID());
    assert.equal(layers['test/b']['2.0.0'].layerDiffID, bDiffID);
    assert.deepEqual(layers['test/composite']['0.1.0'].order, [
      {
        group: [
          { id: 'test/a', version: '1.0.0' },
          { id: 'test/b', optional: true },
        ],
      },
    ]);
    // Same compression, same bytes: the builder's blob for test/a is the package's blob.
    const aDigest = await aLayer.digest();
    assert.ok((await builder.manifest()).layers.some((l) => l.digest === aDigest));
    assert.throws(
      () =>
        parseBuilderConfig(
          '[[buildpacks]]\nuri = "urn:cnb:registry:x"\n[[order]]\n[[order.group]]\nid="x"\n[[run.images]]\nimage="r"\n',
          'b.toml',
        ),
      /b\.toml: buildpack uri "urn:cnb:registry:x"/,
    );
  });
});

describe('kiln buildpack new', () => {
  test('scaffolds an executable bash buildpack that packages; refuses a non-empty directory and a bad api', async () => {
    const dir = path.join(root, 'new', 'hello');
    await ok([
      'buildpack',
      'new',
      'example/hello',
      '--path',
      dir,
      '--api',
      '0.11',
      '-t',
      'linux/arm64',
      '-V',
      '1.0.0',
    ]);
    const toml = await readFile(path.join(dir, 'buildpack.toml'), 'utf8');
    assert.match(toml, /api = "0\.11"/);
    assert.match(toml, /id = "example\/hello"/);
    assert.match(toml, /version = "1\.0\.0"/);
    assert.match(toml, /arch = "arm64"/);
    for (const bin of ['detect', 'build'])
      assert.equal((await stat(path.join(dir, 'bin', bin))).mode & 0o777, 0o755);
    const digest = await ok([
      'buildpack',
      'package',
      `oci:${path.join(root, 'layout-new')}`,
      '-c',
      path.join(dir, 'package.toml'),
    ]);
    const img = await (await Layout.open(path.join(root, 'layout-new'))).image(digest);
    assert.equal((await img.configFile()).architecture, 'arm64', 'the one target arch is the config arch');
    let r = await kiln(['buildpack', 'new', 'example/hello', '--path', dir]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /already exists and is not empty/);
    r = await kiln(['buildpack', 'new', 'example/x', '--path', path.join(root, 'new', 'x'), '--api', '0.3']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /--api 0\.3: expected one of/);
    r = await kiln(['buildpack', 'new', 'app', '--path', path.join(root, 'new', 'app')]);
    assert.equal(r.code, 3);
  });
});
