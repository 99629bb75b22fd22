import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { Layout } from '../../src/layout/layout.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type E2E, E2E_BUILDPACKS, makeE2E, podmanRunRetrying } from './build-fixture.ts';

let w: E2E;
let podman: Podman;
before(async () => {
  w = await makeE2E();
  podman = await startPodman();
});
after(async () => {
  await podman?.cleanup();
  await w?.cleanup();
});

async function layerDigests(name: string): Promise<string[]> {
  const img = await w.store.find(name);
  assert.ok(img, `${name} is in the store`);
  return (await img.manifest()).layers.map((l) => l.digest);
}

/** Copies a stored image into its own layout so podman can run it as oci:DIR:app. */
async function runWithPodman(name: string, args: string[] = [], entrypoint?: string): Promise<string> {
  const img = (await w.store.find(name))!;
  const dir = path.join(w.root, 'podman-layouts', name.replace(/[^a-z0-9]+/g, '-'));
  await (await Layout.init(dir)).writeImage(img, 'app');
  const r = await podmanRunRetrying(podman, `oci:${dir}:app`, args, {
    user: '1000:1000',
    ...(entrypoint ? { entrypoint } : {}),
  });
  assert.equal(r.code, 0, `podman run failed: ${r.stderr}`);
  return r.stdout;
}

