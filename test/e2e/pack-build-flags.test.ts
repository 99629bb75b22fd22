// pack's build flags through the real CLI (`kiln build`, in process) on the e2e test builder: each
// flag's effect is observed in the build's output, the image config or the image's files, and
// every image meant to run is run with podman. A "probe" bash buildpack reports what detect and
// build see (its user, a volume's file and whether it can write there).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import { ImageStore } from '../../src/store/store.ts';
import { runMain } from '../helpers/cli.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type E2E, makeE2E, podmanRunRetrying } from './build-fixture.ts';

const execFileP = promisify(execFile);

const PROBE_TOML = `api = "0.10"
[buildpack]
id = "e2e/probe"
version = "0.0.1"
`;
const PROBE_SCRIPT = (phase: string) => `#!/usr/bin/env bash
set -u
echo "probe-${phase}: uid=$(id -u) gid=$(id -g)"
if [ -f /tmp/kiln-vol/secret.txt ]; then
  echo "probe-${phase}: volume says $(cat /tmp/kiln-vol/secret.txt)"
  if ( echo x > /tmp/kiln-vol/written-by-${phase} ) 2>/dev/null; then echo "probe-${phase}: volume writable"; else echo "probe-${phase}: volume read-only"; fi
fi
exit 0
`;
/** The volume probe's detect passes only when it can read the volume's file (and tries to write). */
const VOLPROBE_DETECT = `#!/usr/bin/env bash
set -u
grep -q volume-content-42 /tmp/kiln-vol/secret.txt || exit 100
( echo x > /tmp/kiln-vol/written-by-detect ) 2>/dev/null
exit 0
`;

/** The workspace probe: detect needs the volume at /data/kiln; build reports where it runs. */
const WSPROBE_DETECT = `#!/usr/bin/env bash
grep -q volume-content-42 /data/kiln/secret.txt || exit 100
exit 0
`;
const WSPROBE_BUILD = `#!/usr/bin/env bash
set -u
echo "wsprobe-build: pwd=$(pwd) message=$(cat message.txt)"
if ( echo x > /data/kiln/written ) 2>/dev/null; then rw=writable; else rw=read-only; fi
echo "wsprobe-build: volume says $(cat /data/kiln/secret.txt), $rw"
[ -e /workspace/message.txt ] && echo "wsprobe-build: app at /workspace" || echo "wsprobe-build: no app at /workspace"
exit 0
`;

let w: E2E;
let podman: Podman;
let home: string;
let probe: string;
let volprobe: string;
let wsprobe: string;
let vol: string;
let server: http.Server;
let serverUrl: string;

