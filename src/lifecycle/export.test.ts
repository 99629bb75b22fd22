import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { etcFileLayer, launcherAt } from '../../test/helpers/lifecycle.ts';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { writeLayerToml } from '../cnb/layer-toml.ts';
import {
  emptyLifecycleMetadata,
  type LifecycleMetadata,
  parseBuildMetadata,
  parseLifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { writeMetadataToml } from '../cnb/metadata.ts';
import { writeStoreToml } from '../cnb/store-toml.ts';
import { loggerFrom } from '../internal/log.ts';
import { readTar } from '../layers/tar-reader.ts';
import { BlobStore } from '../layout/blob-store.ts';
import type { Image, Layer } from '../oci/image.ts';
import { imageFrom } from '../oci/memory.ts';
import { validateImage } from '../oci/validate.ts';
import type { CachedLayer } from './cache.ts';
import { exportImage, splitSlices } from './export.ts';
import { LayerResolver } from './layer-resolver.ts';

const tempDir = tempDirs('kiln-export-test-');

const EPOCH = 315532801;

async function runImage(blobs: BlobStore, user = '1000:1000'): Promise<Image> {
  const base = await etcFileLayer(blobs, 'os-release', 'ID\n', EPOCH);
  return imageFrom({
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: user,
        Env: ['PATH=/usr/bin:/bin'],
        Labels: { 'io.buildpacks.base.distro.name': 'debian', 'io.buildpacks.rebasable': 'true' },
      },
    },
    layers: [base],
  });
}

