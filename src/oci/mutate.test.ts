import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { sha256 } from './digest.ts';
import { MediaType } from './media-types.ts';
import { bytesLayer, emptyImage, imageFrom } from './memory.ts';
import { appendLayers, setConfig, setManifestAnnotations, withLayerAnnotations } from './mutate.ts';
import { validateImage } from './validate.ts';

function layer(text: string) {
  const tar = Buffer.from(text.padEnd(1024, '\0'));
  return bytesLayer({ tar, blob: zlib.gzipSync(tar), mediaType: MediaType.OciLayerGzip });
}

describe('mutate', () => {
  test('emptyImage() is a valid OCI image with no layers', async () => {
    const img = emptyImage();
    await validateImage(img);
    const m = await img.manifest();
    assert.equal(m.mediaType, MediaType.OciManifest);
    assert.equal(m.config.mediaType, MediaType.OciConfig);
    assert.deepEqual((await img.configFile()).rootfs, { type: 'layers', diff_ids: [] });
  });

  test('appendLayers() adds layers, diff_ids and history without touching the base', async () => {
    const base = setConfig(emptyImage(), { created: '1980-01-01T00:00:01Z', history: [] });
    const baseDigest = await base.digest();
    const l1 = layer('one');
    const l2 = withLayerAnnotations(layer('two'), { 'org.example/x': 'y' });
    const img = appendLayers(base, l1, { layer: l2, history: { created_by: 'kiln test' } });
    await validateImage(img);
    assert.equal(await base.digest(), baseDigest);
    assert.equal((await base.layers()).length, 0);
    const m = await img.manifest();
    assert.deepEqual(
      m.layers.map((d) => d.digest),
      [await l1.digest(), await l2.digest()],
    );
    assert.deepEqual(m.layers[1]!.annotations, { 'org.example/x': 'y' });
    const cfg = await img.configFile();
    assert.deepEqual(cfg.rootfs.diff_ids, [await l1.diffID(), await l2.diffID()]);
    assert.deepEqual(cfg.history, [{ created: '1980-01-01T00:00:01Z' }, { created_by: 'kiln test' }]);
    assert.equal(await img.digest(), sha256(await img.rawManifest()));
  });

  test('setConfig() replaces fields and keeps diff_ids; setManifestAnnotations() merges and deletes', async () => {
    const base = appendLayers(emptyImage(), layer('a'));
    const img = setConfig(base, {
      env: ['A=1'],
      entrypoint: ['/cnb/lifecycle/launcher'],
      cmd: null,
      user: '1000:1000',
      workingDir: '/workspace',
      labels: { 'io.buildpacks.x': '1' },
      created: '1980-01-01T00:00:01Z',
    });
    await validateImage(img);
    const c = await img.configFile();
    assert.deepEqual(c.config, {
      Env: ['A=1'],
      Entrypoint: ['/cnb/lifecycle/launcher'],
      Cmd: null,
      User: '1000:1000',
      WorkingDir: '/workspace',
      Labels: { 'io.buildpacks.x': '1' },
    });
    assert.deepEqual(c.rootfs, (await base.configFile()).rootfs);
    assert.deepEqual((await base.configFile()).config, {});
    const fn = setConfig(img, (cfg) => ({ ...cfg, rootfs: { type: 'layers', diff_ids: [] } }));
    assert.equal(
      (await fn.configFile()).rootfs.diff_ids.length,
      1,
      'function updates cannot change diff_ids',
    );
    const a1 = setManifestAnnotations(img, { a: '1', b: '2' });
    const a2 = setManifestAnnotations(a1, { a: null, c: '3' });
    assert.deepEqual((await a2.manifest()).annotations, { b: '2', c: '3' });
    assert.equal((await img.manifest()).annotations, undefined);
    await validateImage(a2);
  });

  test('imageFrom() in docker format uses Docker media types; validateImage() catches a lying layer', async () => {
    const l = layer('x');
    const img = imageFrom({ config: { architecture: 'arm64', os: 'linux' }, layers: [l], format: 'docker' });
    await validateImage(img);
    assert.equal((await img.manifest()).config.mediaType, MediaType.DockerConfig);
    const liar = { ...l, diffID: async () => sha256('nope') };
    await assert.rejects(
      validateImage(imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [liar] })),
      /decompressed bytes hash to sha256:[0-9a-f]+, config says sha256:/,
    );
  });
});
