// A fleet image that declares a signing key: every image `kiln fleet serve` publishes for it (the
// first build, reason CONFIG, and a rebase onto a new run image, reason STACK) is signed and
// carries provenance and SBOM referrers, so `kiln verify --key PUB` with a policy that requires
// them passes against the real registry; and the key's passphrase (given to serve in its
// environment only) and the key itself appear nowhere in the fleet's state file, logs or history.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { appendLayers } from '../../src/oci/mutate.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { Transports } from '../../src/transport/transports.ts';
import { tarLayer } from '../helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
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

const PASSPHRASE = `fleet-pass-${randomBytes(12).toString('hex')}`;
const ANSWER = 'Hello from kiln: static-binary\n';

let work: string;
let db: string;
let registry: RegistryHandle;
let serve: { child: ChildProcess; output: () => string; stop: () => Promise<void> } | undefined;
let app: Awaited<ReturnType<typeof copySample>> | undefined;

before(async () => {
  await prepareHome();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-fleet-sign-'));
  db = path.join(work, 'state.db');
  registry = await startRegistry();
  await mkdir(path.join(work, 'keys'));
  const gen = await kiln(['key', 'generate', '--output-key-prefix', path.join(work, 'keys', 'release')], {
    env: { KILN_PASSWORD: PASSPHRASE },
  });
  assert.equal(gen.code, 0, gen.stderr);
  await kilnOk(['image', 'copy', 'local:kiln/stacks/bookworm/run', `${registry.host}/stack/run:latest`]);
  app = await copySample('static-binary');
  execFileSync('./build.sh', { cwd: app.dir });
  if ((await kiln(['image', 'inspect', 'local:kiln/builders/bookworm:latest'])).code !== 0)
    await kilnOk(['build', `kiln-e2e-fleet-sign-${randomBytes(3).toString('hex')}`, '--path', app.dir]);
  await kilnOk([
    'image',
    'copy',
    'local:kiln/builders/bookworm:latest',
    `${registry.host}/stack/builder:latest`,
  ]);
  await writeFile(path.join(work, 'policy.toml'), '[provenance]\nrequired = true\n[sbom]\nrequired = true\n');
  await writeFile(
    path.join(work, 'fleet.toml'),
    `schema-version = 1
poll-interval = "1h"
[run-images.base]
image = "${registry.host}/stack/run:latest"
[builders.default]
image = "${registry.host}/stack/builder:latest"
[images.app]
tag = "${registry.host}/apps/app:latest"
builder = "default"
run-image = "base"
source = { path = "${app.dir}" }
signing-key = "${path.join(work, 'keys', 'release.key')}"
`,
  );
});

