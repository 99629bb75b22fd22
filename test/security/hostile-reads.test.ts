// Hostile buildpacks and builders that point kiln (root on the host) at a host file through a
// symlink in what they write or ship: store.toml, a <layer>.toml, launch.toml, an SBOM, an env
// file, another buildpack's store.toml, /cnb/order.toml, /cnb/run.toml, /cnb/build-config/env,
// /cnb/system.toml, an image's /etc/passwd. Real builds (bubblewrap sandbox, uid 1000, network
// none) through the platform orchestration. Each attack runs twice, the link naming a root-only
// canary file with random content and naming a path that does not exist: the build fails (or
// ignores the file) with one line naming the file, the same line both times, and the canary's
// content appears nowhere: not in the error, the log, a label, a layer, the cache or the store.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { resolveUser } from '../../src/cli/commands/run.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import type { TarEntry } from '../../src/layers/tar-writer.ts';
import type { Image } from '../../src/oci/image.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

/** A file only root can read, whose content must never leave it. Also a valid-looking passwd line. */
interface Canary {
  readonly path: string;
  readonly missing: string;
  readonly secret: string;
}

async function makeCanary(dir: string): Promise<Canary> {
  const secret = `KILN-CANARY-${randomBytes(16).toString('hex')}`;
  const file = path.join(dir, 'canary');
  await writeFile(file, `cnb:x:4242:4242:${secret}:/${secret}:/bin/sh\n${secret} = "${secret}"\n`);
  await chmod(file, 0o600);
  return { path: file, missing: path.join(dir, `no-such-${randomBytes(4).toString('hex')}`), secret };
}

/** assertNowhere walks `dir` (gunzipping blobs) and fails if any file holds the secret. */
async function assertNowhere(dir: string, c: Canary): Promise<void> {
  const visit = async (p: string): Promise<void> => {
    if (p === c.path) return;
    const st = await lstat(p);
    if (st.isDirectory()) {
      for (const n of await readdir(p)) await visit(path.join(p, n));
      return;
    }
    if (!st.isFile()) return;
    let b = await readFile(p);
    if (b[0] === 0x1f && b[1] === 0x8b) {
      try {
        b = gunzipSync(b);
      } catch {
        // not gzip after all
      }
    }
    assert.ok(!b.includes(c.secret), `the canary's content is in ${p}`);
  };
  await visit(dir);
}

const link = (p: string, target: string): TarEntry => ({
  path: p,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname: target,
});
const dir = (p: string): TarEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0 });