before(async () => {
  w = await makeE2E();
  podman = await startPodman();
  home = path.join(w.root, 'kiln-home');
  const store = await ImageStore.open(ImageStore.defaultDir(home));
  for (const n of ['e2e/builder', 'e2e/build', 'e2e/run']) await store.write((await w.store.find(n))!, [n]);
  probe = path.join(w.root, 'probe');
  await mkdir(path.join(probe, 'bin'), { recursive: true });
  await writeFile(path.join(probe, 'buildpack.toml'), PROBE_TOML);
  for (const p of ['detect', 'build']) {
    await writeFile(path.join(probe, 'bin', p), PROBE_SCRIPT(p));
    await chmod(path.join(probe, 'bin', p), 0o755);
  }
  volprobe = path.join(w.root, 'volprobe');
  await mkdir(path.join(volprobe, 'bin'), { recursive: true });
  await writeFile(path.join(volprobe, 'buildpack.toml'), PROBE_TOML.replace('e2e/probe', 'e2e/volprobe'));
  await writeFile(path.join(volprobe, 'bin', 'detect'), VOLPROBE_DETECT);
  await writeFile(path.join(volprobe, 'bin', 'build'), PROBE_SCRIPT('build'));
  for (const p of ['detect', 'build']) await chmod(path.join(volprobe, 'bin', p), 0o755);
  wsprobe = path.join(w.root, 'wsprobe');
  await mkdir(path.join(wsprobe, 'bin'), { recursive: true });
  await writeFile(path.join(wsprobe, 'buildpack.toml'), PROBE_TOML.replace('e2e/probe', 'e2e/wsprobe'));
  await writeFile(path.join(wsprobe, 'bin', 'detect'), WSPROBE_DETECT);
  await writeFile(path.join(wsprobe, 'bin', 'build'), WSPROBE_BUILD);
  for (const p of ['detect', 'build']) await chmod(path.join(wsprobe, 'bin', p), 0o755);
  vol = path.join(w.root, 'vol');
  await mkdir(vol, { mode: 0o755 });
  await writeFile(path.join(vol, 'secret.txt'), 'volume-content-42\n', { mode: 0o644 });
  await chmod(w.root, 0o755);
  // The probe as a .tgz, served over HTTP by this test.
  const tgz = path.join(w.root, 'probe.tgz');
  await execFileP('tar', ['-czf', tgz, '-C', probe, '.']);
  const bytes = await import('node:fs/promises').then((f) => f.readFile(tgz));
  server = http.createServer((req, res) => {
    if (req.url === '/probe.tgz') res.end(bytes);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server?.close();
  await podman?.cleanup();
  await w?.cleanup();
});

/** kiln build into oci:<dir>:app with the fixture's builder and host /usr, /etc. */
async function build(name: string, app: string, extra: string[]) {
  const out = path.join(w.root, 'out', name);
  const r = await runMain(
    [
      'build',
      `oci:${out}:app`,
      '--builder',
      'e2e/builder',
      '--path',
      app,
      '--network',
      'none',
      '--volume',
      '/usr:/usr',
      '--volume',
      '/etc:/etc',
      ...extra,
    ],
    { HOME: home, PATH: process.env.PATH, KILN_HOME: home, CI: '1' },
  );
  return { ...r, log: r.out + r.err, layout: out };
}

async function runs(layout: string, expect: RegExp): Promise<void> {
  const r = await podmanRunRetrying(podman, `oci:${layout}:app`, [], { user: '1000:1000' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, expect);
}

/** Every path and file content of the image's layers. */
async function imageFiles(layout: string): Promise<{ paths: string[]; text: string }> {
  const img = (await (await Layout.open(layout)).image('app'))!;
  const paths: string[] = [];
  let text = '';
  for (const l of await img.layers()) {
    for await (const e of readTar(await l.uncompressed())) {
      paths.push(e.header.path);
      for await (const c of e.body) text += c.toString('latin1');
    }
  }
  return { paths, text };
}

async function config(layout: string) {
  const img = (await (await Layout.open(layout)).image('app'))!;
  return img.configFile();
}

describe('pack build flags', () => {
  test('--volume: visible read-only to detect and build, absent from the image', async () => {
    const app = await w.app('vol', 'volume app');
    const b = await build('vol', app, ['--volume', `${vol}:/tmp/kiln-vol`, '--post-buildpack', volprobe]);
    assert.equal(b.code, 0, b.log);
    // The probe is in the group only if its detect read the volume; its build reports what it saw.
    assert.match(b.log, /e2e\/volprobe\s+0\.0\.1/, 'detect read the volume');
    assert.match(b.log, /probe-build: volume says volume-content-42/);
    assert.match(b.log, /probe-build: volume read-only/);
    assert.deepEqual(await readdir(vol), ['secret.txt'], 'neither detect nor build wrote to it');
    const files = await imageFiles(b.layout);
    assert.ok(!files.paths.some((p) => p.includes('kiln-vol')), 'no volume path in the image');
    assert.ok(!files.text.includes('volume-content-42'), 'no volume content in the image');
    await runs(b.layout, /message=volume app/);
    // Without the volume the probe's detect fails: the volume is what it saw.
    const without = await build('vol-none', app, ['--post-buildpack', volprobe]);
    assert.notEqual(without.code, 0);
    // rw: writable from detect and build (to whoever the directory lets write: here everyone).
    await chmod(vol, 0o777);
    const rw = await build('vol-rw', app, [
      '--volume',
      `${vol}:/tmp/kiln-vol:rw`,
      '--post-buildpack',
      volprobe,
    ]);
    assert.equal(rw.code, 0, rw.log);
    assert.match(rw.log, /probe-build: volume writable/);
    assert.deepEqual((await readdir(vol)).sort(), ['secret.txt', 'written-by-build', 'written-by-detect']);
    for (const target of ['/workspace/x', '/layers', '/cnb', '/proc/x', '/', '/tmp']) {
      const bad = await build('vol-bad', app, ['--volume', `${vol}:${target}`]);
      assert.equal(bad.code, 3, `${target}: ${bad.log}`);
      assert.match(bad.log, /--volume .*: the target/);
    }
    // A target below another volume must exist in that host directory (kiln creates nothing
    // there): one clear error before any buildpack runs. A target the build image lacks gets a
    // mount point (see the --workspace test).
    const nested = await build('vol-nested', app, ['--volume', `${vol}:/etc/kiln-no-such-dir`]);
    assert.equal(nested.code, 3, nested.log);
    assert.match(
      nested.log,
      /volume target \/etc\/kiln-no-such-dir: no such path in the volume \/etc \(\/etc\/kiln-no-such-dir\)/,
    );
    assert.doesNotMatch(nested.log, /DETECTING/);
    // A file cannot be mounted on a directory (here one of the /usr volume's).
    const fileOnDir = await build('vol-file-dir', app, ['--volume', `${vol}/secret.txt:/usr/bin`]);
    assert.equal(fileOnDir.code, 3, fileOnDir.log);
    assert.match(
      fileOnDir.log,
      /volume target \/usr\/bin: there is a directory at that path, and a file cannot be mounted on it/,
    );
    // A link of the build image (its /bin -> usr/bin) is never followed to place a volume.
    const linked = await build('vol-link', app, ['--volume', `${vol}:/bin/kiln-vol`]);
    assert.equal(linked.code, 3, linked.log);
    assert.match(
      linked.log,
      /volume target \/bin\/kiln-vol: the build image has a symbolic link on that path/,
    );
  });

  test('--workspace /srv/app and a --volume target the build image lacks: the app is built and runs there', async () => {
    const app = await w.app('ws', 'workspace app');
    const b = await build('ws', app, [
      '--workspace',
      '/srv/app',
      '--volume',
      `${vol}:/data/kiln`,
      '--post-buildpack',
      wsprobe,
    ]);
    assert.equal(b.code, 0, b.log);
    // Detect passed only when it read the volume; build ran in the workspace and saw the app there.
    assert.match(b.log, /e2e\/wsprobe\s+0\.0\.1/, 'detect read the volume at /data/kiln');
    assert.match(b.log, /wsprobe-build: pwd=\/srv\/app message=workspace app/);
    assert.match(b.log, /wsprobe-build: volume says volume-content-42, read-only/);
    assert.match(b.log, /wsprobe-build: no app at \/workspace/);
    const cfg = (await config(b.layout)).config!;
    assert.equal(cfg.WorkingDir, '/srv/app');
    assert.ok(cfg.Env?.includes('CNB_APP_DIR=/srv/app'), String(cfg.Env));
    const files = await imageFiles(b.layout);
    assert.ok(files.paths.includes('srv/app/message.txt'), 'the app layer is at /srv/app');
    assert.ok(!files.paths.some((p) => p.startsWith('workspace')), 'nothing at /workspace');
    assert.ok(!files.paths.some((p) => p.startsWith('data')), 'no volume path in the image');
    // Through the launcher (CNB_APP_DIR) and without it (the config's WorkingDir): a relative
    // path opens the app's file, so the process's cwd is /srv/app.
    const launched = await podmanRunRetrying(podman, `oci:${b.layout}:app`, ['--', 'hello', 'message.txt'], {
      user: '1000:1000',
    });
    assert.equal(launched.code, 0, launched.stderr);
    assert.match(launched.stdout, /message=workspace app/);
    const direct = await podmanRunRetrying(podman, `oci:${b.layout}:app`, ['message.txt'], {
      user: '1000:1000',
      entrypoint: '/srv/app/hello',
    });
    assert.equal(direct.code, 0, direct.stderr);
    assert.match(direct.stdout, /message=workspace app/);
    // Unusable places are refused in one line before anything runs.
    for (const bad of [
      'srv/app',
      '/',
      '/usr/app',
      '/layers/x',
      '/srv/../etc',
      '/cnb',
      '/tmp/app',
      '/srv/app/',
    ]) {
      const r = await build('ws-bad', app, ['--workspace', bad]);
      assert.equal(r.code, 3, `${bad}: ${r.log}`);
      assert.match(r.log, /--workspace "[^"]*": /);
      assert.doesNotMatch(r.log, /DETECTING/);
    }
    // A volume may not cover the workspace.
    const over = await build('ws-vol', app, ['--workspace', '/srv/app', '--volume', `${vol}:/srv/app/x`]);
    assert.equal(over.code, 3, over.log);
    assert.match(over.log, /would cover \/srv\/app/);
  });

  test('--pull-policy never: a run image found nowhere local fails clearly; local images still work', async () => {
    const app = await w.app('never', 'never app');
    const bad = await build('never', app, [
      '--pull-policy',
      'never',
      '--run-image',
      '127.0.0.1:9/none/run:1',
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(
      bad.log,
      /image 127\.0\.0\.1:9\/none\/run:1 is not in the local store and --pull-policy is never/,
    );
    const ok = await build('never-ok', app, ['--pull-policy', 'never']);
    assert.equal(ok.code, 0, ok.log);
    await runs(ok.layout, /message=never app/);
  });

  test('--creation-time: the config says when; layers keep their reproducible times', async () => {
    const app = await w.app('ctime', 'ctime app');
    const b = await build('ctime', app, ['--creation-time', '1700000000']);
    assert.equal(b.code, 0, b.log);
    assert.equal((await config(b.layout)).created, '2023-11-14T22:13:20Z');
    const now = await build('ctime-now', app, ['--creation-time', 'now']);
    assert.equal(now.code, 0, now.log);
    const created = Date.parse((await config(now.layout)).created!);
    assert.ok(Math.abs(created - Date.now()) < 10 * 60_000, `created ${created} is now`);
    const layers = async (l: string) =>
      (await (await (await Layout.open(l)).image('app')).manifest()).layers.map((d) => d.digest);
    assert.deepEqual(await layers(now.layout), await layers(b.layout), 'only the config changes');
    const bad = await build('ctime-bad', app, ['--creation-time', 'yesterday']);
    assert.equal(bad.code, 3);
    await runs(b.layout, /message=ctime app/);
  });

  test('--uid/--gid and --pre-buildpack: the probe runs first, as the given user', async () => {
    const app = await w.app('uid', 'uid app');
    const b = await build('uid', app, ['--uid', '2000', '--gid', '3000', '--pre-buildpack', probe]);
    assert.equal(b.code, 0, b.log);
    assert.match(b.log, /probe-build: uid=2000 gid=3000/);
    const md = JSON.parse(
      (await config(b.layout)).config?.Labels?.['io.buildpacks.build.metadata'] ?? '{}',
    ) as {
      buildpacks?: { id: string }[];
    };
    assert.equal(md.buildpacks?.[0]?.id, 'e2e/probe', 'the pre buildpack is first in the group');
    assert.equal((await build('uid0', app, ['--uid', '0'])).code, 3);
    await runs(b.layout, /message=uid app/);
  });

  test('a zip --path is the app; an archive with an unsafe entry is refused', async () => {
    const src = await w.app('zipped', 'zipped app');
    const zip = path.join(w.root, 'app.zip');
    await execFileP('python3', [
      '-c',
      'import sys,zipfile,os\nz=zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_DEFLATED)\nfor n in os.listdir(sys.argv[2]):\n  z.write(os.path.join(sys.argv[2],n),n)\nz.close()',
      zip,
      src,
    ]);
    await rm(src, { recursive: true });
    const b = await build('zip', zip, []);
    assert.equal(b.code, 0, b.log);
    await runs(b.layout, /message=zipped app/);
    const evil = path.join(w.root, 'evil.zip');
    await execFileP('python3', [
      '-c',
      'import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],"w")\nz.writestr("../../escaped.txt","x")\nz.close()',
      evil,
    ]);
    const bad = await build('evil', evil, []);
    assert.notEqual(bad.code, 0);
    assert.match(bad.log, /unsafe name/);
  });

  test('a buildpack by http URL (.tgz served by the test)', async () => {
    const app = await w.app('url', 'url app');
    const b = await build('url', app, ['--post-buildpack', `${serverUrl}/probe.tgz`]);
    assert.equal(b.code, 0, b.log);
    assert.match(b.log, /probe-build: uid=1000/);
    const missing = await build('url-404', app, ['--post-buildpack', `${serverUrl}/nothing.tgz`]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.log, /download answered 404/);
    await runs(b.layout, /message=url app/);
  });

  test("sbom download writes ./layers/sbom by default; inspect --bom prints pack's shape", async () => {
    const app = await w.app('sbom', 'sbom app');
    const b = await build('sbom', app, []);
    assert.equal(b.code, 0, b.log);
    await runs(b.layout, /message=sbom app/);
    const cwd = path.join(w.root, 'sbom-cwd');
    await mkdir(cwd);
    const before = process.cwd();
    process.chdir(cwd);
    try {
      const env = { HOME: home, PATH: process.env.PATH, KILN_HOME: home };
      const dl = await runMain(['sbom', 'download', `oci:${b.layout}:app`], env);
      assert.equal(dl.code, 0, dl.err);
      const cdx = path.join(cwd, 'layers', 'sbom', 'launch', 'e2e_runtime', 'runtime', 'sbom.cdx.json');
      assert.match(await readFile(cdx, 'utf8'), /"name":"hello"/);
      const bom = await runMain(['inspect', `oci:${b.layout}:app`, '--bom'], env);
      assert.equal(bom.code, 0, bom.err);
      const shown = JSON.parse(bom.out) as {
        remote: unknown;
        local: { name: string; buildpacks: { id: string } }[];
      };
      assert.equal(shown.remote, null);
      assert.ok(
        shown.local.some((e) => e.name === 'hello' && e.buildpacks.id === 'e2e/runtime'),
        JSON.stringify(shown),
      );
    } finally {
      process.chdir(before);
    }
  });

  test("--cache 'type=build;format=bind|volume;…' keeps the build cache there; type=launch is refused", async () => {
    const app = await w.app('cache', 'cache app');
    const dir = path.join(w.root, 'bind-cache');
    const bind = `type=build;format=bind;source=${dir}`;
    const first = await build('cache', app, ['--cache', bind]);
    assert.equal(first.code, 0, first.log);
    assert.ok((await readdir(dir)).length > 0, 'the cache went to the bind directory');
    // Another image name, the same cache: the cached layer is reused.
    const second = await build('cache-2', app, ['--cache', bind]);
    assert.equal(second.code, 0, second.log);
    assert.match(second.log, /runtime: reusing cached layer/);
    await runs(second.layout, /message=cache app/);
    const vol = await build('cache-vol', app, ['--cache', 'type=build;format=volume;name=my-cache']);
    assert.equal(vol.code, 0, vol.log);
    assert.ok((await readdir(path.join(home, 'cache', 'volumes', 'my-cache'))).length > 0);
    const launch = await build('cache-launch', app, ['--cache', 'type=launch;format=volume;name=x']);
    assert.equal(launch.code, 3);
    assert.match(launch.log, /type=launch: kiln keeps no launch cache/);
  });

  test("--extension is refused as a builder's extensions are; --skip-extensions leaves it out", async () => {
    const app = await w.app('ext', 'ext app');
    const refused = await build('ext', app, ['--extension', 'acme/curl']);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.log,
      /image extensions acme\/curl \(--extension\): kiln does not run Dockerfile extensions/,
    );
    assert.doesNotMatch(refused.log, /DETECTING/);
    const skipped = await build('ext-skip', app, ['--extension', 'acme/curl', '--skip-extensions']);
    assert.equal(skipped.code, 0, skipped.log);
    assert.match(skipped.log, /skipping image extensions acme\/curl/);
    await runs(skipped.layout, /message=ext app/);
  });

  test("-r is pack's --buildpack-registry: refused clearly, never taken as a run image", async () => {
    const app = await w.app('r', 'r app');
    const b = await build('r', app, ['-r', 'e2e/run']);
    assert.equal(b.code, 3);
    assert.match(b.log, /--buildpack-registry e2e\/run: kiln resolves no buildpack registry/);
  });
});
