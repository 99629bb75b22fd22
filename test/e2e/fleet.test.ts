// `kiln fleet serve` end to end, with real parts only: the Docker Distribution registry sending
// its push notifications to serve, a counting proxy in front of it (kiln's only way in, so every
// uploaded blob byte is seen), local git repositories, kiln's own stack and default builder, and
// the built images run with `kiln run`. Four images: two from git repositories on a watched
// builder, one from a directory on the default builder, one that cannot build.
//  1. serve builds what is declared (CONFIG); the failing image is reported and retried.
//  2. a new run image pushed to the registry: every image is rebased (STACK) within seconds of
//     the notification, zero layer bytes uploaded, the new base under the same app layers.
//  3. a git push hook with a bad signature is refused; a signed one rebuilds only that image (COMMIT).
//  4. a new builder rebuilds the images that use it (BUILDER), not the other one.
//  5. with hooks off (a second serve, polling every second), the poll catches all three.

import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import type { StatusRow } from '../../src/fleet/page.ts';
import type { Image } from '../../src/oci/image.ts';
import { appendLayers, setConfig } from '../../src/oci/mutate.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { Transports } from '../../src/transport/transports.ts';
import { tarLayer } from '../helpers/cnb-images.ts';
import {
  type ProxyHandle,
  type RegistryHandle,
  startCountingProxy,
  startRegistry,
} from '../helpers/registry.ts';
import {
  copySample,
  freePort,
  httpGet,
  KILN_HOME,
  kiln,
  kilnOk,
  prepareHome,
  ROOT,
  runKiln,
} from './samples-harness.ts';

const execFileP = promisify(execFile);
const ANSWER = 'Hello from kiln: static-binary\n';
const SECRET = `hook-${randomBytes(8).toString('hex')}`;
const REG_TOKEN = `notify-${randomBytes(8).toString('hex')}`;

let work: string;
let db: string;
let registry: RegistryHandle;
let proxy: ProxyHandle;
let servePort: number;
let serve: Served | undefined;
let transports: Transports;
const repos: Record<string, string> = {};

interface Served {
  child: ChildProcess;
  port: number;
  output: () => string;
  stop: () => Promise<number | null>;
}