describe('kiln build end to end', () => {
  test('builds an app with a 3-buildpack test builder; the image runs with podman as uid 1000', async () => {
    const app = await w.app('first', 'hello from the first build');
    const sbomOut = path.join(w.root, 'out', 'sbom');
    const reportOut = path.join(w.root, 'out', 'report');
    const b = await w.build(app, 'e2e-app', { sbomOutputDir: sbomOut, reportOutputDir: reportOut });
    const report = await fs.readFile(path.join(reportOut, 'report.toml'), 'utf8');
    assert.match(report, new RegExp(`digest = "${b.digest}"`));
    assert.match(
      report,
      /tags = \[ "docker\.io\/library\/e2e-app:latest" \]|tags = \["docker\.io\/library\/e2e-app:latest"\]/,
    );
    assert.match(report, /manifest-size = \d+/);
    const sbom = await fs.readFile(
      path.join(sbomOut, 'launch', 'e2e_runtime', 'runtime', 'sbom.cdx.json'),
      'utf8',
    );
    assert.match(sbom, /CycloneDX/);
    const text = b.log.lines.join('\n');
    for (const p of ['ANALYZING', 'DETECTING', 'RESTORING', 'BUILDING', 'EXPORTING'])
      assert.match(text, new RegExp(`===> ${p}`));
    assert.match(text, /runtime: installing hello/);
    assert.match(text, /Adding layer 'e2e\/runtime:runtime'/);
    assert.match(text, /Adding cache layer 'e2e\/deps:downloads'/);
    assert.equal(await w.store.digestOf('e2e-app'), b.digest);
    const out = await runWithPodman('e2e-app');
    assert.equal(out, 'GREETING=hi uid=1000 message=hello from the first build\n');
    // Another process type through its /cnb/process symlink (the launcher picks it by argv[0]).
    const worker = await runWithPodman('e2e-app', [], '/cnb/process/worker');
    assert.equal(worker, 'arg=worker GREETING=hi uid=1000 message=\n');
  });

  test('a no-op rebuild gives the same digest, restores from the cache and compresses nothing', async () => {
    const app = await w.app('noop', 'unchanged');
    const first = await w.build(app, 'e2e-noop');
    const second = await w.build(app, 'e2e-noop');
    assert.equal(second.digest, first.digest);
    assert.equal(second.stats.compressed, 0, 'no layer compressed');
    const text = second.log.lines.join('\n');
    assert.match(text, /runtime: reusing cached layer/);
    assert.match(text, /deps: download cache hit/);
    // The previous build's unpacked copies were renamed into place, not extracted.
    assert.match(text, /Restoring data for 'e2e\/runtime:runtime' from cache \(kept unpacked\)/);
    assert.match(text, /Reusing layer 'e2e\/runtime:runtime'/);
    assert.match(text, /Reusing cache layer 'e2e\/deps:downloads'/);
    // The runtime layer's SBOM (written by the buildpack only when it made the layer) came back.
    const img = (await w.store.find('e2e-noop'))!;
    const md = JSON.parse((await img.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!);
    const layers = await img.layers();
    const diffIDs = (await img.configFile()).rootfs.diff_ids;
    const tar = Buffer.concat(await (await layers[diffIDs.indexOf(md.sbom.sha)]!.uncompressed()).toArray());
    assert.ok(tar.includes(Buffer.from('layers/sbom/launch/e2e_runtime/runtime/sbom.cdx.json')));
    // The launcher's SBOM and the run image's OS SBOM ship in the same layer.
    assert.ok(tar.includes(Buffer.from('layers/sbom/launch/buildpacksio_lifecycle/launcher/sbom.spdx.json')));
    assert.ok(tar.includes(Buffer.from('layers/sbom/launch/buildpacksio_lifecycle/run-image/sbom.cdx.json')));
    assert.ok(tar.includes(Buffer.from('e2e-base-files')));
  });

  test('--clear-cache ignores the cache for one build (then replaces it); the image is the same', async () => {
    const app = await w.app('clear', 'clear');
    const first = await w.build(app, 'e2e-clear');
    const cleared = await w.build(app, 'e2e-clear', { clearCache: true });
    const text = cleared.log.lines.join('\n');
    assert.match(text, /Clearing the cache/);
    assert.match(text, /runtime: installing hello/);
    assert.match(text, /deps: downloading/);
    assert.equal(cleared.digest, first.digest);
    assert.deepEqual(cleared.added, [], 'same content: every image layer reused from the previous image');
    // Only the cache itself is refilled (the download layer and the cache SBOM layer).
    assert.equal(cleared.stats.compressed, 2);
    const after = await w.build(app, 'e2e-clear');
    assert.match(after.log.lines.join('\n'), /runtime: reusing cached layer/);
  });

  test('a kept unpacked layer that was tampered with is not used: the layer comes from its blob', async () => {
    const app = await w.app('tamper', 'tamper');
    const first = await w.build(app, 'e2e-tamper');
    const warm = path.join(w.root, 'cache', 'e2e_tamper', 'warm');
    const dirs = (await fs.readdir(warm)).filter((n) => !n.endsWith('.json'));
    assert.equal(dirs.length, 2, 'runtime and downloads kept unpacked');
    for (const d of dirs) {
      const f = (await fs.readdir(path.join(warm, d), { recursive: true })).find(
        (x) => x.endsWith('hello') || x.endsWith('archive'),
      )!;
      const p = path.join(warm, d, f);
      const st = await fs.stat(p);
      const body = await fs.readFile(p);
      body[0] = body[0]! ^ 1; // same size, same mtime: only the ctime tells
      await fs.writeFile(p, body);
      await fs.utimes(p, st.atime, st.mtime);
    }
    const second = await w.build(app, 'e2e-tamper');
    const text = second.log.lines.join('\n');
    assert.doesNotMatch(text, /kept unpacked/);
    assert.match(text, /Restoring data for 'e2e\/runtime:runtime' from cache/);
    assert.equal(second.digest, first.digest);
    assert.equal(second.stats.compressed, 0);
  });

  test('changing one app file changes only the app layer', async () => {
    const app = await w.app('edit', 'version one');
    await w.build(app, 'e2e-edit');
    const before = await layerDigests('e2e-edit');
    await fs.writeFile(path.join(app, 'message.txt'), 'version two\n');
    const b = await w.build(app, 'e2e-edit');
    const after = await layerDigests('e2e-edit');
    assert.equal(before.length, after.length);
    const changed = after.map((d, i) => (d === before[i] ? '' : String(i))).filter(Boolean);
    assert.equal(changed.length, 1, `only one layer changed (${changed})`);
    assert.equal(b.stats.compressed, 1);
    assert.equal(await runWithPodman('e2e-edit'), 'GREETING=hi uid=1000 message=version two\n');
  });

  test('--buildpack takes a buildpack directory next to builder buildpack ids', async () => {
    const app = await w.app('extra-bp', 'with an extra buildpack');
    const b = await w.build(app, 'e2e-extra-bp', {
      buildpacks: ['e2e/runtime', path.join(E2E_BUILDPACKS, 'greeting'), 'e2e/process@0.0.1'],
    });
    assert.match(b.log.lines.join('\n'), /e2e\/greeting 1\.2\.3/);
    assert.equal(
      await runWithPodman('e2e-extra-bp'),
      'GREETING=bonjour uid=1000 message=with an extra buildpack\n',
    );
  });

  test('--buildpack with a path that holds no buildpack is an invalid argument (3) naming it', async () => {
    const app = await w.app('bad-bp-path', 'never built');
    for (const ref of [path.join(w.root, 'no-such-dir'), w.root]) {
      await assert.rejects(
        w.build(app, 'e2e-bad-bp-path', { buildpacks: [ref] }),
        (e: unknown) => exitCodeOf(e) === 3 && String(e).includes(`--buildpack ${ref}: no `),
      );
    }
    assert.equal(await w.store.find('e2e-bad-bp-path'), undefined);
  });

  test('the host executor is refused up front with exit 3 without the real CNB dirs, or when one is unusable (naming it)', async () => {
    const { HostExecutor } = await import('../../src/sandbox/host.ts');
    const executor = new HostExecutor({ hostUid: process.getuid?.() ?? 0 });
    const app = await w.app('host-executor', 'never built');
    await assert.rejects(
      w.build(app, 'e2e-host-executor', { executor }),
      (e: unknown) => exitCodeOf(e) === 3 && /host executor/.test(String(e)),
    );
    const missing = path.join(w.root, 'no-such-layers');
    const hostDirs = { app: w.root, layers: missing, platform: w.root, buildpacks: w.root };
    await assert.rejects(
      w.build(app, 'e2e-host-executor', { executor, hostDirs }),
      (e: unknown) =>
        exitCodeOf(e) === 3 &&
        String(e).includes(`--executor host: ${missing} (CNB_LAYERS_DIR) does not exist`),
    );
    assert.equal(await w.store.find('e2e-host-executor'), undefined);
  });

  test('project.toml pre groups go in front of every group of the builder order', async () => {
    const app = await w.app('pre-group', 'with a pre group');
    const b = await w.build(app, 'e2e-pre-group', {
      preBuildpacks: [path.join(E2E_BUILDPACKS, 'greeting')],
      execEnv: 'test',
    });
    const cfg = await (await w.store.find('e2e-pre-group'))!.configFile();
    assert.equal(cfg.config?.Labels?.['io.buildpacks.exec-env'], 'test', '--exec-env is recorded');
    assert.match(b.log.lines.join('\n'), /e2e\/greeting\s+1\.2\.3\s+e2e\/runtime/);
    assert.equal(
      await runWithPodman('e2e-pre-group'),
      'GREETING=bonjour uid=1000 message=with a pre group\n',
    );
  });

  test('the same source built in two directories, at different times, under different umasks gives the same digest', async () => {
    const a = await w.app('repro-a', 'same');
    const b = await w.app('repro-b', 'same');
    await fs.utimes(path.join(b, 'message.txt'), new Date('2011-01-01'), new Date('2011-01-01'));
    const x = await w.build(a, 'e2e-repro-a');
    // kiln's umask must not reach the layers (buildpacks create files under their own).
    const umask = process.umask(0o077);
    let y: Awaited<ReturnType<E2E['build']>>;
    try {
      y = await w.build(b, 'e2e-repro-b');
    } finally {
      process.umask(umask);
    }
    assert.equal(x.digest, y.digest);
  });
});
