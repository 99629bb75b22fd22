// A build's host identity end to end: its buildpacks run as a host uid leased from kiln's range
// (not 1000, no account), which a uid-1000 host process cannot signal; concurrent builds get
// different uids; and the image is the same whatever host ids the build ran as.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { kilnIdRange } from '../../src/sandbox/identity.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

const root = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));

/** Host pid and uid of the process whose command line contains `marker` (polls up to 10 s). */
async function findProcess(marker: string): Promise<{ pid: number; uid: number }> {
  for (let i = 0; i < 500; i++) {
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
      if (!cmd.startsWith('sleep\0') || !cmd.includes(marker)) continue;
      const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      if (Number.isInteger(uid)) return { pid: Number(name), uid };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no process with ${marker} appeared`);
}

describe('build identity', { skip: !root && 'needs root (leases host ids)' }, () => {
  let w: E2E;
  before(async () => {
    w = await makeE2E();
  });
  after(() => w?.cleanup());

  /** A buildpack whose build sleeps `seconds` with a unique marker on its command line. */
  async function sleeperBuildpack(name: string, marker: string): Promise<string> {
    const dir = path.join(w.root, 'bps', name);
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await writeFile(
      path.join(dir, 'buildpack.toml'),
      `api = "0.10"\n[buildpack]\nid = "test/${name}"\nversion = "0.0.1"\n`,
    );
    await writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
    await writeFile(
      path.join(dir, 'bin', 'build'),
      `#!/usr/bin/env bash\nset -eu\nsleep ${marker}\necho "uid inside: $(id -u):$(id -g)"\n`,
      { mode: 0o755 },
    );
    for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
    for (const d of [path.join(w.root, 'bps'), dir, path.join(dir, 'bin')]) await chmod(d, 0o755);
    return dir;
  }

  test('buildpacks run as leased host uids that uid 1000 cannot signal; concurrent builds get different ones', async () => {
    const range = await kilnIdRange();
    const passwd = (await readFile('/etc/passwd', 'utf8')).split('\n').map((l) => Number(l.split(':')[2]));
    const markers = [1, 2].map(() => `1.5${randomBytes(3).readUIntBE(0, 3)}`);
    const app = await w.app('identity', 'who am i');
    const builds = await Promise.all(
      markers.map(async (m, i) => {
        const bp = await sleeperBuildpack(`sleeper${i}`, m);
        return { bp, marker: m };
      }),
    ).then((bps) =>
      bps.map(({ bp, marker }, i) => ({
        marker,
        done: w.build(app, `e2e-identity-${i}`, { buildpacks: ['e2e/runtime', bp, 'e2e/process@0.0.1'] }),
      })),
    );
    const seen = await Promise.all(builds.map((b) => findProcess(b.marker)));
    for (const p of seen) {
      assert.notEqual(p.uid, 1000);
      assert.ok(
        p.uid >= range.uidStart && p.uid < range.uidStart + range.count,
        `${p.uid} is in kiln's range`,
      );
      assert.ok(!passwd.includes(p.uid), `${p.uid} is no account`);
      const kill = spawnSync(
        'setpriv',
        ['--reuid=1000', '--regid=1000', '--clear-groups', 'kill', '-0', String(p.pid)],
        {
          encoding: 'utf8',
        },
      );
      assert.notEqual(kill.status, 0, 'uid 1000 signalled a sandboxed buildpack');
      assert.match(kill.stderr, /Operation not permitted/);
    }
    assert.notEqual(seen[0]!.uid, seen[1]!.uid, 'concurrent builds share a host uid');
    for (const b of builds) {
      const out = await b.done;
      assert.match(out.log.lines.join('\n'), /uid inside: 1000:1000/);
    }
  });

  /** A buildpack with the given detect and build scripts (bash bodies). */
  async function scriptedBuildpack(name: string, detect: string, build: string): Promise<string> {
    const dir = path.join(w.root, 'bps', name);
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await writeFile(
      path.join(dir, 'buildpack.toml'),
      `api = "0.10"\n[buildpack]\nid = "test/${name}"\nversion = "0.0.1"\n`,
    );
    await writeFile(path.join(dir, 'bin', 'detect'), `#!/usr/bin/env bash\n${detect}\nexit 0\n`);
    await writeFile(path.join(dir, 'bin', 'build'), `#!/usr/bin/env bash\n${build}\n`);
    for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
    for (const d of [path.join(w.root, 'bps'), dir, path.join(dir, 'bin')]) await chmod(d, 0o755);
    return dir;
  }

  test('a link bin/detect plants as a buildpack layers dir is refused before restore writes through it', async () => {
    const bp = await scriptedBuildpack('planter', 'ln -s /etc /layers/test_planter', 'echo built');
    const app = await w.app('planter', 'detect plants');
    await assert.rejects(
      w.build(app, 'e2e-planter', { buildpacks: ['e2e/runtime', bp, 'e2e/process@0.0.1'] }),
      (e: unknown) => {
        assert.match(String(e), /layers\/test_planter is a symlink: kiln writes below it/);
        assert.equal(exitCodeOf(e), 42, 'the restore phase exit code');
        return true;
      },
    );
  });

  test("a buildpack that swaps its layers dir for a link to another buildpack's is refused, naming it", async () => {
    const bp = await scriptedBuildpack(
      'swapper',
      '',
      'set -eu; mkdir -p /layers/e2e_runtime/stolen; printf "[types]\\n" > /layers/e2e_runtime/stolen.toml; rmdir "$1" 2>/dev/null || mv "$1" "$1.old"; ln -s /layers/e2e_runtime "$1"',
    );
    const app = await w.app('swapper', 'swaps its dir');
    await assert.rejects(
      w.build(app, 'e2e-swapper', { buildpacks: ['e2e/runtime', bp, 'e2e/process@0.0.1'] }),
      /layers\/test_swapper is a symlink: kiln writes below it/,
    );
  });

  test('kiln run runs the app as a leased identity and releases it', async () => {
    const app = await w.app('run-identity', 'run me');
    const layout = path.join(w.root, 'run-layout');
    await w.build(app, 'e2e-run-identity', { dest: `oci:${layout}:app` });
    await chmod(w.root, 0o755);
    const r = spawnSync(path.join(here, '..', '..', 'bin', 'kiln'), ['run', `oci:${layout}:app`], {
      encoding: 'utf8',
      env: { ...process.env, KILN_HOME: path.join(w.root, 'kiln-home'), NO_COLOR: '1', CI: '1' },
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    // The image's user is 1000 inside, whatever host id it ran as.
    assert.match(r.stdout, /GREETING=hi uid=1000 message=run me/);
    const leases = await readdir('/run/kiln/id-leases').catch(() => [] as string[]);
    const mine = await Promise.all(
      leases.map((f) => readFile(path.join('/run/kiln/id-leases', f), 'utf8').catch(() => '')),
    );
    assert.ok(!mine.some((t) => t.includes(`"pid":${r.pid}`)), 'the run released its lease');
  });

  test('the image is byte-identical whatever host ids the build ran as', async () => {
    const app = await w.app('same-image', 'same bytes');
    // Legacy identity (the build user is host 1000) against a leased one; separate caches, so
    // nothing is reused between them.
    const legacy = await w.build(app, 'e2e-same-legacy', { hostIds: { uid: 1000, gid: 1000 } });
    const leased = await w.build(app, 'e2e-same-leased');
    assert.equal(leased.digest, legacy.digest);
    // A rebuild with another slot's ids (as a concurrent build would get) reuses nothing wrongly:
    // the cache's kept layer dirs belong to the first slot and are re-extracted, same image.
    const range = await kilnIdRange();
    const other = { uid: range.uidStart + 4242, gid: range.gidStart + 4242 };
    const again = await w.build(app, 'e2e-same-leased', { hostIds: other });
    assert.equal(again.digest, legacy.digest);
    assert.equal(
      again.log.lines.some((l) => l.startsWith('ERROR')),
      false,
    );
  });

  test('a rebuild under another slot can rewrite the cached layers a build under the first slot left', async () => {
    // Concurrent builds take other slots: the next build of an app may run as other host ids than
    // the one that left its cached layers. Its buildpacks must still own (and so replace) them,
    // however deep (kept cache dirs come back by rename, with the first slot's owners).
    const dir = path.join(w.root, 'bps', 'nested-cache');
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await writeFile(
      path.join(dir, 'buildpack.toml'),
      'api = "0.10"\n[buildpack]\nid = "test/nested-cache"\nversion = "0.0.1"\n',
    );
    await writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
    await writeFile(
      path.join(dir, 'bin', 'build'),
      [
        '#!/usr/bin/env bash',
        'set -eu',
        'want=$(cat deps.txt)',
        'if ! grep -q "want = "$want"" "$1/deps.toml" 2>/dev/null; then',
        '  echo "nested: installing $want"',
        '  rm -rf "$1/deps"',
        '  mkdir -p "$1/deps/pkg/bin"',
        '  echo "$want" > "$1/deps/pkg/bin/tool"',
        'fi',
        'cat > "$1/deps.toml" <<TOML',
        '[types]',
        'cache = true',
        '[metadata]',
        'want = "$want"',
        'TOML',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    for (const d of [path.join(w.root, 'bps'), dir, path.join(dir, 'bin')]) await chmod(d, 0o755);
    for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
    const range = await kilnIdRange();
    const first = { uid: range.uidStart + 4301, gid: range.gidStart + 4301 };
    const second = { uid: range.uidStart + 4302, gid: range.gidStart + 4302 };
    const app = await w.app('slot-change', 'slots', 'left-pad@1');
    const bps = ['e2e/runtime', dir, 'e2e/process@0.0.1'];
    const a = await w.build(app, 'e2e-slot-change', { hostIds: first, buildpacks: bps });
    assert.equal(a.log.lines.filter((l) => l.startsWith('ERROR')).join('\n'), '');
    // A dependency change makes the buildpack remove and re-make its restored cache layer.
    await writeFile(path.join(app, 'deps.txt'), 'right-pad@2');
    const b = await w.build(app, 'e2e-slot-change', { hostIds: second, buildpacks: bps });
    assert.equal(b.log.lines.filter((l) => l.startsWith('ERROR')).join('\n'), '');
    assert.ok(
      b.log.lines.some((l) => l.includes('nested: installing right-pad@2')),
      b.log.lines.join('\n'),
    );
  });
});
