import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { readDockerArchive } from '../../src/archive/docker-archive.ts';
import { bytesEntry, writeTarFile } from '../../src/archive/tar-file.ts';
import { readOciArchive } from '../../src/buildpackage/oci-archive.ts';
import { LIFECYCLE_METADATA_LABEL } from '../../src/cnb/lifecycle-metadata.ts';
import { inspectImage } from '../../src/inspect/inspect.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { TarFormatError } from '../../src/layers/tar-reader.ts';
import { type TarEntry, tarChunks } from '../../src/layers/tar-writer.ts';
import { sha256 } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { bytesLayer, imageFrom } from '../../src/oci/memory.ts';
import { mutatedJson, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of image archives kiln opens: a `.cnb` buildpackage (an OCI layout tar,
// downloaded from anywhere) and a `docker save` tarball. Whatever index.json, manifest.json,
// manifest and config say, opening the image and reading its manifest, config and layer list
// gives values or one clean error line, never a TypeError from a missing field or a RangeError.

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-img-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A clean refusal: kiln's error types, a schema TypeError, or a plain Error of these modules. */
function expectRefusal(err: unknown): void {
  const e = err as Error;
  const ok =
    err instanceof KilnError ||
    err instanceof TarFormatError ||
    (err instanceof TypeError && /^invalid /.test(e.message)) ||
    (err instanceof Error && err.constructor === Error);
  if (!ok)
    throw new Error(`crashed instead of refusing the archive: ${e?.name}: ${e?.message}`, { cause: err });
  if (/[\n\r]/.test(e.message))
    throw new Error(`error message is not one line: ${JSON.stringify(e.message)}`);
}

async function readAll(image: Image): Promise<void> {
  await image.manifest();
  await image.digest();
  await image.configFile();
  for (const l of await image.layers()) {
    await l.digest();
    await l.diffID();
    await l.size();
  }
}

const layerTar = Buffer.alloc(1024);
const layerDigest = sha256(layerTar);
const config = {
  architecture: 'amd64',
  os: 'linux',
  config: { Labels: { 'io.buildpacks.buildpackage.metadata': '{}' } },
  rootfs: { type: 'layers', diff_ids: [layerDigest] },
};

describe('fuzz: .cnb (OCI layout tar)', () => {
  const hex = (d: string) => d.slice('sha256:'.length);
  test('an image or one clean error, whatever index.json, manifest and config hold', async () => {
    const configText = fc.oneof(
      { weight: 1, arbitrary: fc.constant(JSON.stringify(config)) },
      { weight: 2, arbitrary: mutatedJson(config) },
    );
    const input = configText.chain((cfg) => {
      const manifest = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: sha256(Buffer.from(cfg)),
          size: Buffer.byteLength(cfg),
        },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layerTar.length },
        ],
      };
      return fc
        .oneof(
          { weight: 1, arbitrary: fc.constant(JSON.stringify(manifest)) },
          { weight: 2, arbitrary: mutatedJson(manifest) },
        )
        .chain((man) => {
          const index = {
            schemaVersion: 2,
            manifests: [
              {
                mediaType: 'application/vnd.oci.image.manifest.v1+json',
                digest: sha256(Buffer.from(man)),
                size: Buffer.byteLength(man),
                annotations: { 'org.opencontainers.image.ref.name': 'latest' },
              },
            ],
          };
          return fc.record({
            cfg: fc.constant(cfg),
            man: fc.constant(man),
            idx: fc.oneof(
              { weight: 1, arbitrary: fc.constant(JSON.stringify(index)) },
              { weight: 2, arbitrary: mutatedJson(index) },
            ),
            layout: fc.constantFrom('{"imageLayoutVersion":"1.0.0"}', '', 'x'),
            tag: fc.option(fc.constantFrom('latest', 'x'), { freq: 2 }),
          });
        });
    });
    await fc.assert(
      fc.asyncProperty(input, async ({ cfg, man, idx, layout, tag }) => {
        const file = path.join(tmp, 'x.cnb');
        const entries: TarEntry[] = [
          bytesEntry('oci-layout', Buffer.from(layout)),
          bytesEntry('index.json', Buffer.from(idx)),
          bytesEntry(`blobs/sha256/${hex(sha256(Buffer.from(man)))}`, Buffer.from(man)),
          bytesEntry(`blobs/sha256/${hex(sha256(Buffer.from(cfg)))}`, Buffer.from(cfg)),
          bytesEntry(`blobs/sha256/${hex(layerDigest)}`, layerTar),
        ];
        await writeTarFile(file, entries);
        try {
          await readAll(await readOciArchive(file, tag === null ? {} : { tag }));
        } catch (e) {
          expectRefusal(e);
        }
      }),
      params(200),
    );
  });
});

