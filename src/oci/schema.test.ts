import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sha256 } from './digest.ts';
import { once } from './lazy.ts';
import { compressionOf, isIndexMediaType, MediaType } from './media-types.ts';
import { ConfigFileSchema, IndexSchema, ManifestSchema, parseJson } from './schema.ts';

const d = (s: string) => sha256(s);

describe('parseJson', () => {
  test('accepts OCI and Docker schema 2 manifests, keeping unknown fields', () => {
    for (const [mt, layerMt] of [
      [MediaType.OciManifest, MediaType.OciLayerZstd],
      [MediaType.DockerManifest, MediaType.DockerLayerGzip],
    ] as const) {
      const doc = {
        schemaVersion: 2,
        mediaType: mt,
        config: { mediaType: MediaType.OciConfig, digest: d('c'), size: 2 },
        layers: [{ mediaType: layerMt, digest: d('l'), size: 3 }],
        'x-extra': 'kept',
      };
      const m = parseJson(ManifestSchema, JSON.stringify(doc), 'manifest');
      assert.deepEqual(m, doc);
    }
    assert.equal(compressionOf(MediaType.DockerLayerGzip), 'gzip');
    assert.equal(compressionOf(MediaType.OciLayerZstd), 'zstd');
    assert.ok(isIndexMediaType(MediaType.DockerManifestList) && isIndexMediaType(MediaType.OciIndex));
  });

  test('errors are one line naming the document and the offending field', () => {
    const manifest = {
      schemaVersion: 2,
      config: { mediaType: MediaType.OciConfig, digest: d('c'), size: 2 },
      layers: [
        { mediaType: MediaType.OciLayerGzip, digest: d('a'), size: 1 },
        { mediaType: MediaType.OciLayerGzip, digest: 'sha256:short', size: 1 },
      ],
    };
    assert.throws(
      () => parseJson(ManifestSchema, JSON.stringify(manifest), 'manifest of x'),
      /^TypeError: invalid manifest of x: field "layers\.1\.digest": expected sha256:<64 hex>$/,
    );
    const badSize = {
      ...manifest,
      layers: [{ mediaType: MediaType.OciLayerGzip, digest: d('a'), size: -1 }],
    };
    assert.throws(
      () => parseJson(ManifestSchema, JSON.stringify(badSize), 'manifest'),
      /field "layers\.0\.size"/,
    );
    assert.throws(
      () => parseJson(IndexSchema, '{"schemaVersion":1,"manifests":[]}', 'index'),
      /invalid index: field "schemaVersion"/,
    );
    assert.throws(
      () => parseJson(ConfigFileSchema, '{"architecture":"amd64","os":"linux"}', 'config'),
      /invalid config: field "rootfs"/,
    );
    assert.throws(
      () =>
        parseJson(
          ConfigFileSchema,
          '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[1]}}',
          'config',
        ),
      /field "rootfs\.diff_ids\.0"/,
    );
    assert.throws(
      () => parseJson(ManifestSchema, '{"schemaVersion":2', 'manifest'),
      /invalid manifest: not JSON/,
    );
  });
});

describe('once', () => {
  test('computes once, shares the result, and forgets a failure so a later call retries', async () => {
    let calls = 0;
    const get = once(async () => ++calls);
    assert.deepEqual(await Promise.all([get(), get(), get()]), [1, 1, 1]);
    assert.equal(calls, 1);

    let attempts = 0;
    const flaky = once(async () => {
      attempts++;
      if (attempts === 1) throw new Error('transient');
      return 'ok';
    });
    await assert.rejects(flaky(), /transient/);
    assert.equal(await flaky(), 'ok');
    assert.equal(await flaky(), 'ok');
    assert.equal(attempts, 2);
  });
});
