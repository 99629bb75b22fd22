// `kiln builder create --platform` and `kiln buildpack package --platform` through the CLI: one
// image per platform in an image index, each platform's build image read from the build image's
// index, buildpacks chosen per platform by their [[targets]] (and order groups that need a left-out
// buildpack dropped), and one clear line when the build image or a buildpack lacks a platform.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import type { Digest } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { indexFrom } from '../../src/oci/index.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { IndexSchema, parseJson } from '../../src/oci/schema.ts';
import { runMain } from '../helpers/cli.ts';
import { etcFileLayer } from '../helpers/lifecycle.ts';

let work: string;
const kiln = (...args: string[]) =>
  runMain(args, { HOME: work, PATH: process.env.PATH, KILN_HOME: path.join(work, 'kiln-home') });

async function buildpack(id: string, targets: string): Promise<string> {
  const dir = path.join(work, 'bps', id.replace('/', '_'));
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    `api = "0.10"\n[buildpack]\nid = "${id}"\nversion = "1.0.0"\n${targets}`,
  );
  for (const b of ['detect', 'build']) {
    await writeFile(path.join(dir, 'bin', b), '#!/bin/sh\nexit 0\n');
    await chmod(path.join(dir, 'bin', b), 0o755);
  }
  return dir;
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-builder-platforms-'));
  const layout = await Layout.init(path.join(work, 'base'));
  const layer = await etcFileLayer(
    layout.blobs,
    'passwd',
    Buffer.from('cnb:x:1000:1000::/home/cnb:/bin/sh\n'),
  );
  const base = (architecture: string): Image =>
    imageFrom({
      config: {
        architecture,
        os: 'linux',
        config: {
          User: '1000:1000',
          Env: ['CNB_USER_ID=1000', 'CNB_GROUP_ID=1000'],
          Labels: { 'io.buildpacks.stack.id': 'test.stack' },
        },
      },
      layers: [layer],
    });
  await layout.writeIndex(indexFrom([{ image: base('amd64') }, { image: base('arm64') }]), 'build');
  await layout.writeImage(base('amd64'), 'build-amd64-only');
  const any = await buildpack('test/any', '');
  const amd = await buildpack('test/amd64-only', '[[targets]]\nos = "linux"\narch = "amd64"\n');
  const arm = await buildpack('test/arm64-only', '[[targets]]\nos = "linux"\narch = "arm64"\n');
  const toml = (image: string) =>
    [any, amd, arm].map((d) => `[[buildpacks]]\nuri = "${d}"\n`).join('') +
    `[[order]]\n[[order.group]]\nid = "test/amd64-only"\n[[order.group]]\nid = "test/any"\n` +
    `[[order]]\n[[order.group]]\nid = "test/arm64-only"\n[[order.group]]\nid = "test/any"\n` +
    `[[order]]\n[[order.group]]\nid = "test/any"\n[[order.group]]\nid = "test/arm64-only"\noptional = true\n` +
    `[build]\nimage = "oci:${path.join(work, 'base')}:${image}"\n[[run.images]]\nimage = "example.test/run"\n`;
  await writeFile(path.join(work, 'builder.toml'), toml('build'));
  await writeFile(path.join(work, 'amd64-only.toml'), toml('build-amd64-only'));
});
after(() => rm(work, { recursive: true, force: true }));

async function readIndex(dir: string, tag: string) {
  const layout = await Layout.open(dir);
  const desc = await layout.resolve(tag);
  const index = parseJson(IndexSchema, await layout.blobs.readBytes(desc.digest), 'index');
  const labels = async (d: string) =>
    (await (await layout.imageByDigest(d as Digest)).configFile()).config?.Labels ?? {};
  return { desc, index, labels };
}