after(async () => {
  await serve?.stop();
  await registry?.stop();
  await app?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

function startServe(port: number, withPassphrase = true): NonNullable<typeof serve> {
  const env: Record<string, string | undefined> = { ...process.env, KILN_HOME, NO_COLOR: '1', CI: '1' };
  delete env.KILN_PASSWORD;
  delete env.COSIGN_PASSWORD;
  if (withPassphrase) env.KILN_PASSWORD = PASSPHRASE;
  const child = spawn(
    path.join(ROOT, 'bin', 'kiln'),
    ['fleet', 'serve', '--listen', `127.0.0.1:${port}`, '--database', db, '--poll-interval', '500'],
    {
      // The passphrase reaches serve through its environment, as docs/fleet.md says.
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const collect = (c: Buffer) => {
    out += c.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

interface Hist {
  id: number;
  kind: string;
  reasons: string[];
  state: string;
  digest?: string;
  error?: string;
}

async function history(): Promise<Hist[]> {
  return JSON.parse((await kilnOk(['fleet', 'history', 'app', '--json', '--database', db])).stdout);
}

/** The newest job newer than `since`, once it succeeded (failing fast when it failed). */
async function succeeded(since: number, ms = 90_000): Promise<Hist> {
  const end = Date.now() + ms;
  for (;;) {
    const j = (await history()).find((h) => h.id > since);
    if (j?.state === 'succeeded') return j;
    if (j && (j.state === 'failed' || j.error !== undefined))
      throw new Error(`job ${j.id} ${j.state}: ${j.error}\n${serve?.output().slice(-3000)}`);
    if (Date.now() > end) throw new Error(`no job after ${since} succeeded\n${serve?.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function verify(digest: string): Promise<string> {
  const ref = `${registry.host}/apps/app@${digest}`;
  const r = await kiln([
    'verify',
    ref,
    '--key',
    path.join(work, 'keys', 'release.pub'),
    '--policy',
    path.join(work, 'policy.toml'),
  ]);
  assert.equal(r.code, 0, `kiln verify ${ref}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /Verified /);
  return r.stdout;
}

test('fleet builds and rebases are signed and attested; the key and passphrase stay out of the fleet', {
  timeout: 300_000,
}, async () => {
  await kilnOk(['fleet', 'apply', path.join(work, 'fleet.toml'), '--database', db]);
  serve = startServe(await freePort());
  const built = await succeeded(0);
  assert.deepEqual([built.kind, built.reasons], ['build', ['CONFIG']]);
  await verify(built.digest!);

  // A new run image (polled): the image is rebased, not rebuilt, and the rebase is signed too.
  const transports = new Transports({ client: new RegistryClient({}), storeDir: path.join(work, 'store') });
  const run = await transports.parse(`${registry.host}/stack/run:latest`).read();
  const patched = appendLayers(run, await tarLayer({ 'etc/kiln-fleet-patch': `patch ${Date.now()}\n` }));
  await transports.parse(`${registry.host}/stack/run:latest`).write(patched);
  const rebased = await succeeded(built.id);
  assert.deepEqual([rebased.kind, rebased.reasons], ['rebase', ['STACK']]);
  assert.notEqual(rebased.digest, built.digest);
  await verify(rebased.digest!);
  // The rebased image is the published tag, and it runs.
  const tagged = await transports.parse(`${registry.host}/apps/app:latest`).read();
  assert.equal(await tagged.digest(), rebased.digest);
  const port = await freePort();
  const served = runKiln([`${registry.host}/apps/app@${rebased.digest}`, '-p', String(port)]);
  try {
    assert.equal(await httpGet(port, 30_000), ANSWER);
  } finally {
    await served.stop();
  }

  // Nothing the fleet keeps holds the passphrase or the key: the state file (with its journal),
  // serve's log, the jobs' logs, history and status.
  const logs = [];
  for (const j of await history())
    logs.push((await kilnOk(['fleet', 'logs', String(j.id), '--database', db])).stdout);
  assert.match(logs.join('\n'), /Rebased .*app layers kept/, 'the logs are real');
  const status = (await kilnOk(['fleet', 'status', '--json', '--database', db])).stdout;
  await serve.stop();
  const serveOutput = serve.output();
  serve = undefined;
  const key = await readFile(path.join(work, 'keys', 'release.key'), 'utf8');
  const keyBody = key.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
  assert.ok(keyBody.length > 0);
  const texts: [string, string][] = [
    ['history', JSON.stringify(await history())],
    ['logs', logs.join('\n')],
    ['status', status],
  ];
  for (const f of await readdir(work))
    if (f.startsWith('state.db')) texts.push([f, (await readFile(path.join(work, f))).toString('latin1')]);
  assert.ok(texts.some(([n]) => n === 'state.db'));
  texts.push(['serve output', serveOutput]);
  for (const [what, text] of texts) {
    assert.ok(!text.includes(PASSPHRASE), `${what} holds the passphrase`);
    for (const line of keyBody) assert.ok(!text.includes(line), `${what} holds the private key`);
  }
});

test('without a passphrase in its environment, serve fails the job naming the key and publishes nothing', {
  timeout: 120_000,
}, async () => {
  const before = (await history())[0]!;
  const tag = `${registry.host}/apps/app:latest`;
  const client = new RegistryClient({});
  const transports = new Transports({ client, storeDir: path.join(work, 'store') });
  const published = await (await transports.parse(tag).read()).digest();
  serve = startServe(await freePort(), false);
  await kilnOk(['fleet', 'rebuild', 'app', '--database', db]);
  const end = Date.now() + 60_000;
  let failed: Hist | undefined;
  while (failed === undefined) {
    const j = (await history()).find((h) => h.id > before.id);
    if (j?.error !== undefined) failed = j;
    else if (Date.now() > end) throw new Error(`no failed job\n${serve.output().slice(-3000)}`);
    else await new Promise((r) => setTimeout(r, 300));
  }
  assert.deepEqual(failed.reasons, ['TRIGGER']);
  assert.match(failed.error!, /images\.app\.signing-key .*release\.key is encrypted: set KILN_PASSWORD/);
  assert.equal(await (await transports.parse(tag).read()).digest(), published, 'nothing published');
  await serve.stop();
  serve = undefined;
});
