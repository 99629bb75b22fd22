// Interoperability of kiln's OCI layouts and docker-archives with skopeo, umoci and podman.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { readDockerArchive, writeDockerArchive } from '../../src/archive/docker-archive.ts';
import { layerFromDirectory } from '../../src/layers/layer-writer.ts';
import { Layout, readImage, writeImage } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { indexFrom } from '../../src/oci/index.ts';
import { emptyImage, isoOfEpoch } from '../../src/oci/memory.ts';
import { appendLayers, setConfig } from '../../src/oci/mutate.ts';
import { validateImage } from '../../src/oci/validate.ts';
import { buildStaticHello, type Podman, startPodman } from '../helpers/podman.ts';

const run = promisify(execFile);
let tmp: string;
let podman: Podman;
let hello: Image;
let helloZstd: Image;
let kiln: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-interop-'));
  await fs.chmod(tmp, 0o755);
  podman = await startPodman();
  const root = path.join(tmp, 'root');
  await fs.mkdir(path.join(root, 'app'), { recursive: true });
  await fs.mkdir(path.join(root, 'tmp'), { mode: 0o1777 });
  await fs.chmod(path.join(root, 'tmp'), 0o1777);
  await buildStaticHello(path.join(root, 'app', 'hello'));
  kiln = path.join(tmp, 'kiln-layout');
  const store = (await Layout.init(kiln)).blobs;
  const base = setConfig(emptyImage(), {
    entrypoint: ['/app/hello'],
    cmd: ['from-cmd'],
    user: '1000:1000',
    workingDir: '/app',
    env: ['PATH=/app'],
    created: isoOfEpoch(315532801),
    history: [],
  });
  const gz = await layerFromDirectory(root, { store, uid: 0, gid: 0 });
  const zs = await layerFromDirectory(root, { store, uid: 0, gid: 0, compression: 'zstd' });
  hello = appendLayers(base, { layer: gz, history: { created_by: 'kiln interop test' } });
  helloZstd = appendLayers(base, zs);
  await writeImage(kiln, hello, 'hello');
  await writeImage(kiln, helloZstd, 'hello-zstd');
});

after(async () => {
  await podman.cleanup();
  await fs.rm(tmp, { recursive: true, force: true });
});

async function indexDigest(layout: string, tag: string): Promise<string> {
  return (await Layout.open(layout)).resolve(tag).then((d) => d.digest);
}

describe('OCI layout interop', () => {
  test('kiln layout is valid and skopeo copies it keeping the manifest digest', async () => {
    await validateImage(await readImage(kiln, 'hello'));
    const other = path.join(tmp, 'skopeo-copy');
    await run('skopeo', ['copy', '--quiet', `oci:${kiln}:hello`, `oci:${other}:copied`]);
    assert.equal(await indexDigest(other, 'copied'), await hello.digest());
    const back = await readImage(other, 'copied');
    await validateImage(back);
    assert.equal(await back.digest(), await hello.digest());
  });

  test('kiln reads a layout skopeo wrote from other sources (recompressed layers)', async () => {
    const archive = path.join(tmp, 'skopeo.docker.tar');
    await run('skopeo', ['copy', '--quiet', `oci:${kiln}:hello`, `docker-archive:${archive}:kiln/hello:v1`]);
    const sk = path.join(tmp, 'skopeo-layout');
    await run('skopeo', ['copy', '--quiet', `docker-archive:${archive}`, `oci:${sk}:from-archive`]);
    const img = await readImage(sk, 'from-archive');
    await validateImage(img);
    assert.deepEqual((await img.configFile()).rootfs.diff_ids, (await hello.configFile()).rootfs.diff_ids);
    // And a skopeo-written docker-archive is a kiln source.
    const fromArchive = await readDockerArchive(archive);
    await validateImage(fromArchive);
    assert.deepEqual((await fromArchive.configFile()).config?.Entrypoint, ['/app/hello']);
  });

  test('skopeo copies a kiln multi-platform index with --all keeping its digest', async () => {
    const arm = setConfig(hello, (c) => ({ ...c, architecture: 'arm64' }));
    const idx = indexFrom([{ image: hello }, { image: arm }]);
    const l = await Layout.open(kiln);
    await l.writeIndex(idx, 'multi');
    const other = path.join(tmp, 'skopeo-index');
    await run('skopeo', ['copy', '--quiet', '--all', `oci:${kiln}:multi`, `oci:${other}:multi`]);
    assert.equal(await indexDigest(other, 'multi'), await idx.digest());
    const back = await (await Layout.open(other)).imageIndex('multi');
    assert.equal((await back.indexManifest()).manifests.length, 2);
    await validateImage(await back.image(await arm.digest()));
  });

  test('umoci unpacks a kiln layout', async () => {
    const bundle = path.join(tmp, 'bundle');
    await run('umoci', ['unpack', '--image', `${kiln}:hello`, bundle]);
    const st = await fs.stat(path.join(bundle, 'rootfs/app/hello'));
    assert.equal(st.mode & 0o777, 0o755);
    assert.equal((await fs.stat(path.join(bundle, 'rootfs/tmp'))).mode & 0o7777, 0o1777);
    const cfg = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8'));
    assert.deepEqual(cfg.process.args, ['/app/hello', 'from-cmd']);
    assert.equal(cfg.process.user.uid, 1000);
  });

  test('podman runs the gzip and zstd images from the kiln layout as uid 1000', async () => {
    const r = await podman.run(`oci:${kiln}:hello`, ['a', 'b']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hello uid=1000 gid=1000 a b$/m);
    const z = await podman.run(`oci:${kiln}:hello-zstd`);
    assert.equal(z.code, 0, z.stderr);
    assert.match(z.stdout, /^hello uid=1000 gid=1000 from-cmd$/m);
  });
});

describe('docker-archive', () => {
  test('podman loads a kiln docker-archive and runs it; kiln reads it back identically', async () => {
    const file = path.join(tmp, 'kiln.docker.tar');
    await writeDockerArchive(file, [{ image: hello, tags: ['kiln-test/hello:v1'] }]);
    const again = path.join(tmp, 'kiln2.docker.tar');
    await writeDockerArchive(again, [{ image: hello, tags: ['kiln-test/hello:v1'] }]);
    assert.deepEqual(await fs.readFile(file), await fs.readFile(again), 'archives are deterministic');
    const load = await podman.load(file);
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stdout, /kiln-test\/hello:v1/);
    const r = await podman.run('localhost/kiln-test/hello:v1', ['loaded']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hello uid=1000 gid=1000 loaded$/m);
    const back = await readDockerArchive(file, { tag: 'kiln-test/hello:v1' });
    await validateImage(back);
    assert.deepEqual(await back.rawConfig(), await hello.rawConfig());
    // docker-archive -> layout: uncompressed layers are stored as they are.
    const out = path.join(tmp, 'from-archive');
    await writeImage(out, back, 'x');
    await validateImage(await readImage(out, 'x'));
    const run2 = await podman.run(`oci:${out}:x`, ['via-layout']);
    assert.match(run2.stdout, /^hello uid=1000 gid=1000 via-layout$/m, run2.stderr);
  });
});
