// Run-image mirrors as the platform spec chooses them, against a real registry started here: a
// builder whose run image lives on an unreachable registry, with a mirror on the test's registry.
// Publishing to that registry takes the mirror there (the primary is never asked); building
// elsewhere tries the primary first, then falls back to the mirror. `kiln inspect` shows the
// run image and its mirrors. The images run.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readBuilderConfig } from '../../src/builder/builder-config.ts';
import { createBuilder } from '../../src/builder/builder-image.ts';
import { imageAccess } from '../../src/cli/commands/build.ts';
import type { Image } from '../../src/oci/image.ts';
import { runImageOf } from '../../src/platform/builder-facts.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { Transports } from '../../src/transport/transports.ts';
import { runMain } from '../helpers/cli.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { type E2E, E2E_BUILDPACKS, makeE2E, podmanRunRetrying } from './build-fixture.ts';

const PRIMARY = '127.0.0.1:1/e2e/run:1'; // nothing listens on port 1

let w: E2E;
let reg: RegistryHandle;
let podman: Podman;
let images: Transports;
let builder: Image;
let mirror: string;

before(async () => {
  w = await makeE2E();
  reg = await startRegistry();
  podman = await startPodman();
  mirror = `${reg.host}/mirror/run:1`;
  images = new Transports(
    { client: new RegistryClient({ insecure: [reg.host], retry: { attempts: 1 } }), storeDir: w.store.dir },
    w.store,
  );
  await images.parse(mirror).write((await w.store.find('e2e/run'))!);
  const toml = path.join(w.root, 'mirror-builder.toml');
  await writeFile(
    toml,
    `[[buildpacks]]\nuri = "${path.join(E2E_BUILDPACKS, 'runtime')}"\n[[buildpacks]]\nuri = "${path.join(E2E_BUILDPACKS, 'process')}"\n` +
      `[[order]]\n  [[order.group]]\n  id = "e2e/runtime"\n  [[order.group]]\n  id = "e2e/process"\n` +
      `[build]\nimage = "e2e/build"\n[[run.images]]\nimage = "${PRIMARY}"\nmirrors = ["${mirror}"]\n`,
  );
  const buildImage = (await w.store.find('e2e/build'))!;
  builder = (
    await createBuilder(await readBuilderConfig(toml), { buildImage, store: w.store.blobs, kilnVersion: 'x' })
  ).image;
});
after(async () => {
  await podman?.cleanup();
  await reg?.stop();
  await w?.cleanup();
});

describe('run-image mirrors', () => {
  test('the mirror on the destination registry is chosen; elsewhere the primary, then the mirror', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-runtoml-'));
    try {
      await mkdir(path.join(root, 'cnb'));
      await writeFile(
        path.join(root, 'cnb', 'run.toml'),
        '[[images]]\nimage = "docker.io/acme/run:1"\nmirrors = ["ghcr.io/acme/run:1", "127.0.0.1:5000/acme/run:1"]\n',
      );
      const b = { image: builder, name: 'b' };
      assert.deepEqual(await runImageOf(root, b, undefined, '127.0.0.1:5000'), {
        name: '127.0.0.1:5000/acme/run:1',
        mirrors: ['docker.io/acme/run:1', 'ghcr.io/acme/run:1'],
      });
      assert.equal((await runImageOf(root, b, undefined, 'ghcr.io')).name, 'ghcr.io/acme/run:1');
      assert.equal((await runImageOf(root, b, undefined, 'quay.io')).name, 'docker.io/acme/run:1');
      assert.equal((await runImageOf(root, b, undefined, undefined)).name, 'docker.io/acme/run:1');
      assert.equal((await runImageOf(root, b, 'other/run:2', '127.0.0.1:5000')).name, 'other/run:2');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("publishing to the mirror's registry builds on the mirror without asking the primary", async () => {
    const app = await w.app('mirror', 'mirror app');
    const dest = images.parse(`${reg.host}/e2e/app:1`);
    const b = await w.build(app, 'mirror-app', {
      builder: { image: builder, name: 'mirror-builder' },
      images: imageAccess(dest, dest, images),
    });
    const text = b.log.lines.join('\n');
    assert.doesNotMatch(text, /could not be read/);
    const env = { HOME: w.root, PATH: process.env.PATH, KILN_HOME: path.join(w.root, 'home') };
    const shown = await runMain(['--insecure-registry', reg.host, 'inspect', `${reg.host}/e2e/app:1`], env);
    assert.equal(shown.code, 0, shown.err);
    assert.ok(shown.out.includes(`  ${mirror}\n`), shown.out);
    assert.ok(shown.out.includes(`  ${PRIMARY} (mirror)`), shown.out);
    const r = await podmanRunRetrying(podman, `docker://${reg.host}/e2e/app:1`, [], {
      user: '1000:1000',
      flags: ['--tls-verify=false'],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /message=mirror app/);
  });

  test('building into a layout: the unreachable primary falls back to the mirror, with a warning', async () => {
    const app = await w.app('fallback', 'fallback app');
    const out = path.join(w.root, 'out', 'fallback');
    const dest = images.parse(`oci:${out}:app`);
    const b = await w.build(app, 'fallback-app', {
      builder: { image: builder, name: 'mirror-builder' },
      images: imageAccess(dest, dest, images),
    });
    assert.match(
      b.log.lines.join('\n'),
      new RegExp(`Run image ${PRIMARY.replace(/[.:/]/g, '\\$&')} could not be read: using its mirror`),
    );
    const r = await podmanRunRetrying(podman, `oci:${out}:app`, [], { user: '1000:1000' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /message=fallback app/);
  });
});