describe('hostile reads: links out of a buildpack’s or builder’s tree', {
  skip: !asRoot && 'needs root',
}, () => {
  let e: E2E;
  let c: Canary;
  let app: string;
  let n = 0;
  before(async () => {
    e = await makeE2E();
    c = await makeCanary(e.root);
    app = await e.app('hostile-reads', 'hello');
  });
  after(async () => {
    await e?.cleanup();
  });

  /** A bash buildpack whose bin/build is `script` (TARGET replaced by the link target). */
  async function buildpack(id: string, script: string, target: string, toml = ''): Promise<string> {
    const d = path.join(e.root, 'bps', `${id.replace('/', '_')}-${n++}`);
    await mkdir(path.join(d, 'bin'), { recursive: true });
    await writeFile(
      path.join(d, 'buildpack.toml'),
      `api = "0.12"\n[buildpack]\nid = "${id}"\nversion = "0.0.1"\n${toml}`,
    );
    await writeFile(path.join(d, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
    await writeFile(
      path.join(d, 'bin', 'build'),
      `#!/usr/bin/env bash\nset -eu\n${script.replaceAll('TARGET', target)}\n`,
      { mode: 0o755 },
    );
    await chmod(path.join(d, 'bin', 'build'), 0o755);
    await chmod(path.join(d, 'bin', 'detect'), 0o755);
    return d;
  }

  /** Runs a build expected to fail; returns its one-line error and its log. */
  async function failure(over: Parameters<E2E['build']>[2]): Promise<{ message: string; log: string[] }> {
    const image = `hostile/reads-${n++}`;
    const log: string[] = [];
    try {
      const r = await e.build(app, image, over);
      log.push(...r.log.lines);
    } catch (err) {
      assert.ok(err instanceof KilnError, String(err));
      return { message: err.message, log };
    }
    assert.fail(`the build of ${image} was expected to fail`);
  }

  /**
   * twice runs an attack with the link naming the canary, then a missing path: the same one-line
   * error both times, matching `expected`, and the canary's content nowhere.
   */
  async function twice(
    attack: (target: string) => Promise<Parameters<E2E['build']>[2]>,
    expected: RegExp,
  ): Promise<void> {
    const a = await failure(await attack(c.path));
    const b = await failure(await attack(c.missing));
    assert.match(a.message, expected);
    assert.doesNotMatch(a.message, /\n/);
    assert.equal(a.message, b.message, 'the error must not depend on whether the link target exists');
    for (const m of [a.message, b.message]) {
      assert.ok(!m.includes(c.secret));
      assert.ok(!m.includes(c.path) && !m.includes(c.missing), 'the error must not name the link target');
    }
    for (const l of [...a.log, ...b.log]) assert.ok(!l.includes(c.secret), `log line: ${l}`);
    await assertNowhere(e.root, c);
  }

  const one = (id: string, script: string, toml?: string) => async (target: string) => ({
    buildpacks: [await buildpack(id, script, target, toml)],
  });

  test('store.toml linked to a host file is refused at export', () =>
    twice(
      one('hostile/store', 'ln -s TARGET "$1/store.toml"'),
      /layers\/hostile_store\/store\.toml is a symbolic link: expected a regular file inside the layers directory$/,
    ));

  test('a <layer>.toml linked to a host file is refused', () =>
    twice(
      one('hostile/layer', 'mkdir -p "$1/l"; ln -s TARGET "$1/l.toml"'),
      /layers\/hostile_layer\/l\.toml is a symbolic link: expected a regular file/,
    ));

  test('launch.toml linked to a host file is refused', () =>
    twice(
      one('hostile/launch', 'ln -s TARGET "$1/launch.toml"'),
      /layers\/hostile_launch\/launch\.toml is a symbolic link: expected a regular file/,
    ));

  test('an SBOM file linked to a host file is refused', () =>
    twice(
      one(
        'hostile/sbom',
        'ln -s TARGET "$1/launch.sbom.cdx.json"',
        'sbom-formats = ["application/vnd.cyclonedx+json"]\n',
      ),
      /layers\/hostile_sbom\/launch\.sbom\.cdx\.json is a symbolic link: expected a regular file/,
    ));

  test('an env file of a build layer linked to a host file is refused', () =>
    twice(
      one(
        'hostile/env',
        'mkdir -p "$1/l/env"; printf "[types]\\nbuild = true\\n" > "$1/l.toml"; ln -s TARGET "$1/l/env/SECRET"',
      ),
      /layers\/hostile_env\/l\/env\/SECRET is a symbolic link: expected a regular file/,
    ));

  test("a file in another buildpack's layers dir swapped for a link is refused", () =>
    twice(
      async (target) => ({
        buildpacks: [
          await buildpack('hostile/victim', 'printf "[metadata]\\nok = 1\\n" > "$1/store.toml"', target),
          await buildpack(
            'hostile/swapper',
            'rm -f /layers/hostile_victim/store.toml; ln -s TARGET /layers/hostile_victim/store.toml',
            target,
          ),
        ],
      }),
      /layers\/hostile_victim\/store\.toml is a symbolic link: expected a regular file/,
    ));

  test('a store.toml that is not TOML is named without echoing its content', async () => {
    const marker = `NOT-TOML-${randomBytes(8).toString('hex')}`;
    const { message } = await failure(
      await one('hostile/nottoml', `printf '${marker} = = [\\n' > "$1/store.toml"`)(c.path),
    );
    assert.match(message, /layers\/hostile_nottoml\/store\.toml: invalid TOML/);
    assert.doesNotMatch(message, /\n/);
    assert.ok(!message.includes(marker), message);
  });

  /** The e2e builder with extra entries on top (a hostile builder). */
  async function builderWith(entries: TarEntry[]): Promise<Image> {
    const layer = await writeLayer(entries, { store: e.store.blobs });
    return imageFrom({
      config: await e.builder.configFile(),
      layers: [...(await e.builder.layers()), layer],
    });
  }
  const hostileBuilder = (entries: (target: string) => TarEntry[]) => async (target: string) => ({
    builder: { image: await builderWith(entries(target)), name: 'hostile/builder' },
  });

  test("a builder's /cnb/order.toml linked to a host file is refused", () =>
    twice(
      hostileBuilder((t) => [link('cnb/order.toml', t)]),
      /\/cnb\/order\.toml is a symbolic link: expected a regular file inside the builder's root filesystem$/,
    ));

  test("a builder's /cnb/run.toml linked to a host file is refused", () =>
    twice(
      hostileBuilder((t) => [link('cnb/run.toml', t)]),
      /\/cnb\/run\.toml is a symbolic link: expected a regular file inside the builder's root filesystem$/,
    ));

  test("a builder's /cnb/build-config/env/NAME linked to a host file is refused", () =>
    twice(
      hostileBuilder((t) => [
        dir('cnb/build-config'),
        dir('cnb/build-config/env'),
        link('cnb/build-config/env/SECRET', t),
      ]),
      /\/cnb\/build-config\/env\/SECRET is a symbolic link: expected a regular file/,
    ));

  test("a builder's /cnb/build-config linked to a host directory is refused", () =>
    twice(
      hostileBuilder((t) => [link('cnb/build-config', path.dirname(t))]),
      /\/cnb\/build-config is a symbolic link: expected a directory/,
    ));

  // System buildpacks (/cnb/system.toml) are read like order.toml: a link is refused, never followed.
  test("a builder's /cnb/system.toml linked to a host file is refused", () =>
    twice(
      hostileBuilder((t) => [link('cnb/system.toml', t)]),
      /\/cnb\/system\.toml is a symbolic link: expected a regular file inside the builder's root filesystem$/,
    ));

  test("an image's /etc/passwd linked out of its root resolves inside it (kiln run)", async () => {
    const rootfs = path.join(e.root, 'passwd-rootfs');
    await mkdir(path.join(rootfs, 'etc'), { recursive: true });
    await mkdir(path.join(rootfs, 'cnb'), { recursive: true });
    for (const [name, target] of [
      ['etc/passwd', c.path],
      ['etc/group', `../../../../../../../..${c.path}`],
      ['cnb/process', path.dirname(c.path)],
    ] as const) {
      await rm(path.join(rootfs, name), { force: true });
      await symlink(target, path.join(rootfs, name));
    }
    // Followed on the host, the canary's passwd line would give uid 4242 and a home named after it.
    await assert.rejects(resolveUser('cnb', rootfs), (err: Error) => {
      assert.equal(err.message, `image user "cnb" is not in the image's /etc/passwd`);
      return true;
    });
    assert.deepEqual(await resolveUser('4242', rootfs), { uid: 4242, gid: 4242, home: '/' });
    // The same link with the host file missing behaves the same.
    await rm(path.join(rootfs, 'etc/passwd'));
    await symlink(c.missing, path.join(rootfs, 'etc/passwd'));
    assert.deepEqual(await resolveUser('4242', rootfs), { uid: 4242, gid: 4242, home: '/' });
  });
});
