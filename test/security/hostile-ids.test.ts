// Hostile buildpack ids and versions. Both name directories on the host (`/cnb/buildpacks/<id>/
// <version>` in kiln's private copy of a builder's buildpacks, `<layers>/<id>`), so a version of
// `../../..` or an id of `.` would make kiln, as root, remove, copy or read outside its work
// directory. Each is refused where it is parsed, with one line naming the field and what was
// expected, and nothing outside is touched.

import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractBuildpackage } from '../../src/buildpackage/buildpackage.ts';
import { readBuildpackToml } from '../../src/cnb/buildpack-toml.ts';
import { readOrderToml } from '../../src/cnb/order-toml.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';
import { fileEntry } from '../helpers/tar-entries.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

describe('hostile buildpack ids and versions', { skip: !asRoot && 'needs root' }, () => {
  let e: E2E;
  let victim: string;
  let n = 0;
  before(async () => {
    e = await makeE2E();
    victim = path.join(e.root, 'victim');
    await mkdir(victim);
    await writeFile(path.join(victim, 'precious'), 'p');
  });
  after(async () => {
    await e?.cleanup();
  });

  async function buildpack(id: string, version: string): Promise<string> {
    const d = path.join(e.root, 'bps', String(n++));
    await mkdir(path.join(d, 'bin'), { recursive: true });
    await writeFile(
      path.join(d, 'buildpack.toml'),
      `api = "0.12"\n[buildpack]\nid = ${JSON.stringify(id)}\nversion = ${JSON.stringify(version)}\n`,
    );
    for (const b of ['detect', 'build']) {
      await writeFile(path.join(d, 'bin', b), '#!/bin/sh\nexit 0\n');
      await chmod(path.join(d, 'bin', b), 0o755);
    }
    return d;
  }

  async function refused(p: Promise<unknown>, expected: RegExp): Promise<string> {
    const err = await p.then(
      () => assert.fail('expected a refusal'),
      (x: unknown) => x,
    );
    assert.ok(err instanceof KilnError, String(err));
    assert.match(err.message, expected);
    assert.doesNotMatch(err.message, /[\n\x1b]/);
    assert.deepEqual(await readdir(victim), ['precious'], 'nothing outside was touched');
    return err.message;
  }

  test('--buildpack DIR whose version climbs to a host directory is refused before any copy', async () => {
    const d = await buildpack('hostile/version', `../../../../../../../../../../..${victim}`);
    const app = await e.app(`ids-${n}`, 'hi');
    await refused(
      e.build(app, `hostile/ids-${n++}`, { buildpacks: [d] }),
      /buildpack\.toml: buildpack\.version: expected no "\/", "\\" or control characters, and not "\." or "\.\."$/,
    );
  });

  for (const id of ['.', '..']) {
    test(`a buildpack id of "${id}" (its layers directory would be <layers>/${id}) is refused`, async () => {
      const d = await buildpack(id, '1.0.0');
      await refused(
        readBuildpackToml(path.join(d, 'buildpack.toml')),
        /buildpack\.id: expected letters, digits, "\.", "\/" and "-" only, and not "\." or "\.\."$/,
      );
    });
  }

  test('a version holding a terminal escape is refused, not printed', async () => {
    const d = await buildpack('hostile/esc', '1.0.0\x1b]0;pwned\x07');
    await refused(readBuildpackToml(path.join(d, 'buildpack.toml')), /buildpack\.version: expected/);
  });

  test("a builder's order.toml naming a version with slashes is refused", async () => {
    const f = path.join(e.root, `order-${n++}.toml`);
    await writeFile(f, '[[order]]\n[[order.group]]\nid = "a"\nversion = "../../../etc"\n');
    await refused(readOrderToml(f), /order\[0\]\.group\[0\]\.version: expected no "\/"/);
  });

  test('a buildpackage whose io.buildpacks.buildpack.layers label names a version climbing out is refused', async () => {
    const layer = await writeLayer([fileEntry('cnb/buildpacks/a/1/buildpack.toml', 'x')], {
      store: e.store.blobs,
    });
    const diffID = await layer.diffID();
    const image = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: {
          Labels: {
            'io.buildpacks.buildpackage.metadata': JSON.stringify({ id: 'a', version: '1' }),
            'io.buildpacks.buildpack.layers': JSON.stringify({
              a: { [`../../../../../../../../..${victim}`]: { api: '0.12', layerDiffID: diffID } },
            }),
          },
        },
        rootfs: { type: 'layers', diff_ids: [diffID] },
      },
      layers: [layer],
    });
    await refused(
      extractBuildpackage(image, path.join(e.root, `bpkg-${n++}`), 'hostile/package'),
      /^hostile\/package: label io\.buildpacks\.buildpack\.layers: buildpack a version "\.\.\/.*": expected no "\/"/,
    );
  });

  test('a buildpackage layer making cnb/buildpacks/<id> a link to a host directory is refused, not read', async () => {
    // A host directory laid out like a buildpack: followed, it would be read and copied as one.
    const host = path.join(e.root, `host-bp-${n++}`);
    await mkdir(path.join(host, '1'), { recursive: true });
    await writeFile(
      path.join(host, '1', 'buildpack.toml'),
      'api = "0.12"\n[buildpack]\nid = "a"\nversion = "1"\n',
    );
    const layer = await writeLayer(
      [
        { path: 'cnb', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
        { path: 'cnb/buildpacks', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
        { path: 'cnb/buildpacks/a', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: host },
      ],
      { store: e.store.blobs },
    );
    const diffID = await layer.diffID();
    const image = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: {
          Labels: {
            'io.buildpacks.buildpackage.metadata': JSON.stringify({ id: 'a', version: '1' }),
            'io.buildpacks.buildpack.layers': JSON.stringify({
              a: { '1': { api: '0.12', layerDiffID: diffID } },
            }),
          },
        },
        rootfs: { type: 'layers', diff_ids: [diffID] },
      },
      layers: [layer],
    });
    await refused(
      extractBuildpackage(image, path.join(e.root, `bpkg-${n++}`), 'hostile/package'),
      /^hostile\/package\/cnb\/buildpacks\/a\/1\/buildpack\.toml: hostile\/package\/cnb\/buildpacks\/a is a symbolic link: expected a directory inside the buildpackage$/,
    );
  });

  test('--buildpack IMAGE whose layer makes cnb a link to a host directory is refused before the copy', async () => {
    const host = path.join(e.root, `host-cnb-${n++}`);
    await mkdir(path.join(host, 'buildpacks', 'x', '1'), { recursive: true });
    await writeFile(path.join(host, 'buildpacks', 'x', '1', 'secret'), 'HOST-ONLY');
    const layer = await writeLayer(
      [{ path: 'cnb', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: host }],
      {
        store: e.store.blobs,
      },
    );
    const diffID = await layer.diffID();
    const image = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: {
          Labels: { 'io.buildpacks.buildpackage.metadata': JSON.stringify({ id: 'x', version: '1' }) },
        },
        rootfs: { type: 'layers', diff_ids: [diffID] },
      },
      layers: [layer],
    });
    const app = await e.app(`ids-${n}`, 'hi');
    await refused(
      e.build(app, `hostile/ids-${n++}`, {
        buildpacks: ['hostile/pkg:1'],
        openBuildpackage: async () => image,
      }),
      /^hostile\/pkg:1\/cnb\/buildpacks: hostile\/pkg:1\/cnb is a symbolic link: expected a directory inside the buildpackage$/,
    );
  });
});
