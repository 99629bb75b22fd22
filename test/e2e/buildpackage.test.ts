// Buildpackages made by `kiln buildpack package` used by real builds: `--buildpack`
// by path (.cnb file) and by reference (oci:DIR:TAG, the local store, a real registry), a
// composite buildpackage, and a buildpack scaffolded by `kiln buildpack new` through detect and
// build in the real sandbox. Builds run through the CLI's orchestration with the e2e test builder
// (test/e2e/build-fixture.ts) and the CLI's own buildpackage opener; podman runs the results.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openBuildpackageImage } from '../../src/cli/commands/buildpack.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { ImageStore } from '../../src/store/store.ts';
import { Transports } from '../../src/transport/transports.ts';
import { runMain } from '../helpers/cli.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { type E2E, E2E_BUILDPACKS, makeE2E } from './build-fixture.ts';

let w: E2E;
let podman: Podman;
let registry: RegistryHandle;
let home: string;
let images: Transports;

before(async () => {
  w = await makeE2E();
  podman = await startPodman();
  registry = await startRegistry();
  home = path.join(w.root, 'kiln-home');
  await mkdir(home);
  images = new Transports({
    client: new RegistryClient({ insecure: [registry.host] }),
    storeDir: ImageStore.defaultDir(home),
  });
});
after(async () => {
  await registry?.stop();
  await podman?.cleanup();
  await w?.cleanup();
});

async function kiln(args: string[]): Promise<string> {
  const { code, out, err } = await runMain(['--insecure-registry', registry.host, ...args], {
    HOME: home,
    PATH: process.env.PATH,
    KILN_HOME: home,
    TMPDIR: w.root,
  });
  assert.equal(code, 0, `kiln ${args.join(' ')}: ${err}`);
  return out.trim();
}

async function runWithPodman(name: string): Promise<string> {
  const img = (await w.store.find(name))!;
  const dir = path.join(w.root, 'podman-layouts', name.replace(/[^a-z0-9]+/g, '-'));
  await (await Layout.init(dir)).writeImage(img, 'app');
  const r = await podman.run(`oci:${dir}:app`, [], { user: '1000:1000' });
  assert.equal(r.code, 0, `podman run failed: ${r.stderr}`);
  return r.stdout;
}

/** Builds with `ref` between the builder's runtime and process buildpacks. */
async function buildWith(name: string, ref: string, message: string) {
  const app = await w.app(name, message);
  return w.build(app, name, {
    buildpacks: ['e2e/runtime', ref, 'e2e/process@0.0.1'],
    openBuildpackage: (r) => openBuildpackageImage(r, images),
  });
}

function buildpacksOf(log: readonly string[]): string {
  return log.join('\n');
}

describe('buildpackages in kiln build', () => {
  test('--buildpack FILE.cnb: a buildpackage file made by kiln runs in the build; the image runs', async () => {
    const cnb = path.join(w.root, 'greeting.cnb');
    await kiln([
      'buildpack',
      'package',
      cnb,
      '--format',
      'file',
      '-p',
      path.join(E2E_BUILDPACKS, 'greeting'),
    ]);
    const b = await buildWith('bpkg-cnb', cnb, 'from a cnb file');
    assert.match(buildpacksOf(b.log.lines), /e2e\/greeting\s+1\.2\.3/);
    assert.equal(await runWithPodman('bpkg-cnb'), 'GREETING=bonjour uid=1000 message=from a cnb file\n');
  });

  test('--buildpack by reference: oci:DIR:TAG, the local store, a real registry', async () => {
    const greeting = path.join(E2E_BUILDPACKS, 'greeting');
    const layout = path.join(w.root, 'bp-layout');
    const refs = [
      `oci:${layout}:greeting`,
      'example/greeting-bp:1.2.3',
      `${registry.host}/buildpacks/greeting:1.2.3`,
    ];
    const digests = [
      await kiln(['buildpack', 'package', refs[0]!, '-p', greeting]),
      await kiln(['buildpack', 'package', refs[1]!, '-p', greeting]),
      await kiln(['buildpack', 'package', refs[2]!, '-p', greeting, '--publish']),
    ];
    assert.equal(new Set(digests).size, 1, 'the same buildpackage wherever it goes');
    for (const [i, ref] of refs.entries()) {
      const name = `bpkg-ref-${i}`;
      const b = await buildWith(name, ref, `by reference ${i}`);
      assert.match(buildpacksOf(b.log.lines), /e2e\/greeting\s+1\.2\.3/, ref);
      const cfg = await (await w.store.find(name))!.configFile();
      const md = JSON.parse(cfg.config!.Labels!['io.buildpacks.lifecycle.metadata']!) as {
        buildpacks: { key: string; layers: Record<string, unknown> }[];
      };
      assert.ok(
        md.buildpacks.some((bp) => bp.key === 'e2e/greeting' && 'greeting' in bp.layers),
        `${ref}: the greeting layer is in the image`,
      );
    }
    assert.equal(await runWithPodman('bpkg-ref-2'), 'GREETING=bonjour uid=1000 message=by reference 2\n');
  });

  test('a composite buildpackage: detect expands its order from the package', async () => {
    const comp = path.join(w.root, 'composite');
    await mkdir(comp, { recursive: true });
    await writeFile(
      path.join(comp, 'buildpack.toml'),
      'api = "0.10"\n[buildpack]\nid = "e2e/greeting-composite"\nversion = "0.1.0"\n[[order]]\n[[order.group]]\nid = "e2e/greeting"\nversion = "1.2.3"\n',
    );
    await writeFile(
      path.join(w.root, 'package.toml'),
      `[buildpack]\nuri = "composite"\n[[dependencies]]\nuri = "${path.join(E2E_BUILDPACKS, 'greeting')}"\n`,
    );
    const cnb = path.join(w.root, 'composite.cnb');
    await kiln(['buildpack', 'package', cnb, '--format', 'file', '-c', path.join(w.root, 'package.toml')]);
    const b = await buildWith('bpkg-composite', cnb, 'from a composite');
    assert.match(buildpacksOf(b.log.lines), /e2e\/greeting\s+1\.2\.3/);
    assert.equal(
      await runWithPodman('bpkg-composite'),
      'GREETING=bonjour uid=1000 message=from a composite\n',
    );
  });

  test('kiln buildpack new: the scaffold passes detect and builds its layer in the real sandbox', async () => {
    const dir = path.join(w.root, 'scaffold');
    await kiln(['buildpack', 'new', 'e2e/hello', '--path', dir, '--api', '0.12']);
    const b = await buildWith('bpkg-scaffold', dir, 'scaffolded');
    assert.match(buildpacksOf(b.log.lines), /e2e\/hello\s+0\.0\.1/);
    assert.match(buildpacksOf(b.log.lines), /Adding layer 'e2e\/hello:hello'/);
    const img = (await w.store.find('bpkg-scaffold'))!;
    let hello = '';
    for (const layer of await img.layers()) {
      for await (const e of readTar(await layer.uncompressed())) {
        let body = '';
        for await (const c of e.body) body += c.toString();
        if (e.header.path.replace(/^\//, '') === 'layers/e2e_hello/hello/hello.txt') hello = body;
      }
    }
    assert.equal(hello, 'hello from e2e/hello\n');
    // The app still runs as before: the scaffold adds a layer and no process.
    assert.equal(await runWithPodman('bpkg-scaffold'), 'GREETING=hi uid=1000 message=scaffolded\n');
  });
});
