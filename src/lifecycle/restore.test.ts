import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { launcherAt } from '../../test/helpers/lifecycle.ts';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { readLayerToml, writeLayerToml } from '../cnb/layer-toml.ts';
import {
  emptyLifecycleMetadata,
  type LifecycleMetadata,
  parseLifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { writeMetadataToml } from '../cnb/metadata.ts';
import { loggerFrom } from '../internal/log.ts';
import { BlobStore } from '../layout/blob-store.ts';
import type { Image, Layer } from '../oci/image.ts';
import { emptyImage } from '../oci/memory.ts';
import { type CachedLayer, VolumeCache } from './cache.ts';
import { saveCache } from './cache-save.ts';
import { exportImage } from './export.ts';
import { LayerResolver } from './layer-resolver.ts';
import { restore } from './restore.ts';

const tempDir = tempDirs('kiln-restore-test-');

const EPOCH = 315532801;

const GROUP = [{ id: 'test/a', version: '1.0.0' }];

/** What bin/build of a buildpack with three kinds of layer would leave behind. */
async function build(root: string, layersDir: string, restoredOk: boolean) {
  const bp = path.join(layersDir, 'test_a');
  await fs.mkdir(bp, { recursive: true });
  const mk = async (
    name: string,
    types: { launch: boolean; build: boolean; cache: boolean },
    body: string,
  ) => {
    // A real buildpack keeps a restored layer whose metadata says it is current.
    if (!restoredOk || !(await fs.stat(path.join(bp, name)).catch(() => undefined))) {
      await fs.mkdir(path.join(bp, name), { recursive: true });
      await fs.writeFile(path.join(bp, name, 'data'), body);
    }
    await writeLayerToml(path.join(bp, `${name}.toml`), { v: body }, types);
  };
  await mk('deps', { launch: true, build: false, cache: true }, 'deps-1');
  await mk('npmcache', { launch: false, build: false, cache: true }, 'cache-1');
  await mk('runtime', { launch: true, build: false, cache: false }, 'runtime-1');
  // Layer SBOMs as the build phase leaves them (restore hands them back as <layer>.sbom.<fmt>.json).
  const sbom = async (rel: string, body: string) => {
    await fs.mkdir(path.join(layersDir, 'sbom', path.dirname(rel)), { recursive: true });
    await fs.writeFile(path.join(layersDir, 'sbom', rel), body);
  };
  await sbom('launch/test_a/deps/sbom.cdx.json', '{"of":"deps"}');
  await sbom('launch/test_a/runtime/sbom.spdx.json', '{"of":"runtime"}');
  await sbom('launch/test_a/runtime/not-an-sbom.json', '{}');
  await sbom('cache/test_a/npmcache/sbom.syft.json', '{"of":"npmcache"}');
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
  return { app, launcher };
}

function reuseOf(
  blobs: BlobStore,
  previous: Map<string, Layer>,
  fingerprints: Map<string, CachedLayer>,
): LayerResolver {
  return new LayerResolver({
    blobs,
    settings: { epoch: EPOCH, compression: 'gzip' },
    previous,
    fingerprints,
  });
}

async function oneBuild(
  d: string,
  n: number,
  cache: VolumeCache,
  blobs: BlobStore,
  prev?: { image: Image; md: LifecycleMetadata },
) {
  const root = path.join(d, `build${n}`);
  const layersDir = path.join(root, 'layers');
  await fs.mkdir(layersDir, { recursive: true });
  const snapshot = await cache.snapshot();
  const fingerprints = new Map(Object.entries(snapshot.fingerprints));
  const previousMetadata = prev?.md ?? emptyLifecycleMetadata();
  const previous = new Map<string, Layer>();
  for (const l of (await prev?.image.layers()) ?? []) previous.set(await l.diffID(), l);
  const reuse = reuseOf(blobs, previous, fingerprints);
  const log = loggerFrom({});
  const rr = await restore({
    layersDir,
    group: GROUP,
    previousMetadata,
    cache: snapshot,
    uid: 1000,
    gid: 1000,
    resolver: reuse,
    previousLayers: previous,
    log,
  });
  const sboms: Record<string, string> = {};
  for (const f of (await fs.readdir(path.join(layersDir, 'test_a')).catch(() => [])).sort())
    if (f.includes('.sbom.')) sboms[f] = await fs.readFile(path.join(layersDir, 'test_a', f), 'utf8');
  const restoredToml = await fs.readFile(path.join(layersDir, 'test_a', 'deps.toml'), 'utf8').catch(() => '');
  const { app, launcher } = await build(root, layersDir, true);
  const ex = await exportImage({
    layersDir,
    appDir: app,
    group: GROUP,
    runImage: emptyImage(),
    runImageRef: 'run',
    previousMetadata,
    launcher: launcherAt(launcher),
    platformApi: '0.15',
    uid: 1000,
    gid: 1000,
    resolver: reuse,
    log,
  });
  const cr = await saveCache({
    layersDir,
    group: GROUP,
    cache,
    snapshot,
    resolver: reuse,
    exported: ex.layers,
    uid: 1000,
    gid: 1000,
    log,
  });
  await snapshot.close();
  const md = parseLifecycleMetadata(
    (await ex.image.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
  );
  return { rr, ex, cr, md, stats: reuse.stats, layersDir, restoredToml, sboms };
}

test('restore() brings back cache layers and launch metadata; a rebuild then compresses nothing', async () => {
  const d = await tempDir('kiln-restore-test-');
  const cache = new VolumeCache(path.join(d, 'cache'));
  const blobs = new BlobStore(path.join(d, 'store'));
  const b1 = await oneBuild(d, 1, cache, blobs);
  assert.deepEqual(b1.rr, { restored: [], metadataOnly: [] });
  assert.deepEqual(b1.sboms, {});
  assert.equal(b1.cr.added, 3, 'deps (linked from the image blob), npmcache and the cache SBOM layer');
  assert.equal(
    b1.stats.compressed,
    6 + 2,
    'deps, runtime, sbom, app, launcher, config + npmcache, cache sbom',
  );

  const b2 = await oneBuild(d, 2, cache, blobs, { image: b1.ex.image, md: b1.md });
  assert.deepEqual(b2.rr.restored.sort(), ['test/a:deps', 'test/a:npmcache']);
  assert.deepEqual(b2.rr.metadataOnly, ['test/a:runtime']);
  // SBOM files of what came back, from the image's launch SBOM layer and the cache's SBOM layer.
  assert.deepEqual(b2.sboms, {
    'deps.sbom.cdx.json': '{"of":"deps"}',
    'npmcache.sbom.syft.json': '{"of":"npmcache"}',
    'runtime.sbom.spdx.json': '{"of":"runtime"}',
  });
  // Restored files are back, restored tomls have no [types].
  assert.equal(await fs.readFile(path.join(b2.layersDir, 'test_a', 'npmcache', 'data'), 'utf8'), 'cache-1');
  assert.match(b2.restoredToml, /deps-1/);
  assert.doesNotMatch(b2.restoredToml, /types/);
  assert.deepEqual((await readLayerToml(path.join(b2.layersDir, 'test_a', 'deps.toml'))).metadata, {
    v: 'deps-1',
  });
  assert.equal(await b2.ex.image.digest(), await b1.ex.image.digest());
  assert.equal(b2.stats.compressed, 0, 'no layer compressed on a no-op rebuild');
  assert.deepEqual({ added: b2.cr.added, pruned: b2.cr.pruned }, { added: 0, pruned: 0 });
});

test('restore() without a cache follows the spec matrix: store.toml and launch-only metadata come back, nothing else', async () => {
  const d = await tempDir('kiln-restore-matrix-');
  const layersDir = path.join(d, 'layers');
  await fs.mkdir(layersDir);
  const sha = (n: string) => `sha256:${n.repeat(64)}`;
  const previousMetadata = parseLifecycleMetadata(
    JSON.stringify({
      buildpacks: [
        {
          key: 'test/a',
          version: '1.0.0',
          store: { metadata: { visits: 3 } },
          layers: {
            // launch only: metadata restored (from the image label), contents not
            runtime: { sha: sha('1'), data: { v: 'r' }, launch: true },
            // build + launch, no cache: neither
            tools: { sha: sha('2'), data: { v: 't' }, launch: true, build: true },
            // launch + cache, but there is no cache: neither
            deps: { sha: sha('3'), data: { v: 'd' }, launch: true, cache: true },
          },
        },
      ],
    }),
  );
  const rr = await restore({
    layersDir,
    group: GROUP,
    previousMetadata,
    uid: 1000,
    gid: 1000,
    resolver: new LayerResolver({
      blobs: new BlobStore(path.join(d, 'blobs')),
      settings: { epoch: EPOCH, compression: 'gzip' },
    }),
    log: loggerFrom({}),
  });
  assert.deepEqual(rr, { restored: [], metadataOnly: ['test/a:runtime'] });
  const bp = path.join(layersDir, 'test_a');
  assert.deepEqual((await fs.readdir(bp)).sort(), ['runtime.toml', 'store.toml']);
  assert.match(await fs.readFile(path.join(bp, 'store.toml'), 'utf8'), /visits = 3/);
  const runtime = await fs.readFile(path.join(bp, 'runtime.toml'), 'utf8');
  assert.match(runtime, /v = "r"/);
  assert.doesNotMatch(runtime, /types|launch/);
});
