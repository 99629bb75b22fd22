import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { launcherAt } from '../../test/helpers/lifecycle.ts';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { writeLayerToml } from '../cnb/layer-toml.ts';
import { emptyLifecycleMetadata } from '../cnb/lifecycle-metadata.ts';
import { writeMetadataToml } from '../cnb/metadata.ts';
import { loggerFrom } from '../internal/log.ts';
import { BlobStore } from '../layout/blob-store.ts';
import { emptyImage } from '../oci/memory.ts';
import { VolumeCache } from './cache.ts';
import { type CacheSaveBase, EarlyCacheWork, saveCache } from './cache-save.ts';
import { exportImage } from './export.ts';
import { LayerResolver } from './layer-resolver.ts';

// The cache phase's work on cache-only layers, started while the exporter runs (creator.ts): the
// same cache as when the cache phase does it all afterwards, each changed layer compressed once,
// nothing committed and nothing left staged when the export fails.

const tempDir = tempDirs('kiln-cache-early-test-');
const GROUP = [{ id: 'test/a', version: '1.0.0' }];

/** A layers dir as bin/build leaves it: a launch+cache, two cache-only and a launch-only layer. */
async function buildOutput(root: string): Promise<{ layersDir: string; app: string; launcher: string }> {
  const layersDir = path.join(root, 'layers');
  const bp = path.join(layersDir, 'test_a');
  const layer = async (
    name: string,
    types: { launch: boolean; build: boolean; cache: boolean },
    n: number,
  ) => {
    await fs.mkdir(path.join(bp, name, 'sub'), { recursive: true });
    for (let i = 0; i < n; i++)
      await fs.writeFile(path.join(bp, name, 'sub', `f${i}`), `${name} ${i}\n`.repeat(i));
    await writeLayerToml(path.join(bp, `${name}.toml`), { n }, types);
  };
  await layer('deps', { launch: true, build: false, cache: true }, 20);
  await layer('gocache', { launch: false, build: false, cache: true }, 300);
  await layer('toolchain', { launch: false, build: true, cache: true }, 50);
  await layer('runtime', { launch: true, build: false, cache: false }, 5);
  await fs.mkdir(path.join(layersDir, 'sbom', 'cache', 'test_a', 'gocache'), { recursive: true });
  await fs.writeFile(path.join(layersDir, 'sbom', 'cache', 'test_a', 'gocache', 'sbom.cdx.json'), '{}');
  await fs.mkdir(path.join(layersDir, 'config'), { recursive: true });
  await writeMetadataToml(path.join(layersDir, 'config', 'metadata.toml'), {
    buildpacks: [{ id: 'test/a', version: '1.0.0', api: '0.12' }],
    processes: [],
    slices: [],
    labels: [],
    bom: [],
  });
  const app = path.join(root, 'app');
  await fs.mkdir(app, { recursive: true });
  await fs.writeFile(path.join(app, 'main'), 'app');
  const launcher = path.join(root, 'launcher');
  await fs.writeFile(launcher, 'L', { mode: 0o755 });
  return { layersDir, app, launcher };
}

/** `root`'s build output, the volume cache at `cacheDir` and what the cache phase starts from. */
async function cacheSaveSetup(root: string, cacheDir: string) {
  const { layersDir, app, launcher } = await buildOutput(root);
  const cache = new VolumeCache(cacheDir);
  const snapshot = await cache.snapshot();
  const resolver = new LayerResolver({
    blobs: new BlobStore(path.join(root, 'store')),
    settings: { epoch: 315532801, compression: 'gzip' },
  });
  const base: CacheSaveBase = {
    layersDir,
    group: GROUP,
    cache,
    snapshot,
    resolver,
    uid: 1000,
    gid: 1000,
    log: loggerFrom({}),
  };
  return { layersDir, app, launcher, snapshot, resolver, base };
}

/** One export + cache save of `root`'s build output into `cacheDir`, with or without early work. */
async function exportAndSave(root: string, cacheDir: string, early: boolean) {
  const { layersDir, app, launcher, snapshot, resolver, base } = await cacheSaveSetup(root, cacheDir);
  const work = early ? new EarlyCacheWork(base) : undefined;
  const ex = await exportImage({
    layersDir,
    appDir: app,
    group: GROUP,
    runImage: emptyImage(),
    runImageRef: 'run',
    previousMetadata: emptyLifecycleMetadata(),
    launcher: launcherAt(launcher),
    platformApi: '0.15',
    uid: 1000,
    gid: 1000,
    resolver,
    log: base.log,
  });
  const result = await saveCache({ ...base, exported: ex.layers, contents: ex.contents }, work);
  await snapshot.close();
  return {
    result,
    stats: resolver.stats,
    state: await fs.readFile(path.join(cacheDir, 'cache.json'), 'utf8'),
  };
}

test('early work on cache-only layers gives the very cache the cache phase alone gives, compressing each once', async () => {
  const d = await tempDir('early-');
  const late = await exportAndSave(path.join(d, 'late'), path.join(d, 'late-cache'), false);
  const early = await exportAndSave(path.join(d, 'early'), path.join(d, 'early-cache'), true);
  assert.equal(early.state, late.state);
  assert.deepEqual(early.result, late.result);
  assert.deepEqual(early.stats, late.stats);
  // deps, runtime, app, launcher, config, process types... + gocache, toolchain, cache SBOM: each once.
  assert.equal(early.result.added, 4, 'deps (the image blob), gocache, toolchain, the cache SBOM layer');
  const state = JSON.parse(early.state) as { layers: Record<string, { mediaType: string }> };
  const types = Object.values(state.layers).map((l) => l.mediaType.split('+').at(-1));
  assert.deepEqual(types.sort(), ['gzip', 'zstd', 'zstd', 'zstd']);
});

test('an export that fails abandons the early work: nothing committed, no staged blob left in the store', async () => {
  const d = await tempDir('abandon-');
  const root = path.join(d, 'b');
  const cacheDir = path.join(d, 'cache');
  const { layersDir, snapshot, resolver, base } = await cacheSaveSetup(root, cacheDir);
  const store = path.join(root, 'store');
  const work = new EarlyCacheWork(base);
  // Let the work produce its blobs before the "export" fails.
  const staged = await work.take(path.join(layersDir, 'test_a', 'gocache'));
  assert.ok(staged && !staged.reused);
  assert.equal(resolver.stats.compressed >= 1, true);
  await work.abandon();
  await snapshot.close();
  const blobs = await fs.readdir(path.join(store, 'blobs', 'sha256')).catch(() => []);
  assert.deepEqual(blobs, [], 'staged cache-only blobs removed');
  await assert.rejects(fs.access(path.join(cacheDir, 'cache.json')), { code: 'ENOENT' });
});
