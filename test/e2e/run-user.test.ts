import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import { DEFAULT_EPOCH } from '../../src/oci/memory.ts';
import { readStackConfig } from '../../src/stack/config.ts';
import { createStack } from '../../src/stack/create.ts';
import { readLock } from '../../src/stack/lock.ts';
import type { Podman } from '../helpers/podman.ts';
import { TEST_STACK_FILE, TEST_STACK_LOCK, testAccess } from '../helpers/stack.ts';
import { copySample, kiln, kilnOk, podmanOnKilnStore, storedImage } from './samples-harness.ts';

// Separate build and run users, end to end: an app built with the default builder runs as the
// stack's run user (1001:1000), not as the build user (1000:1000) that owns its layers; it reads and
// executes what buildpacks wrote (even files left 0600) but cannot rewrite its layers or its own
// directory. Rebase keeps the User an image was built with (as the reference lifecycle does), from
// a run image whose user is the build user onto one with a run user of its own, and back.

const RUN_USER = '1001:1000';
const BUILD_USER = '1000:1000';

// What the app can do as the user it runs as (one JSON line; error codes for what fails).
const PROBE = `const fs = require('fs');
const path = require('path');
const attempt = (f) => { try { f(); return 'ok'; } catch (e) { return e.code || String(e); } };
const nodeDir = path.dirname(process.execPath);
console.log('PROBE ' + JSON.stringify({
  uid: process.getuid(),
  gid: process.getgid(),
  node: process.execPath,
  readOwnerOnly: attempt(() => fs.readFileSync(path.join(__dirname, 'owner-only.txt'))),
  readSource: attempt(() => fs.readFileSync(path.join(__dirname, 'server.js'))),
  rewriteNode: attempt(() => fs.appendFileSync(process.execPath, '')),
  plantInLayer: attempt(() => fs.writeFileSync(path.join(nodeDir, 'planted'), 'x')),
  rewriteConfig: attempt(() => fs.appendFileSync('/layers/config/metadata.toml', '')),
  rewriteLauncher: attempt(() => fs.appendFileSync('/cnb/lifecycle/launcher', '')),
  rewriteSource: attempt(() => fs.appendFileSync(path.join(__dirname, 'server.js'), '')),
  plantInApp: attempt(() => fs.writeFileSync(path.join(__dirname, 'planted'), 'x')),
  home: process.env.HOME,
  writeHome: attempt(() => fs.writeFileSync(path.join(process.env.HOME || '/nonexistent', 'x'), 'x')),
  writeTmp: attempt(() => fs.writeFileSync('/tmp/x', 'x')),
}));
`;

interface Probe {
  uid: number;
  gid: number;
  node: string;
  readOwnerOnly: string;
  readSource: string;
  rewriteNode: string;
  plantInLayer: string;
  rewriteConfig: string;
  rewriteLauncher: string;
  rewriteSource: string;
  plantInApp: string;
  home: string;
  writeHome: string;
  writeTmp: string;
}

function probeOf(out: string): Probe {
  const line = out.split('\n').find((l) => l.startsWith('PROBE '));
  assert.ok(line, `the probe printed nothing:\n${out}`);
  return JSON.parse(line.slice('PROBE '.length)) as Probe;
}

let podman: Podman;
let work = '';
/** The e2e store as podman sees it (a path without dots). */
let podmanStore = '';
/** An OCI layout with the run image as kiln's stacks made it before the run user: User 1000:1000. */
let oldRunLayout = '';

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
  work = await mkdtemp(path.join(tmpdir(), 'kiln-run-user-'));
  await chmod(work, 0o755);
  const config = await readStackConfig(TEST_STACK_FILE);
  const lock = await readLock(TEST_STACK_LOCK);
  assert.ok(lock, 'the committed stack.lock');
  const { 'run-user': _runUser, ...withoutRunUser } = config;
  oldRunLayout = path.join(work, 'old-run');
  await createStack(withoutRunUser, {
    lock,
    access: await testAccess(config),
    layout: await Layout.init(oldRunLayout),
    tags: { run: 'run', build: 'build' },
    epoch: DEFAULT_EPOCH,
    roles: ['run'],
  });
});