/** A build's output as the build phase leaves it, under `root`. */
async function buildOutput(
  root: string,
  appText = 'console.log(1)\n',
): Promise<{ layers: string; app: string; launcher: string }> {
  const layers = path.join(root, 'layers');
  const app = path.join(root, 'workspace');
  await fs.mkdir(path.join(layers, 'config'), { recursive: true });
  await fs.mkdir(path.join(app, 'lib'), { recursive: true });
  await fs.writeFile(path.join(app, 'index.js'), appText);
  await fs.writeFile(path.join(app, 'lib', 'big.txt'), 'x'.repeat(10000));
  const bp = path.join(layers, 'test_a');
  await fs.mkdir(path.join(bp, 'deps', 'bin'), { recursive: true });
  await fs.writeFile(path.join(bp, 'deps', 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  await writeLayerToml(
    path.join(bp, 'deps.toml'),
    { lock: 'abc' },
    { launch: true, build: false, cache: true },
  );
  await fs.mkdir(path.join(bp, 'buildonly'));
  await fs.writeFile(path.join(bp, 'buildonly', 'x'), 'x');
  await writeLayerToml(path.join(bp, 'buildonly.toml'), {}, { launch: false, build: true, cache: false });
  await writeStoreToml(path.join(bp, 'store.toml'), { metadata: { n: 1 } });
  await fs.mkdir(path.join(layers, 'test_b', 'runtime'), { recursive: true });
  await fs.writeFile(path.join(layers, 'test_b', 'runtime', 'r'), 'runtime');
  await writeLayerToml(
    path.join(layers, 'test_b', 'runtime.toml'),
    {},
    { launch: true, build: false, cache: false },
  );
  await writeMetadataToml(path.join(layers, 'config', 'metadata.toml'), {
    'buildpack-default-process-type': 'web',
    buildpacks: [
      { id: 'test/a', version: '1.0.0', api: '0.12' },
      { id: 'test/b', version: '2.0.0', api: '0.12', homepage: 'https://example.com' },
    ],
    processes: [
      { type: 'web', command: ['node', 'index.js'], args: [], direct: true, 'buildpack-id': 'test/b' },
      { type: 'worker', command: ['node'], args: ['w.js'], direct: true, 'buildpack-id': 'test/b' },
    ],
    slices: [],
    labels: [{ key: 'com.example.bp', value: 'yes' }],
    bom: [],
  });
  const launcher = path.join(root, 'launcher');
  await fs.writeFile(launcher, 'launcher-binary', { mode: 0o755 });
  return { layers, app, launcher };
}

async function previousLayers(img: Image): Promise<Map<string, Layer>> {
  const m = new Map<string, Layer>();
  for (const l of await img.layers()) m.set(await l.diffID(), l);
  return m;
}

async function doExport(
  out: { layers: string; app: string; launcher: string },
  blobs: BlobStore,
  run: Image,
  prev?: { image: Image; md: LifecycleMetadata },
  fps = new Map<string, CachedLayer>(),
) {
  const reuse = new LayerResolver({
    blobs,
    settings: { epoch: EPOCH, compression: 'gzip' },
    fingerprints: fps,
    previous: prev ? await previousLayers(prev.image) : new Map(),
  });
  const logs: string[] = [];
  const r = await exportImage({
    layersDir: out.layers,
    appDir: out.app,
    group: [
      { id: 'test/a', version: '1.0.0' },
      { id: 'test/b', version: '2.0.0' },
    ],
    runImage: run,
    runImageRef: 'run@sha256:' + 'a'.repeat(64),
    runImageName: 'example.com/run',
    previousMetadata: prev?.md ?? emptyLifecycleMetadata(),
    launcher: launcherAt(out.launcher),
    platformApi: '0.15',
    uid: 1000,
    gid: 1000,
    resolver: reuse,
    log: loggerFrom({ info: (m) => logs.push(m) }),
  });
  await validateImage(r.image);
  const md = parseLifecycleMetadata(
    (await r.image.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
  );
  return { r, md, stats: reuse.stats, logs };
}

/** The tar headers (path -> mode, uid, gid) of every layer of an image. */
async function headersOf(image: Image): Promise<Map<string, { mode: number; uid: number; gid: number }>> {
  const out = new Map<string, { mode: number; uid: number; gid: number }>();
  for (const l of await image.layers())
    for await (const e of readTar(await l.uncompressed()))
      out.set(e.header.path.replace(/\/$/, ''), {
        mode: e.header.mode,
        uid: e.header.uid,
        gid: e.header.gid,
      });
  return out;
}

describe('exportImage()', () => {
  test("with a separate run user: User is the run image's, files the build user wrote are readable and runnable by its group, never writable, never setuid", async () => {
    const root = await tempDir();
    const blobs = new BlobStore(path.join(root, 'blobs'));
    const out = await buildOutput(path.join(root, 'b'));
    // Modes a careless (or hostile) buildpack or app source may leave.
    const deps = path.join(out.layers, 'test_a', 'deps');
    await fs.writeFile(path.join(deps, 'secret.json'), '{}', { mode: 0o600 });
    await fs.mkdir(path.join(deps, 'private'), { mode: 0o700 });
    await fs.writeFile(path.join(deps, 'bin', 'su-build'), 'x', { mode: 0o755 });
    await fs.chmod(path.join(deps, 'bin', 'su-build'), 0o6755);
    await fs.chmod(path.join(deps, 'private'), 0o700);
    await fs.chmod(path.join(deps, 'secret.json'), 0o600);
    await fs.writeFile(path.join(out.app, 'only-owner.js'), 'x');
    await fs.chmod(path.join(out.app, 'only-owner.js'), 0o600);
    await fs.chmod(path.join(out.app, 'lib'), 0o700);
    const { r } = await doExport(out, blobs, await runImage(blobs, '1001:1000'));
    const cfg = await r.image.configFile();
    assert.equal(cfg.config?.User, '1001:1000', "the app image runs as the run image's user");
    assert.equal(cfg.config?.Labels?.['io.kiln.build.user'], '1000:1000');
    const h = await headersOf(r.image);
    const expect = (p: string, mode: number) => {
      const e = h.get(p);
      assert.ok(e, `${p} is in the image`);
      assert.equal(e.mode.toString(8), mode.toString(8), p);
      assert.deepEqual([e.uid, e.gid], [1000, 1000], p);
    };
    expect('layers/test_a/deps/secret.json', 0o640);
    expect('layers/test_a/deps/private', 0o750);
    expect('layers/test_a/deps/bin/su-build', 0o755);
    expect('layers/test_a/deps/bin/tool', 0o755);
    expect('workspace/only-owner.js', 0o640);
    expect('workspace/lib', 0o750);
    expect('layers/config/metadata.toml', 0o644);
    for (const [p, e] of h) {
      if (p.startsWith('workspace') || p.startsWith('layers')) {
        assert.equal(e.mode & 0o6000, 0, `${p}: no setuid/setgid`);
        assert.equal(e.mode & 0o020, 0, `${p}: the run user's group cannot write`);
      }
    }
  });

  test('stacks layers in the reference order and writes labels, env and entrypoint', async () => {
    const d = await tempDir();
    const blobs = new BlobStore(path.join(d, 'store'));
    const run = await runImage(blobs);
    const out = await buildOutput(path.join(d, 'b1'));
    const { r, md } = await doExport(out, blobs, run);
    const cfg = await r.image.configFile();
    const ids = cfg.rootfs.diff_ids;
    assert.equal(
      ids.length,
      1 + 2 + 1 + 1 + 1 + 1 + 1,
      'run + 2 launch layers + sbom + app + launcher + config + process-types',
    );
    assert.deepEqual(r.added, [
      'test/a:deps',
      'test/b:runtime',
      'buildpacksio/lifecycle:launch.sbom',
      'buildpacksio/lifecycle:app',
      'buildpacksio/lifecycle:launcher',
      'buildpacksio/lifecycle:config',
      'buildpacksio/lifecycle:process-types',
    ]);
    assert.equal(md.runImage.topLayer, ids[0]);
    assert.equal(md.buildpacks?.[0]?.layers?.deps?.sha, ids[1]);
    assert.deepEqual(md.buildpacks?.[0]?.layers?.deps?.data, { lock: 'abc' });
    assert.equal(md.buildpacks?.[0]?.layers?.buildonly, undefined, 'build-only layers are not exported');
    assert.deepEqual(md.buildpacks?.[0]?.store, { metadata: { n: 1 } });
    assert.equal(md.sbom?.sha, ids[3]);
    assert.equal(md.app[0]?.sha, ids[4]);
    assert.equal(md.launcher.sha, ids[5]);
    assert.equal(md.config.sha, ids[6]);
    assert.equal(md['process-types'].sha, ids[7]);
    const c = cfg.config!;
    assert.deepEqual(c.Entrypoint, ['/cnb/process/web']);
    assert.equal(c.WorkingDir, '/workspace');
    assert.equal(c.User, '1000:1000');
    assert.ok(c.Env!.includes('PATH=/cnb/process:/cnb/lifecycle:/usr/bin:/bin'));
    assert.ok(c.Env!.includes('CNB_PLATFORM_API=0.15'));
    assert.equal(c.Labels!['com.example.bp'], 'yes');
    assert.equal(c.Labels!['io.buildpacks.rebasable'], 'true');
    const bm = parseBuildMetadata(c.Labels!['io.buildpacks.build.metadata']!);
    assert.deepEqual(
      bm.processes?.map((p) => [p.type, p.buildpackID]),
      [
        ['web', 'test/b'],
        ['worker', 'test/b'],
      ],
    );
    assert.equal(cfg.created, '1980-01-01T00:00:01Z');
    assert.equal(cfg.history?.length, ids.length);
    assert.equal(cfg.history?.[1]?.created_by, "Layer: 'deps', Created by buildpack: test/a@1.0.0");
    // App content is owned by the cnb user; /cnb by root.
    const appLayer = (await r.image.layers())[4]!;
    const tar = Buffer.concat(await (await appLayer.uncompressed()).toArray());
    assert.ok(tar.includes(Buffer.from('workspace/index.js')));
    // uid field of the first entry (offset 108, octal) is the cnb user's.
    assert.equal(tar.subarray(108, 115).toString(), '0001750');
  });

  test('a no-op rebuild reuses every layer, compresses nothing and gives the same digest', async () => {
    const d = await tempDir();
    const blobs = new BlobStore(path.join(d, 'store'));
    const run = await runImage(blobs);
    const fps = new Map<string, CachedLayer>();
    const first = await doExport(await buildOutput(path.join(d, 'b1')), blobs, run, undefined, fps);
    const firstDigest = await first.r.image.digest();
    // Same content, new directory, new mtimes: fingerprints miss, hashing proves equality.
    const again = await doExport(
      await buildOutput(path.join(d, 'b2')),
      blobs,
      run,
      { image: first.r.image, md: first.md },
      fps,
    );
    assert.equal(await again.r.image.digest(), firstDigest);
    assert.equal(again.stats.compressed, 0);
    assert.ok(again.logs.includes("Reusing layer 'test/a:deps'"));
    // Same directory again: fingerprints hit, nothing is even read.
    const out3 = path.join(d, 'b2');
    const third = await doExport(
      {
        layers: path.join(out3, 'layers'),
        app: path.join(out3, 'workspace'),
        launcher: path.join(out3, 'launcher'),
      },
      blobs,
      run,
      { image: again.r.image, md: again.md },
      fps,
    );
    assert.equal(await third.r.image.digest(), firstDigest);
    assert.equal(third.stats.compressed, 0);
    assert.equal(third.stats.hashed, 0);
    assert.ok(third.stats.fingerprinted >= 7);
  });

  test('changing one app file changes only the app layer', async () => {
    const d = await tempDir();
    const blobs = new BlobStore(path.join(d, 'store'));
    const run = await runImage(blobs);
    const first = await doExport(await buildOutput(path.join(d, 'b1')), blobs, run);
    const second = await doExport(await buildOutput(path.join(d, 'b2'), 'console.log(2)\n'), blobs, run, {
      image: first.r.image,
      md: first.md,
    });
    const a = (await first.r.image.manifest()).layers.map((l) => l.digest);
    const b = (await second.r.image.manifest()).layers.map((l) => l.digest);
    assert.equal(second.stats.compressed, 1);
    assert.deepEqual(
      a.map((x, i) => x === b[i]),
      [true, true, true, true, false, true, true, true],
    );
  });

  test('the same build output in two directories at different times gives the same digest', async () => {
    const d = await tempDir();
    const run = await runImage(new BlobStore(path.join(d, 's0')));
    const one = await buildOutput(path.join(d, 'one'));
    const two = await buildOutput(path.join(d, 'two'));
    await fs.utimes(path.join(two.app, 'index.js'), new Date('2001-02-03'), new Date('2001-02-03'));
    const x = await doExport(one, new BlobStore(path.join(d, 's1')), run);
    const y = await doExport(two, new BlobStore(path.join(d, 's2')), run);
    assert.equal(await x.r.image.digest(), await y.r.image.digest());
    assert.deepEqual(await x.r.image.rawConfig(), await y.r.image.rawConfig());
  });

  test('a launch layer without a directory reuses the previous image layer, or fails without one', async () => {
    const d = await tempDir();
    const blobs = new BlobStore(path.join(d, 'store'));
    const run = await runImage(blobs);
    const first = await doExport(await buildOutput(path.join(d, 'b1')), blobs, run);
    const out = await buildOutput(path.join(d, 'b2'));
    await fs.rm(path.join(out.layers, 'test_b', 'runtime'), { recursive: true });
    const second = await doExport(out, blobs, run, { image: first.r.image, md: first.md });
    assert.equal(await second.r.image.digest(), await first.r.image.digest());
    const out3 = await buildOutput(path.join(d, 'b3'));
    await fs.rm(path.join(out3.layers, 'test_b', 'runtime'), { recursive: true });
    await assert.rejects(doExport(out3, blobs, run), /cannot reuse 'test\/b:runtime'/);
  });
});

describe('splitSlices()', () => {
  test('puts matched files and their parents in slices and the rest in the last layer', () => {
    const e = (p: string, type: 'dir' | 'file' = 'file') => ({
      path: p,
      type,
      mode: 0o755,
      uid: 1,
      gid: 1,
      size: 0,
    });
    const entries = [
      e('workspace', 'dir'),
      e('workspace/a.js'),
      e('workspace/static', 'dir'),
      e('workspace/static/x.css'),
      e('workspace/static/y.png'),
      e('workspace/z.txt'),
    ];
    const { slices, rest } = splitSlices(entries, 'workspace', [{ paths: ['static'] }, { paths: ['*.js'] }]);
    assert.deepEqual(
      slices.map((s) => s.map((x) => x.path)),
      [
        ['workspace', 'workspace/static', 'workspace/static/x.css', 'workspace/static/y.png'],
        ['workspace', 'workspace/a.js'],
      ],
    );
    assert.deepEqual(
      rest.map((x) => x.path),
      ['workspace', 'workspace/z.txt'],
    );
  });
});
