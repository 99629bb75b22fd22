import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConfigFile } from '../oci/schema.ts';
import { buildImageOf, reportedDependencies } from './dependencies.ts';

const doc = (components: unknown) =>
  new TextEncoder().encode(JSON.stringify({ bomFormat: 'CycloneDX', components }));

test('reportedDependencies: packages with digests from buildpack SBOMs, once each; nothing from broken or hostile documents', () => {
  const node = {
    name: 'node',
    purl: 'pkg:generic/node@22.23.5',
    hashes: [
      { alg: 'SHA-512', content: 'ab'.repeat(64) },
      { alg: 'MD5', content: '00' },
    ],
  };
  const deps = reportedDependencies([
    doc([
      node,
      { name: 'no-hash', purl: 'pkg:npm/x@1' },
      { name: 'bad', hashes: [{ alg: 'SHA-256', content: 'NOT HEX' }] },
    ]),
    doc([node, { name: 'hello', hashes: [{ alg: 'SHA-256', content: 'cd'.repeat(32) }] }]),
    new TextEncoder().encode('{not json'),
    doc('not a list'),
    doc([null, 7, { name: 'n', hashes: [null, 'x'] }]),
  ]);
  assert.deepEqual(deps, [
    { name: 'package:node', uri: 'pkg:generic/node@22.23.5', digest: { sha512: 'ab'.repeat(64) } },
    { name: 'package:hello', digest: { sha256: 'cd'.repeat(32) } },
  ]);
});

test('reportedDependencies: Debian packages buildpacks installed, pinned by the version in their purl', () => {
  const purl = 'pkg:deb/debian/libpq5@15.8-0%2Bdeb12u1?arch=amd64&distro=debian-12';
  const deps = reportedDependencies([
    doc([
      { name: 'libpq5', version: '15.8-0+deb12u1', purl },
      { name: 'libpq5', version: '15.8-0+deb12u1', purl },
      { name: 'noversion', purl: 'pkg:deb/debian/noversion?arch=amd64' },
      { name: 'spaced', purl: 'pkg:deb/debian/x@1 2' },
      {
        name: 'zlib1g',
        purl: 'pkg:deb/debian/zlib1g@1.2.13',
        hashes: [{ alg: 'SHA-256', content: 'ef'.repeat(32) }],
      },
    ]),
  ]);
  assert.deepEqual(deps, [
    { name: 'package:libpq5', uri: purl },
    { name: 'package:zlib1g', uri: 'pkg:deb/debian/zlib1g@1.2.13', digest: { sha256: 'ef'.repeat(32) } },
  ]);
});

const d = (c: string) => `sha256:${c.repeat(64)}`;
const builderConfig = (labels: Record<string, string>, diffIds: string[]): ConfigFile =>
  ({
    architecture: 'amd64',
    os: 'linux',
    config: { Labels: labels },
    rootfs: { type: 'layers', diff_ids: diffIds },
  }) as ConfigFile;

test('buildImageOf: a kiln-made builder names its build image (name, digest, top layer); other builders none', () => {
  const labels = {
    'io.buildpacks.builder.metadata': JSON.stringify({ createdBy: { name: 'kiln', version: '1' } }),
    'io.buildpacks.buildpack.layers': JSON.stringify({
      'a/one': { '1': { layerDiffID: d('1') } },
      'a/two': { '2': { layerDiffID: d('2') } },
    }),
    'io.buildpacks.extension.layers': JSON.stringify({ 'x/ext': { '1': { layerDiffID: d('3') } } }),
    'org.opencontainers.image.base.digest': d('b'),
    'org.opencontainers.image.base.name': 'kiln/build:bookworm',
  };
  // build image layers a, c; then two buildpacks, one extension, the config layer.
  const layers = [d('a'), d('c'), d('1'), d('2'), d('3'), d('4')];
  assert.deepEqual(buildImageOf(builderConfig(labels, layers)), {
    name: 'build-image',
    uri: `docker://kiln/build:bookworm@${d('b')}`,
    digest: { sha256: 'b'.repeat(64) },
    annotations: { topLayer: d('c') },
  });
  const { 'org.opencontainers.image.base.name': _n, ...noName } = labels;
  assert.deepEqual(buildImageOf(builderConfig(noName, layers))?.uri, undefined);
  const pack = {
    ...labels,
    'io.buildpacks.builder.metadata': JSON.stringify({ createdBy: { name: 'Pack CLI' } }),
  };
  assert.equal(
    buildImageOf(builderConfig(pack, layers)),
    undefined,
    'the base labels of a foreign builder may be its build image’s own',
  );
  const badDigest = { ...labels, 'org.opencontainers.image.base.digest': 'sha256:nothex' };
  assert.equal(buildImageOf(builderConfig(badDigest, layers)), undefined);
  assert.equal(
    buildImageOf(builderConfig({ ...labels, 'io.buildpacks.builder.metadata': '{' }, layers)),
    undefined,
  );
});