function startServe(port: number, extra: readonly string[]): Served {
  const child = spawn(
    path.join(ROOT, 'bin', 'kiln'),
    ['fleet', 'serve', '--listen', `127.0.0.1:${port}`, '--database', db, '--workers', '2', ...extra],
    { env: { ...process.env, KILN_HOME, NO_COLOR: '1', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    port,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function status(): Promise<Map<string, StatusRow>> {
  const res = await fetch(`http://127.0.0.1:${serve!.port}/api/status`);
  assert.equal(res.status, 200);
  return new Map(((await res.json()) as StatusRow[]).map((r) => [r.name, r]));
}

/** until polls `f` until it returns a value, failing with serve's output after `ms`. */
async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${serve?.output().slice(-4000)}`);
    await sleep(200);
  }
}

/** history of an image as `kiln fleet history --json` prints it. */
async function history(
  image: string,
): Promise<{ id: number; kind: string; reasons: string[]; state: string; digest?: string }[]> {
  return JSON.parse((await kilnOk(['fleet', 'history', image, '--json', '--database', db])).stdout);
}

/** Waits until every image in `want` has a succeeded job newer than `since` with those reasons. */
async function settled(want: Record<string, string>, since: Record<string, number>) {
  return until(`jobs ${JSON.stringify(want)}`, async () => {
    const out: Record<string, { id: number; kind: string; digest: string }> = {};
    for (const [image, reasons] of Object.entries(want)) {
      const j = (await history(image)).find((h) => h.id > (since[image] ?? 0) && h.state === 'succeeded');
      if (!j) return undefined;
      assert.equal([...j.reasons].sort().join(','), reasons, `${image}: reasons`);
      out[image] = { id: j.id, kind: j.kind, digest: j.digest! };
    }
    return out;
  });
}

async function lastIds(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const i of ['a', 'b', 'c']) out[i] = (await history(i))[0]?.id ?? 0;
  return out;
}

function commit(repo: string, file: string, text: string): void {
  execFileSync(
    'sh',
    [
      '-c',
      `printf '%s' "$1" > "$2" && git add -A && git -c user.name=t -c user.email=t@t commit -qm "$2"`,
      'sh',
      text,
      file,
    ],
    {
      cwd: repo,
    },
  );
}

async function gitRepo(name: string): Promise<string> {
  const s = await copySample('static-binary');
  const dir = path.join(work, name);
  execFileSync(
    'sh',
    [
      '-c',
      './build.sh && cp -r . "$1" && cd "$1" && git init -q -b main && git add -f -A && git -c user.name=t -c user.email=t@t commit -qm init',
      'sh',
      dir,
    ],
    {
      cwd: s.dir,
      // One commit date for every repository: the same tree is then the same commit (the image
      // records the commit), whichever second each repository was made in.
      env: {
        ...process.env,
        GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
        GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
      },
    },
  );
  await s.cleanup();
  return dir;
}

/** The image at `ref` (read through the proxy, as kiln does). */
function read(ref: string): Promise<Image> {
  return transports.parse(ref).read();
}

async function push(image: Image, ref: string): Promise<string> {
  // Straight to the registry (not through the proxy): the proxy counts only kiln's uploads.
  return (await transports.parse(ref.replace(proxy.host, registry.host)).write(image)).digest;
}

/**
 * browse renders `url` in headless Chromium and returns the DOM it built (asynchronously: the
 * counting proxy the page's server reads through runs in this process).
 */
async function browse(url: string): Promise<string> {
  const profile = await mkdtemp(path.join(work, 'chromium-'));
  try {
    const { stdout } = await execFileP(
      'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${profile}`, '--dump-dom', url],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

async function answers(ref: string): Promise<string> {
  const port = await freePort();
  const served = runKiln([ref, '-p', String(port)]);
  try {
    return await httpGet(port, 30_000);
  } finally {
    await served.stop();
  }
}

describe('kiln fleet serve (registry notifications, git hooks, polling)', { timeout: 600_000 }, () => {
  const ref = (p: string) => `${proxy.host}/${p}`;

  before(async () => {
    await prepareHome();
    work = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-fleet-'));
    db = path.join(work, 'state.db');
    servePort = await freePort();
    registry = await startRegistry({
      notifications: { url: `http://127.0.0.1:${servePort}/hooks/registry`, token: REG_TOKEN },
    });
    proxy = await startCountingProxy(registry.host);
    transports = new Transports({
      client: new RegistryClient({}),
      storeDir: path.join(work, 'unused-store'),
    });
    // kiln's stack run image and default builder (made by the first build in this home), in the registry.
    await kilnOk(['image', 'copy', 'local:kiln/stacks/bookworm/run', `${registry.host}/stack/run:latest`]);
    if ((await kiln(['image', 'inspect', 'local:kiln/builders/bookworm:latest'])).code !== 0) {
      const s = await copySample('static-binary');
      execFileSync('./build.sh', { cwd: s.dir });
      await kilnOk(['build', `kiln-e2e-fleet-${randomBytes(3).toString('hex')}`, '--path', s.dir]);
      await s.cleanup();
    }
    await kilnOk([
      'image',
      'copy',
      'local:kiln/builders/bookworm:latest',
      `${registry.host}/stack/builder:latest`,
    ]);
    repos.a = await gitRepo('repo-a');
    repos.b = await gitRepo('repo-b');
    const c = await copySample('static-binary');
    execFileSync('./build.sh', { cwd: c.dir });
    repos.c = c.dir;
    await mkdir(path.join(work, 'nothing'));
    await writeFile(path.join(work, 'nothing', 'README'), 'no buildpack detects this\n');
    await writeFile(path.join(work, 'secret'), SECRET);
    await writeFile(path.join(work, 'token'), REG_TOKEN);
    await writeFile(
      path.join(work, 'fleet.toml'),
      `schema-version = 1
poll-interval = "1h"
[run-images.base]
image = "${ref('stack/run:latest')}"
[run-images.down]
image = "127.0.0.1:1/nowhere/run:latest"
[builders.default]
image = "${ref('stack/builder:latest')}"
[images.a]
tag = "${ref('apps/a:latest')}"
builder = "default"
run-image = "base"
source = { git = "file://${repos.a}", branch = "main" }
[images.b]
tag = "${ref('apps/b:latest')}"
builder = "default"
run-image = "base"
source = { git = "${repos.b}", branch = "main" }
[images.c]
tag = "${ref('apps/c:latest')}"
run-image = "base"
source = { path = "${repos.c}" }
[images.d]
tag = "${ref('apps/d:latest')}"
source = { path = "${path.join(work, 'nothing')}" }
`,
    );
  });

  after(async () => {
    await serve?.stop();
    await proxy?.stop();
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('a malformed fleet file is refused with the key named, and nothing is recorded', async () => {
    await writeFile(
      path.join(work, 'bad.toml'),
      'schema-version = 1\n[images.x]\ntag = "r/x"\nsource = { git = "/x", branch = "-x" }\n',
    );
    const r = await kiln(['fleet', 'apply', path.join(work, 'bad.toml'), '--database', db]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /bad\.toml: images\.x\.source/);
    const ok = await kilnOk(['fleet', 'apply', path.join(work, 'fleet.toml'), '--database', db]);
    assert.match(ok.stdout, /4 images declared: 4 added/);
  });

  test('serve builds every declared image (CONFIG); a failing build is reported and retried', async () => {
    serve = startServe(servePort, [
      '--webhook-secret-file',
      path.join(work, 'secret'),
      '--registry-token-file',
      path.join(work, 'token'),
    ]);
    const built = await settled({ a: 'CONFIG', b: 'CONFIG', c: 'CONFIG' }, {});
    for (const i of ['a', 'b', 'c']) assert.equal(built[i]!.kind, 'build');
    // Each distinct image runs (a and b come from the same source: reproducible, one digest).
    const distinct = new Map(['a', 'b', 'c'].map((i) => [built[i]!.digest, i]));
    assert.equal(built.a!.digest, built.b!.digest, 'same source, same image');
    for (const [digest, i] of distinct) assert.equal(await answers(`${ref(`apps/${i}`)}@${digest}`), ANSWER);
    const d = await until('d reported', async () => {
      const r = (await status()).get('d');
      return r?.lastResult === 'retrying' || r?.lastResult === 'failed' ? r : undefined;
    });
    assert.match(d.lastError ?? '', /kiln build of d failed/);
    const dj = (await history('d'))[0]!;
    assert.match(
      (await kilnOk(['fleet', 'logs', String(dj.id), '--database', db])).stdout,
      /ERROR: .*detect|no buildpack/i,
    );
    const st = JSON.parse((await kilnOk(['fleet', 'status', '--json', '--database', db])).stdout) as {
      images: StatusRow[];
    };
    const a = st.images.find((r) => r.name === 'a')!;
    assert.equal(a.runImageNewest, true);
    assert.equal(a.digest, built.a!.digest);
    const health = await fetch(`http://127.0.0.1:${servePort}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${servePort}/metrics`)).text();
    assert.match(metrics, /kiln_fleet_builds_total\{reason="CONFIG",result="succeeded"\} 3/);
    assert.match(metrics, /kiln_fleet_watch_errors [1-9]/, 'the unreachable registry is reported');
    const watch = (st as unknown as { watch: { key: string; error: string }[] }).watch;
    assert.ok(
      watch.some((w) => w.key.includes('127.0.0.1:1/nowhere') && /127\.0\.0\.1:1/.test(w.error)),
      'status names the unreachable registry',
    );
  });

  test('a new run image rebases every image within seconds of the notification, zero layer bytes uploaded', async () => {
    const since = await lastIds();
    const before: Record<string, Image> = {};
    for (const i of ['a', 'b', 'c']) before[i] = await read(ref(`apps/${i}:latest`));
    const run = await read(ref('stack/run:latest'));
    const patched = appendLayers(run, await tarLayer({ 'etc/kiln-fleet-patch': `patch ${Date.now()}\n` }));
    proxy.reset();
    const t0 = Date.now();
    const runDigest = await push(patched, ref('stack/run:latest'));
    const done = await settled({ a: 'STACK', b: 'STACK', c: 'STACK' }, since);
    const took = (Date.now() - t0) / 1000;
    assert.ok(took < 20, `rebased in ${took} s`);
    // Nothing but the three new configs is uploaded: no layer byte.
    let configs = 0;
    for (const i of ['a', 'b', 'c'])
      configs += (await (await read(`${ref(`apps/${i}`)}@${done[i]!.digest}`)).manifest()).config.size;
    assert.equal(proxy.stats.uploadBytes, configs, 'only the configs are uploaded');
    const newBase = (await patched.manifest()).layers.map((l) => l.digest);
    for (const i of ['a', 'b', 'c']) {
      assert.equal(done[i]!.kind, 'rebase', `${i} rebased`);
      const img = await read(`${ref(`apps/${i}`)}@${done[i]!.digest}`);
      const layers = (await img.manifest()).layers.map((l) => l.digest);
      const old = (await before[i]!.manifest()).layers.map((l) => l.digest);
      const oldBase = (await run.manifest()).layers.length;
      assert.deepEqual(
        layers.slice(0, newBase.length),
        newBase,
        `${i}: the new run image's layers at the bottom`,
      );
      assert.deepEqual(layers.slice(newBase.length), old.slice(oldBase), `${i}: app layers untouched`);
      const md = parseLifecycleMetadata(
        (await img.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
      );
      assert.match(md.runImage.reference ?? '', new RegExp(`@${runDigest}$`));
    }
    assert.equal(await answers(`${ref('apps/a')}@${done.a!.digest}`), ANSWER);
    // The page as a real browser renders it (headless Chromium from Debian).
    const dom = await browse(`http://127.0.0.1:${servePort}/`);
    for (const i of ['a', 'b', 'c']) {
      const row = new RegExp(`<tr data-image="${i}">.*?</tr>`).exec(dom)?.[0] ?? '';
      assert.match(row, /<td class="reason">STACK<\/td>/, `${i}: the page shows the rebase`);
      assert.ok(row.includes(done[i]!.digest.slice(7, 19)), `${i}: the page shows the new digest`);
      assert.match(row, /\(newest\)/);
    }
    const imagePage = await browse(`http://127.0.0.1:${servePort}/images/a`);
    assert.match(imagePage, /<td>rebase<\/td><td class="reason">STACK/);
    assert.match(
      imagePage,
      /<li>buildpack: kiln\/procfile@[^<]+<\/li>/,
      'the software summary (kiln inspect)',
    );
    assert.match(imagePage, /<li>base: debian 12[^<]*<\/li>/);
    const metrics = await (await fetch(`http://127.0.0.1:${servePort}/metrics`)).text();
    assert.match(metrics, /kiln_fleet_stack_rollout_seconds \d/);
  });

  test('git hooks: a bad signature is refused; a signed push rebuilds only that image (COMMIT)', async () => {
    const since = await lastIds();
    commit(repos.a!, 'VERSION', '2\n');
    const body = JSON.stringify({ ref: 'refs/heads/main', repository: { clone_url: `file://${repos.a}` } });
    const post = (sig: string) =>
      fetch(`http://127.0.0.1:${servePort}/hooks/git`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': sig },
        body,
      });
    const bad = await post(`sha256=${createHmac('sha256', 'wrong-secret').update(body).digest('hex')}`);
    assert.equal(bad.status, 401);
    await sleep(1500);
    assert.deepEqual(await lastIds(), since, 'a refused hook queues nothing');
    const good = await post(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`);
    assert.equal(good.status, 202);
    const done = await settled({ a: 'COMMIT' }, since);
    assert.equal(done.a!.kind, 'build');
    await sleep(1000);
    const now = await lastIds();
    assert.equal(now.b, since.b, 'b untouched');
    assert.equal(now.c, since.c, 'c untouched');
    assert.equal(await answers(`${ref('apps/a')}@${done.a!.digest}`), ANSWER);
  });

  test('a new builder rebuilds the images that use it (BUILDER)', async () => {
    const since = await lastIds();
    const b = await read(ref('stack/builder:latest'));
    const next = setConfig(b, (cfg) => ({
      ...cfg,
      config: { ...cfg.config, Labels: { ...cfg.config?.Labels, 'org.example.rev': '2' } },
    }));
    await push(next, ref('stack/builder:latest'));
    await settled({ a: 'BUILDER', b: 'BUILDER' }, since);
    await sleep(1000);
    assert.equal((await lastIds()).c, since.c, 'c (default builder) untouched');
  });

  test('with hooks off, polling catches a run image, a commit and a builder', async () => {
    assert.equal(await serve!.stop(), 0, 'graceful shutdown');
    const since = await lastIds();
    serve = startServe(await freePort(), ['--poll-interval', '1000']);
    await until('second serve', async () =>
      (await fetch(`http://127.0.0.1:${serve!.port}/healthz`)).ok ? true : undefined,
    );
    const run = await read(ref('stack/run:latest'));
    await push(
      appendLayers(run, await tarLayer({ 'etc/kiln-fleet-patch-2': 'x\n' })),
      ref('stack/run:latest'),
    );
    commit(repos.b!, 'VERSION', '3\n');
    const b = await read(ref('stack/builder:latest'));
    await push(
      setConfig(b, (cfg) => ({
        ...cfg,
        config: { ...cfg.config, Labels: { ...cfg.config?.Labels, 'org.example.rev': '3' } },
      })),
      ref('stack/builder:latest'),
    );
    const done = await settled({ a: 'BUILDER,STACK', b: 'BUILDER,COMMIT,STACK', c: 'STACK' }, since);
    assert.equal(done.c!.kind, 'rebase');
    assert.equal(await answers(`${ref('apps/b')}@${done.b!.digest}`), ANSWER);
  });
});
