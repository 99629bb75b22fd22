// `kiln stack` end to end through the CLI: create --locked into a layout, the no-op re-run,
// stale and missing locks, and the refusals (tampered .deb, bad InRelease signature, a package
// that cannot be resolved) that must leave nothing behind.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Layout } from '../../src/layout/layout.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import { readLock } from '../../src/stack/lock.ts';
import { sbomOfRemoteImage } from '../../src/stack/sbom.ts';
import { runMain } from '../helpers/cli.ts';
import { startRegistry } from '../helpers/registry.ts';
import { ensureTestStack, TEST_STACK_FILE, type TestStack, testCacheDir } from '../helpers/stack.ts';

const FIXTURES = fileURLToPath(new URL('../../src/debian/testdata/', import.meta.url));

let work = '';
let stack: TestStack;
let server: Server;
let mirror = '';
/** Which package the fake mirror corrupts (by name), and every .deb it served. */
let tamper = '';
/** Which package the fake mirror no longer has. */
let gone = '';
const served: string[] = [];

/** The shared test cache (XDG_CACHE_HOME/kiln), so the .debs are not downloaded again. */
const SHARED_CACHE = { KILN_HOME: '', XDG_CACHE_HOME: path.dirname(testCacheDir()) };

async function kiln(args: string[], env: Record<string, string> = {}) {
  const r = await runMain(args, { HOME: work, KILN_HOME: path.join(work, 'kiln'), ...env });
  return { code: r.code, stdout: r.out, stderr: r.err };
}