test('kiln builder create --platform writes an index; each platform carries the buildpacks its targets allow', async () => {
  const out = path.join(work, 'out');
  const r = await kiln(
    'builder',
    'create',
    '--config',
    path.join(work, 'builder.toml'),
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${out}:builder`,
  );
  assert.equal(r.code, 0, r.err);
  const { desc, index, labels } = await readIndex(out, 'builder');
  assert.equal(r.out.trim(), desc.digest);
  assert.deepEqual(
    index.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  );
  const want: Record<string, { bps: string[]; order: string[][] }> = {
    amd64: { bps: ['test/amd64-only', 'test/any'], order: [['test/amd64-only', 'test/any'], ['test/any']] },
    arm64: {
      bps: ['test/any', 'test/arm64-only'],
      order: [
        ['test/arm64-only', 'test/any'],
        ['test/any', 'test/arm64-only'],
      ],
    },
  };
  for (const m of index.manifests) {
    const l = await labels(m.digest);
    const arch = m.platform!.architecture;
    assert.deepEqual(
      Object.keys(JSON.parse(l['io.buildpacks.buildpack.layers']!)).sort(),
      want[arch]!.bps,
      arch,
    );
    const order = JSON.parse(l['io.buildpacks.buildpack.order']!) as { group: { id: string }[] }[];
    assert.deepEqual(
      order.map((g) => g.group.map((e) => e.id)),
      want[arch]!.order,
      arch,
    );
  }
  // The same builder for one platform is the index's entry for it, byte for byte.
  const one = await kiln(
    'builder',
    'create',
    '--config',
    path.join(work, 'builder.toml'),
    '--platform',
    'linux/arm64',
    '--output',
    `oci:${out}:arm`,
  );
  assert.equal(one.code, 0, one.err);
  assert.equal((await readIndex(out, 'arm')).index.manifests[0]!.digest, index.manifests[1]!.digest);
});

test('a build image without the platform fails in one line naming it', async () => {
  const r = await kiln(
    'builder',
    'create',
    '--config',
    path.join(work, 'amd64-only.toml'),
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${work}/bad:b`,
  );
  assert.notEqual(r.code, 0);
  assert.match(r.err, /^ERROR: oci:.*:build-amd64-only has no linux\/arm64 image \(it has linux\/amd64\)$/m);
});

test('kiln buildpack package --platform writes an index; a buildpack whose targets leave out a platform is refused', async () => {
  const out = path.join(work, 'pkgs');
  const r = await kiln(
    'buildpack',
    'package',
    `oci:${out}:any`,
    '--path',
    path.join(work, 'bps', 'test_any'),
    '--platform',
    'linux/amd64,linux/arm64',
  );
  assert.equal(r.code, 0, r.err);
  const { index } = await readIndex(out, 'any');
  assert.deepEqual(
    index.manifests.map((m) => m.platform?.architecture),
    ['amd64', 'arm64'],
  );
  const bad = await kiln(
    'buildpack',
    'package',
    `oci:${out}:amd`,
    '--path',
    path.join(work, 'bps', 'test_amd64-only'),
    '--platform',
    'linux/amd64,linux/arm64',
  );
  assert.equal(bad.code, 3, bad.err);
  assert.match(
    bad.err,
    /buildpack test\/amd64-only@1\.0\.0 cannot be packaged for linux\/arm64: its \[\[targets\]\] are linux\/amd64/,
  );
  // A builder reads the arm64 entry of a buildpackage index.
  await writeFile(
    path.join(work, 'pkg-builder.toml'),
    `[[buildpacks]]\nuri = "oci:${out}:any"\n[[order]]\n[[order.group]]\nid = "test/any"\n[build]\nimage = "oci:${path.join(work, 'base')}:build"\n[[run.images]]\nimage = "example.test/run"\n`,
  );
  const b = await kiln(
    'builder',
    'create',
    '--config',
    path.join(work, 'pkg-builder.toml'),
    '--platform',
    'linux/arm64',
    '--output',
    `oci:${work}/pb:b`,
  );
  assert.equal(b.code, 0, b.err);
});