after(async () => {
  await podman?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

/** buildProbeApp builds the node-procfile sample plus a `probe` process and an owner-only file. */
async function buildProbeApp(image: string, extra: readonly string[] = []): Promise<void> {
  const { dir, cleanup } = await copySample('node-procfile');
  try {
    await writeFile(path.join(dir, 'probe.js'), PROBE);
    await writeFile(
      path.join(dir, 'Procfile'),
      `${await readFile(path.join(dir, 'Procfile'), 'utf8')}probe: node probe.js\n`,
    );
    // A file the checkout left readable by its owner only (umask 077): the run user still reads it.
    await writeFile(path.join(dir, 'owner-only.txt'), 'x');
    await chmod(path.join(dir, 'owner-only.txt'), 0o600);
    await kilnOk(['build', image, '--path', dir, ...extra]);
  } finally {
    await cleanup();
  }
}

async function podmanProbe(image: string): Promise<Probe> {
  const r = await podman.run(`oci:${podmanStore}:docker.io/library/${image}:latest`, [], {
    entrypoint: '/cnb/process/probe',
    timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return probeOf(r.stdout);
}

async function kilnProbe(image: string): Promise<Probe> {
  const r = await kiln(['run', image, '--process', 'probe'], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return probeOf(r.stdout + r.stderr);
}

/**
 * The app ran as the run user and could read, but not rewrite, what the build user wrote. Under
 * podman the image's root is writable by root, so only permissions refuse (EACCES); `kiln run`
 * also mounts it read-only (EROFS), a second wall.
 */
function assertConfined(p: Probe, how: string, refused: readonly string[] = ['EACCES']): void {
  assert.deepEqual([p.uid, p.gid], [1001, 1000], `${how}: runs as the run user`);
  assert.match(p.node, /^\/layers\//, `${how}: node comes from a buildpack layer`);
  assert.equal(p.readOwnerOnly, 'ok', `${how}: reads a file the source left 0600`);
  assert.equal(p.readSource, 'ok');
  for (const k of [
    'rewriteNode',
    'plantInLayer',
    'rewriteConfig',
    'rewriteLauncher',
    'rewriteSource',
    'plantInApp',
  ] as const)
    assert.ok(refused.includes(p[k]), `${how}: ${k} is refused (got ${p[k]})`);
  assert.equal(p.writeTmp, 'ok');
}

describe('separate build and run users (default builder)', () => {
  test('the app runs as the run user, with podman and kiln run, and cannot rewrite its layers or directory', async () => {
    const image = 'kiln-e2e-run-user';
    await buildProbeApp(image);
    const cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, RUN_USER);
    assert.equal(cfg.config?.Labels?.['io.kiln.build.user'], BUILD_USER);

    const viaPodman = await podmanProbe(image);
    assertConfined(viaPodman, 'podman');
    assert.equal(viaPodman.home, '/home/cnb');
    assert.equal(viaPodman.writeHome, 'ok', "HOME is the run user's own");
    assertConfined(await kilnProbe(image), 'kiln run', ['EACCES', 'EROFS']);

    const shown = await kilnOk(['inspect', image]);
    assert.match(shown.stdout, /\nUsers:\n {2}Build: 1000:1000\n {2}Run: 1001:1000\n/);
    const json = JSON.parse((await kilnOk(['inspect', image, '--output', 'json'])).stdout);
    assert.deepEqual(json.users, { build: BUILD_USER, run: RUN_USER, sameUid: false });
  });

  test('rebase keeps the User the image was built with: onto a run image with the build user and back', async () => {
    const image = 'kiln-e2e-run-user';
    const oldRun = `oci:${oldRunLayout}:run`;
    const onOld = await kilnOk(['rebase', image, '--run-image', oldRun, '--force']);
    assert.match(
      onOld.stdout + onOld.stderr,
      /keeps running as user 1001:1000 .*run image's user is 1000:1000/,
    );
    let cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, RUN_USER);
    // No passwd entry for 1001 there: HOME falls back to /, everything else works through the group.
    const p = await podmanProbe(image);
    assertConfined(p, 'podman on the old run image');

    const back = await kilnOk(['rebase', image, '--run-image', 'kiln/stacks/bookworm/run', '--force']);
    assert.doesNotMatch(back.stdout + back.stderr, /keeps running as user/);
    cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, RUN_USER);
    assertConfined(await podmanProbe(image), 'podman back on the new run image');
  });

  test('an image built on a run image with the build user keeps it after a rebase onto the new one', async () => {
    const image = 'kiln-e2e-run-user-old';
    await buildProbeApp(image, ['--run-image', `oci:${oldRunLayout}:run`]);
    let cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, BUILD_USER, "export follows the run image's User");
    const r = await kilnOk(['rebase', image, '--run-image', 'kiln/stacks/bookworm/run', '--force']);
    assert.match(
      r.stdout + r.stderr,
      /keeps running as user 1000:1000 .*run image's user is 1001:1000: rebuild/,
    );
    cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, BUILD_USER);
    const p = await podmanProbe(image);
    // As before the split: the build user owns (and can rewrite) its layers; it still runs.
    assert.deepEqual([p.uid, p.gid], [1000, 1000]);
    assert.equal(p.readOwnerOnly, 'ok');
    assert.equal(p.plantInLayer, 'ok');
    const shown = JSON.parse((await kilnOk(['inspect', image, '--output', 'json'])).stdout);
    assert.deepEqual(shown.users, { build: BUILD_USER, run: BUILD_USER, sameUid: true });
  });
});
