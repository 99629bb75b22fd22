import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reportedDependencies } from './dependencies.ts';

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
