import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  emptyLifecycleMetadata,
  layerMetadataFor,
  parseBuildMetadata,
  parseCacheMetadata,
  parseLifecycleMetadata,
  stringifyLabel,
} from './lifecycle-metadata.ts';

// A label as the reference lifecycle writes it (shape from an image built by pack).
const REFERENCE_LABEL = JSON.stringify({
  app: [{ sha: 'sha256:aa' }],
  config: { sha: 'sha256:cc' },
  launcher: { sha: 'sha256:ll' },
  'process-types': { sha: 'sha256:pp' },
  buildpacks: [
    {
      key: 'samples/hello',
      version: '0.0.1',
      layers: {
        deps: { sha: 'sha256:dd', data: { lock: 'abc' }, build: false, launch: true, cache: true },
      },
      store: { metadata: { counter: 3 } },
    },
  ],
  runImage: { topLayer: 'sha256:tt', reference: 'run@sha256:rr', image: 'run', mirrors: ['m/run'] },
  stack: { runImage: { image: 'run' } },
  somethingNew: { kept: true },
});

describe('parseLifecycleMetadata()', () => {
  test('reads the reference lifecycle keys and keeps unknown ones', () => {
    const md = parseLifecycleMetadata(REFERENCE_LABEL);
    assert.equal(md.app[0]?.sha, 'sha256:aa');
    assert.equal(md['process-types'].sha, 'sha256:pp');
    assert.equal(md.runImage.topLayer, 'sha256:tt');
    assert.deepEqual(layerMetadataFor(md, 'samples/hello', 'deps')?.data, { lock: 'abc' });
    assert.equal(layerMetadataFor(md, 'samples/hello', 'missing'), undefined);
    assert.deepEqual((md as Record<string, unknown>).somethingNew, { kept: true });
    assert.deepEqual(JSON.parse(stringifyLabel(md)).somethingNew, { kept: true });
  });

  test('accepts the old single-object app form', () => {
    assert.deepEqual(parseLifecycleMetadata('{"app":{"sha":"sha256:x"}}').app, [{ sha: 'sha256:x' }]);
  });

  test('rejects non-JSON and wrong types with the label name and field', () => {
    assert.throws(() => parseLifecycleMetadata('{'), /io\.buildpacks\.lifecycle\.metadata label: not JSON/);
    assert.throws(
      () => parseLifecycleMetadata('{"buildpacks":[{"version":"1"}]}'),
      /field "buildpacks.0.key"/,
    );
  });

  test('empty metadata has empty shas', () => {
    const md = emptyLifecycleMetadata();
    assert.deepEqual(md.app, []);
    assert.equal(md.config.sha, '');
    assert.deepEqual(md.buildpacks, []);
  });
});

describe('stringifyLabel()', () => {
  test('is independent of key insertion order and drops undefined', () => {
    assert.equal(
      stringifyLabel({ b: 1, a: { d: undefined, c: [2, { z: 1, y: 2 }] } }),
      '{"a":{"c":[2,{"y":2,"z":1}]},"b":1}',
    );
  });
});

describe('parseBuildMetadata() and parseCacheMetadata()', () => {
  test('read processes and cache buildpacks', () => {
    const bm = parseBuildMetadata(
      '{"buildpacks":[{"id":"a","version":"1"}],"processes":[{"type":"web","command":["node"],"args":["x"],"buildpackID":"a"}]}',
    );
    assert.equal(bm.processes?.[0]?.type, 'web');
    const cm = parseCacheMetadata(
      '{"buildpacks":[{"key":"a","version":"1","layers":{"l":{"sha":"s","cache":true}}}]}',
    );
    assert.equal(layerMetadataFor(cm, 'a', 'l')?.cache, true);
  });
});