describe('fuzz: docker-archive', () => {
  test('an image or one clean error, whatever manifest.json and the config hold', async () => {
    const entry = { Config: 'config.json', RepoTags: ['app:latest'], Layers: ['layer.tar'] };
    const input = fc.record({
      manifests: fc.oneof(
        { weight: 1, arbitrary: fc.constant(JSON.stringify([entry])) },
        { weight: 3, arbitrary: mutatedJson([entry]) },
      ),
      cfg: fc.oneof(
        { weight: 1, arbitrary: fc.constant(JSON.stringify(config)) },
        { weight: 2, arbitrary: mutatedJson(config) },
      ),
      tag: fc.option(fc.oneof(fc.constantFrom('app:latest', 'latest'), nastyString(8)), { freq: 2 }),
    });
    await fc.assert(
      fc.asyncProperty(input, async ({ manifests, cfg, tag }) => {
        const file = path.join(tmp, 'x.tar');
        await writeTarFile(file, [
          bytesEntry('manifest.json', Buffer.from(manifests)),
          bytesEntry('config.json', Buffer.from(cfg)),
          bytesEntry('layer.tar', layerTar),
        ]);
        try {
          await readAll(await readDockerArchive(file, tag === null ? {} : { tag }));
        } catch (e) {
          expectRefusal(e);
        }
      }),
      params(200),
    );
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: image archives', () => {
  test('a docker-archive layer name with a newline stays on one line', async () => {
    const file = path.join(tmp, 'nl.tar');
    await writeTarFile(file, [
      bytesEntry('manifest.json', Buffer.from(JSON.stringify([{ Config: 'config.json', Layers: ['a\nb'] }]))),
      bytesEntry('config.json', Buffer.from(JSON.stringify(config))),
    ]);
    await assert.rejects(readDockerArchive(file), (e: Error) => {
      expectRefusal(e);
      assert.match(e.message, /layer "a\\nb" is missing$/);
      return true;
    });
  });
});

describe('regressions: SBOM files in an image are bounded', () => {
  test('a gzip bomb in the SBOM layer is not expanded past the SBOM size limit (inspect)', async () => {
    // 65 MiB of JSON in 64 KiB of gzip: valid once expanded, so only the bound tells them apart.
    const big = Buffer.alloc(65 << 20, 0x61);
    big.write('{"a":"', 0);
    big.write('"}', big.length - 2);
    const bomb = gzipSync(big, { level: 1 });
    const chunks: Buffer[] = [];
    for await (const c of tarChunks([
      {
        path: 'layers/sbom/launch/a/sbom.cdx.json',
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: bomb.length,
        read: async () => bomb,
      },
    ]))
      chunks.push(c);
    const tar = Buffer.concat(chunks);
    const layer = bytesLayer({ blob: tar, tar, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
    const image = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: { Labels: { [LIFECYCLE_METADATA_LABEL]: JSON.stringify({ sbom: { sha: sha256(tar) } }) } },
      },
      layers: [layer],
    });
    const r = await inspectImage(image, { reference: 'bomb' });
    assert.equal(r.sbom?.files[0]?.format, 'other');
  });
});
