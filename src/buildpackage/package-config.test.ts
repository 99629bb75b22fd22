import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseBuildpackUri, parsePackageConfig } from './package-config.ts';

describe('package.toml', () => {
  test('uris: directories, file://, .tgz and .cnb files anchored at the file; images as written', () => {
    const c = parsePackageConfig(
      `[buildpack]
uri = "."
[[dependencies]]
uri = "../other"
[[dependencies]]
uri = "file:///abs/bp"
[[dependencies]]
uri = "deps/a.tgz"
[[dependencies]]
uri = "deps/b.cnb"
[[dependencies]]
uri = "docker://registry.example:5000/bp/c:1"
[[dependencies]]
uri = "oci:/layouts/d:v1"
[[dependencies]]
image = "example/e:2"
`,
      '/work/pkg/package.toml',
    );
    assert.deepEqual(c.buildpack, { kind: 'dir', dir: '/work/pkg' });
    assert.deepEqual(c.dependencies, [
      { kind: 'dir', dir: '/work/other' },
      { kind: 'dir', dir: '/abs/bp' },
      { kind: 'tgz', file: '/work/pkg/deps/a.tgz' },
      { kind: 'cnb', file: '/work/pkg/deps/b.cnb' },
      { kind: 'image', ref: 'docker://registry.example:5000/bp/c:1' },
      { kind: 'image', ref: 'oci:/layouts/d:v1' },
      { kind: 'image', ref: 'example/e:2' },
    ]);
    assert.equal(c.os, 'linux');
  });

  test('errors name the file and the key', () => {
    const bad: [string, RegExp][] = [
      ['', /p\.toml: buildpack: /],
      ['[buildpack]\nuri = ""\n', /p\.toml: buildpack\.uri: must not be empty/],
      ['[buildpack]\nuri = 3\n', /p\.toml: buildpack\.uri: /],
      [
        '[buildpack]\nuri = "."\n[[dependencies]]\n',
        /p\.toml: dependencies\[0\]: exactly one of uri or image/,
      ],
      ['[buildpack]\nuri = "."\n[platform]\nos = "windows"\n', /p\.toml: platform\.os: only "linux"/],
      [
        '[buildpack]\nuri = "https://example.com/bp.tgz"\n',
        /p\.toml: buildpack\.uri: "https:\/\/example\.com\/bp\.tgz": expected a directory/,
      ],
      [
        '[buildpack]\nuri = "."\n[[dependencies]]\nuri = "urn:cnb:registry:x/y"\n',
        /p\.toml: dependencies\[0\]\.uri: .*urns are not supported/,
      ],
    ];
    for (const [text, re] of bad) assert.throws(() => parsePackageConfig(text, 'p.toml'), re, text);
  });

  test('parseBuildpackUri keeps tar.gz as tgz', () => {
    assert.deepEqual(parseBuildpackUri('x.tar.gz', '/b', 'k'), { kind: 'tgz', file: '/b/x.tar.gz' });
  });
});
