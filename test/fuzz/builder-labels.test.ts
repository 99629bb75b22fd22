import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BuilderLabel, readBuilder } from '../../src/builder/builder-image.ts';
import { BuildpackageLabel, readBuildpackageLabels } from '../../src/buildpackage/buildpackage.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { expectCleanError, mutatedJson, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of the labels a builder image or a buildpackage carries: JSON written by
// whoever published the image. Reading them gives typed values or one KilnError line, never a
// TypeError from a null where an object was expected.

const D = `sha256:${'b'.repeat(64)}`;
const builderMetadata = {
  description: 'd',
  stack: { runImage: { image: 'run', mirrors: null } },
  images: [{ image: 'run', mirrors: ['m'] }],
  buildpacks: [{ id: 'a', version: '1', homepage: 'h' }],
  lifecycle: {
    version: '0.20.0',
    apis: { buildpack: { deprecated: [], supported: ['0.10'] }, platform: { supported: ['0.13'] } },
  },
  createdBy: { name: 'Pack CLI', version: '0.36' },
};
const order = [{ group: [{ id: 'a', version: '1', optional: false }] }];
const pkgMetadata = { id: 'a', version: '1', stacks: [{ id: '*' }] };
const layers = { a: { '1': { api: null, stacks: [{ id: '*' }], order, layerDiffID: D, homepage: 'h' } } };

const text = (example: unknown) =>
  fc.oneof(
    { weight: 1, arbitrary: fc.constant(JSON.stringify(example)) },
    { weight: 4, arbitrary: mutatedJson(example) },
    { weight: 1, arbitrary: nastyString(20) },
  );

function image(labels: Record<string, string>) {
  return imageFrom({ config: { architecture: 'amd64', os: 'linux', config: { Labels: labels } } });
}

describe('fuzz: builder and buildpackage labels', () => {
  test('readBuilder: typed values or one KilnError line', async () => {
    await fc.assert(
      fc.asyncProperty(text(builderMetadata), text(order), async (meta, ord) => {
        let info: Awaited<ReturnType<typeof readBuilder>>;
        try {
          info = await readBuilder(
            image({ [BuilderLabel.Metadata]: meta, [BuilderLabel.Order]: ord }),
            'builder b',
          );
        } catch (e) {
          expectCleanError(e, [KilnError], /^builder b: /);
          return;
        }
        for (const r of info.runImages) {
          assert.equal(typeof r.image, 'string');
          for (const m of r.mirrors) assert.equal(typeof m, 'string');
        }
        for (const b of info.buildpacks) assert.ok(typeof b.id === 'string' && typeof b.version === 'string');
        for (const g of info.order) for (const e of g.group) assert.equal(typeof e.id, 'string');
        for (const v of [
          ...info.lifecycle.buildpackApis,
          ...info.lifecycle.platformApis,
          info.lifecycle.version,
          info.description,
        ])
          assert.equal(typeof v, 'string');
      }),
      params(1000),
    );
  });

  test('readBuildpackageLabels: typed values or one KilnError line', async () => {
    await fc.assert(
      fc.asyncProperty(text(pkgMetadata), text(layers), async (meta, ls) => {
        let got: Awaited<ReturnType<typeof readBuildpackageLabels>>;
        try {
          got = await readBuildpackageLabels(
            image({ [BuildpackageLabel.Metadata]: meta, [BuildpackageLabel.Layers]: ls }),
            'package p',
          );
        } catch (e) {
          expectCleanError(e, [KilnError], /^package p: /);
          return;
        }
        assert.ok(typeof got.metadata.id === 'string' && typeof got.metadata.version === 'string');
        for (const versions of Object.values(got.layers))
          for (const e of Object.values(versions)) {
            assert.equal(typeof e.layerDiffID, 'string');
            for (const g of e.order ?? []) for (const x of g.group) assert.equal(typeof x.id, 'string');
          }
      }),
      params(1000),
    );
  });
});

// Shrunk counterexamples, kept as explicit cases.
describe('fuzz regressions: builder and buildpackage labels', () => {
  const refuses = async (p: Promise<unknown>, re: RegExp) =>
    assert.rejects(p, (e: Error) => {
      expectCleanError(e, [KilnError], re);
      return true;
    });
  test('builder metadata of null or with images: 5 is a KilnError (was a TypeError)', async () => {
    await refuses(
      readBuilder(image({ [BuilderLabel.Metadata]: 'null' }), 'b'),
      /^b: label io\.buildpacks\.builder\.metadata: \(document\): /,
    );
    await refuses(readBuilder(image({ [BuilderLabel.Metadata]: '{"images":5}' }), 'b'), /: images: /);
    await refuses(
      readBuilder(
        image({ [BuilderLabel.Metadata]: '{}', [BuilderLabel.Order]: '[{"group":[{"id":7}]}]' }),
        'b',
      ),
      /label io\.buildpacks\.buildpack\.order: \[0\]\.group\[0\]\.id: /,
    );
  });
  test('a pack-written builder label with nulls still reads', async () => {
    const info = await readBuilder(
      image({
        [BuilderLabel.Metadata]: JSON.stringify(builderMetadata),
        [BuilderLabel.Order]: JSON.stringify(order),
      }),
      'b',
    );
    assert.deepEqual(info.runImages, [{ image: 'run', mirrors: ['m'] }]);
  });
  test('buildpackage metadata of null or a layers label of wrong shape is a KilnError (was a TypeError)', async () => {
    await refuses(
      readBuildpackageLabels(
        image({ [BuildpackageLabel.Metadata]: 'null', [BuildpackageLabel.Layers]: '{}' }),
        'p',
      ),
      /has no id and version$/,
    );
    await refuses(
      readBuildpackageLabels(
        image({
          [BuildpackageLabel.Metadata]: '{"id":"a","version":"1"}',
          [BuildpackageLabel.Layers]: '{"a":{"1":null}}',
        }),
        'p',
      ),
      /label io\.buildpacks\.buildpack\.layers: a\.1: /,
    );
  });
});