before(async () => {
  stack = await ensureTestStack({ roles: ['run'] });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-stack-cli-'));
  // A mirror on loopback that serves the locked .debs from the shared cache (optionally with
  // one byte flipped) and a tampered InRelease for the security suite.
  const byFile = new Map(stack.lock.run.packages.map((p) => [p.filename, p]));
  const debs = path.join(testCacheDir(), 'debs');
  server = createServer(async (req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    try {
      if (url.endsWith('/InRelease')) {
        const text = await readFile(path.join(FIXTURES, 'bookworm-security_InRelease'), 'utf8');
        res.end(text.replace(/^Origin: Debian$/m, 'Origin: Evil'));
        return;
      }
      const p = byFile.get(url.replace(/^\/+/, ''));
      if (!p || p.name === gone) {
        res.statusCode = 404;
        res.end();
        return;
      }
      served.push(p.name);
      const data = await readFile(path.join(debs, `${p.sha256}.deb`));
      if (p.name === tamper) data[data.length - 100]! ^= 0x55;
      res.end(data);
    } catch {
      res.statusCode = 500;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('kiln stack', () => {
  test('create --locked writes the run image, its SBOM files and referrers; a re-run is a no-op', async () => {
    const out = path.join(work, 'out');
    const r = await kiln(
      ['stack', 'create', '--locked', '--lock', stack.lockFile, '--only', 'run', '--output', `oci:${out}`],
      SHARED_CACHE,
    );
    assert.equal(r.code, 0, r.stderr);
    const expected = await (await Layout.open(stack.layoutDir)).resolve('run');
    assert.match(r.stdout, new RegExp(`^run\\trun\\t${expected.digest}$`, 'm'));
    // `--only run` makes every run-image flavour: the default and `shell`.
    assert.deepEqual((await readdir(path.join(out, 'sbom'))).sort(), [
      'run-shell.sbom.cdx.json',
      'run-shell.sbom.spdx.json',
      'run.sbom.cdx.json',
      'run.sbom.spdx.json',
    ]);
    const again = await kiln([
      'stack',
      'create',
      '--locked',
      '--lock',
      stack.lockFile,
      '--only',
      'run',
      '--output',
      `oci:${out}`,
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /up to date/);
    assert.match(again.stdout, new RegExp(expected.digest));
    const inspect = await kiln(['stack', 'inspect', '--output', `oci:${out}`, '--json']);
    const rows = JSON.parse(inspect.stdout) as {
      role: string;
      digest?: string;
      missing?: boolean;
      packages?: { name: string; version: string }[];
    }[];
    const run = rows.find((x) => x.role === 'run')!;
    assert.equal(run.digest, expected.digest);
    // The packages shown are the locked ones (read from the attached SBOM).
    assert.deepEqual(
      run.packages!.map((p) => `${p.name}=${p.version}`).sort(),
      stack.lock.run.packages.map((p) => `${p.name}=${p.version}`).sort(),
    );
    assert.equal(rows.find((x) => x.role === 'build')!.missing, true);
    const human = await kiln(['stack', 'inspect', '--output', `oci:${out}`]);
    assert.match(human.stdout, new RegExp(`packages ${stack.lock.run.packages.length}: `));
    // Inspecting a directory that is not a layout is a one-line error and creates nothing.
    const none = path.join(work, 'not-a-layout');
    const bad = await kiln(['stack', 'inspect', '--output', `oci:${none}`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not an OCI image layout/);
    await assert.rejects(readdir(none), /ENOENT/);
  });

  test('--publish pushes the image and its SBOM referrers to a registry', async () => {
    const reg = await startRegistry();
    try {
      const r = await kiln(
        [
          '--insecure-registry',
          reg.host,
          'stack',
          'create',
          '--locked',
          '--only',
          'run',
          '--publish',
          `${reg.host}/kiln/bookworm`,
        ],
        SHARED_CACHE,
      );
      assert.equal(r.code, 0, r.stderr);
      const expected = (await (await Layout.open(stack.layoutDir)).resolve('run')).digest;
      const client = new RegistryClient({ insecure: [reg.host] });
      const repo = client.repository(parseReference(`${reg.host}/kiln/bookworm/run:latest`));
      const got = await repo.getManifest('latest');
      assert.equal(got.digest, expected);
      const refs = await repo.referrers(expected);
      assert.deepEqual(refs.manifests.map((m) => m.artifactType).sort(), [
        'application/spdx+json',
        'application/vnd.cyclonedx+json',
      ]);
      const cdx = await sbomOfRemoteImage(repo, expected, CYCLONEDX_MEDIA_TYPE);
      assert.ok(cdx, 'the CycloneDX SBOM is a referrer of the pushed image');
      assert.deepEqual(
        (cdx.components as { name: string }[]).map((c) => c.name).sort(),
        stack.lock.run.packages.map((p) => p.name).sort(),
      );
    } finally {
      await reg.stop();
    }
  });

  test('--locked refuses a missing or stale lock, naming the file', async () => {
    const dir = path.join(work, 'stale');
    await mkdir(dir);
    const cfg = path.join(dir, 'stack.toml');
    await copyFile(TEST_STACK_FILE, cfg);
    const missing = await kiln([
      'stack',
      'create',
      '--locked',
      '--config',
      cfg,
      '--output',
      `oci:${dir}/out`,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--locked: no lock file .*stale\/stack\.lock/);
    await copyFile(stack.lockFile, path.join(dir, 'stack.lock'));
    await writeFile(cfg, (await readFile(cfg, 'utf8')).replace('"zlib1g",', '"zlib1g",\n  "libzstd1",'));
    const stale = await kiln(['stack', 'create', '--locked', '--config', cfg, '--output', `oci:${dir}/out`]);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /stack\.lock is stale/);
    assert.equal((await readLock(path.join(dir, 'stack.lock')))!.inputs, stack.lock.inputs);
  });

  test('a tampered .deb is refused naming the package; nothing is written, cached or published', async () => {
    tamper = 'tzdata';
    const out = path.join(work, 'tampered');
    const home = path.join(work, 'fresh-home');
    const r = await kiln(
      [
        'stack',
        'create',
        '--locked',
        '--only',
        'run',
        '--output',
        `oci:${out}`,
        '--mirror',
        mirror,
        '--security-mirror',
        mirror,
      ],
      { KILN_HOME: home },
    );
    // The same refusal with --publish: nothing reaches the registry.
    const reg = await startRegistry();
    let published: string[];
    let pub: Awaited<ReturnType<typeof kiln>>;
    try {
      pub = await kiln(
        [
          '--insecure-registry',
          reg.host,
          'stack',
          'create',
          '--locked',
          '--only',
          'run',
          '--publish',
          `${reg.host}/kiln/tampered`,
          '--mirror',
          mirror,
          '--security-mirror',
          mirror,
        ],
        { KILN_HOME: path.join(work, 'fresh-home-publish') },
      );
      const client = new RegistryClient({ insecure: [reg.host] });
      published = await client.repository(parseReference(`${reg.host}/kiln/tampered/run:latest`)).listTags();
    } finally {
      await reg.stop();
    }
    tamper = '';
    assert.equal(pub.code, 1, pub.stderr);
    assert.match(pub.stderr, /package tzdata .*: .*sha256 mismatch/);
    assert.deepEqual(published, []);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /package tzdata .*: .*sha256 mismatch/);
    assert.ok(served.includes('tzdata'));
    const cached = await readdir(path.join(home, 'cache', 'debs'));
    const tz = stack.lock.run.packages.find((p) => p.name === 'tzdata')!;
    assert.equal(cached.includes(`${tz.sha256}.deb`), false);
    assert.equal(
      cached.some((n) => n.includes('.tmp-')),
      false,
    );
    const manifests = JSON.parse(
      await readFile(path.join(out, 'index.json'), 'utf8').catch(() => '{"manifests":[]}'),
    );
    assert.deepEqual(manifests.manifests, []);
  });

  test('a locked package the mirror no longer has gets a message that says to update the lock', async () => {
    gone = 'netbase';
    const home = path.join(work, 'gone-home');
    const r = await kiln(
      [
        'stack',
        'create',
        '--locked',
        '--lock',
        stack.lockFile,
        '--only',
        'run',
        '--output',
        `oci:${path.join(work, 'gone')}`,
        '--mirror',
        mirror,
        '--security-mirror',
        mirror,
      ],
      { KILN_HOME: home },
    );
    gone = '';
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /package netbase \S+ of the lock is no longer on the mirror \(http:\/\/127\.0\.0\.1:\d+\/pool\/\S+\): run kiln stack update/,
    );
  });

  test('an InRelease whose signature does not check out is refused before anything is resolved', async () => {
    const dir = path.join(work, 'badsig');
    const r = await kiln([
      'stack',
      'update',
      '--lock',
      path.join(dir, 'stack.lock'),
      '--mirror',
      mirror,
      '--security-mirror',
      mirror,
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /InRelease http:\/\/127\.0\.0\.1:\d+\/dists\/bookworm[-a-z]*\/InRelease: no valid signature by a key in/,
    );
    await assert.rejects(readFile(path.join(dir, 'stack.lock')), /ENOENT/);
  });

  test('update prints what changed against the current lock (dry run leaves it alone)', async () => {
    const dir = await mkdtemp(path.join(work, 'update-'));
    const lockFile = path.join(dir, 'stack.lock');
    const text = await readFile(stack.lockFile, 'utf8');
    const tz = stack.lock.run.packages.find((p) => p.name === 'tzdata')!;
    // Pretend the lock was made before the current tzdata and before netbase was wanted.
    const edited = text
      .replace(`version = "${tz.version}"`, 'version = "2020a-0+deb10u1"')
      .replace(/\[\[run\.packages\]\]\nname = "netbase"\n(?:[a-z0-9]+ = [^\n]+\n)+/, '');
    assert.notEqual(edited, text);
    await writeFile(lockFile, edited);
    const r = await kiln(['stack', 'update', '--dry-run', '--lock', lockFile], SHARED_CACHE);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.stdout.split('\n').includes(`run\tupgraded\t↑ tzdata 2020a-0+deb10u1 -> ${tz.version}`),
      r.stdout,
    );
    assert.match(r.stdout, /^run\tadded\t\+ netbase /m);
    assert.equal(await readFile(lockFile, 'utf8'), edited);
  });

  test('a package that does not exist is refused by name', async () => {
    const dir = await mkdtemp(path.join(work, 'unsat-'));
    const cfg = path.join(dir, 'stack.toml');
    await writeFile(
      cfg,
      (await readFile(TEST_STACK_FILE, 'utf8')).replace('"zlib1g",', '"zlib1g",\n  "kiln-no-such-package",'),
    );
    const r = await kiln(['stack', 'update', '--config', cfg], SHARED_CACHE);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /cannot resolve package kiln-no-such-package: no such package in suites bookworm, bookworm-updates, bookworm-security/,
    );
    await assert.rejects(readFile(path.join(dir, 'stack.lock')), /ENOENT/);
  });
});
