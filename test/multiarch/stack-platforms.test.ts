// `kiln stack create --platform linux/amd64,linux/arm64` through the CLI with a small stack file:
// one image per platform from the same recipe (Debian's arm64 packages from the same signed
// indexes), one lock section per architecture, an image index under each tag with the right
// platform fields, per-platform SBOM referrers naming the architecture, a no-op second run,
// byte-identical images when made again, and the index published to a real registry. The run
// images only: an arm64 build image configures under emulation in minutes (it is covered by the
// e2e build of both platforms).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import type { Digest } from '../../src/oci/digest.ts';
import { IndexSchema, parseJson } from '../../src/oci/schema.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteManifest } from '../../src/registry/remote.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import { readLock } from '../../src/stack/lock.ts';
import { referrersOf, sbomOfImage, sbomOfRemoteImage } from '../../src/stack/sbom.ts';
import { runMain } from '../helpers/cli.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { testCacheDir } from '../helpers/stack.ts';

const STACK = `id = "io.kiln.test.multiarch"
[distro]
name = "debian"
version = "12"
[archive]
arch = "amd64"
components = ["main"]
suites = ["bookworm", "bookworm-security"]
[user]
name = "cnb"
uid = 1000
gid = 1000
[run]
name = "kiln-test/multiarch/run"
packages = ["base-files", "netbase", "tzdata", "ca-certificates", "libc6"]
exclude = ["debconf", "debconf-2.0", "openssl", "dpkg", "perl-base", "bash", "dash", "coreutils", "tar", "awk", "gawk", "mawk", "original-awk"]
[build]
name = "kiln-test/multiarch/build"
essential = true
packages = ["ca-certificates"]
`;

let work: string;
let reg: RegistryHandle;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-stack-platforms-'));
  await writeFile(path.join(work, 'stack.toml'), STACK);
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

// The shared .deb and index cache, so packages are downloaded once across test runs.
const kiln = (...args: string[]) =>
  runMain(args, {
    HOME: work,
    KILN_HOME: '',
    XDG_DATA_HOME: path.join(work, 'data'),
    XDG_CONFIG_HOME: path.join(work, 'config'),
    XDG_CACHE_HOME: path.dirname(testCacheDir()),
    SOURCE_DATE_EPOCH: '315532801',
  });
const create = (out: string, ...more: string[]) =>
  kiln(
    'stack',
    'create',
    '--config',
    path.join(work, 'stack.toml'),
    '--only',
    'run',
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${out}`,
    ...more,
  );

async function runIndex(dir: string) {
  const layout = await Layout.open(dir);
  const desc = await layout.resolve('run');
  return { layout, desc, index: parseJson(IndexSchema, await layout.blobs.readBytes(desc.digest), 'index') };
}

test('run images for amd64 and arm64 from one recipe: an index, lock sections, SBOMs per platform', async () => {
  const out = path.join(work, 'a');
  const r = await create(out);
  assert.equal(r.code, 0, r.err);
  const { layout, desc, index } = await runIndex(out);
  assert.deepEqual(
    index.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  );
  assert.match(r.out, new RegExp(`^run\\trun\\t${desc.digest}$`, 'm'));
  for (const m of index.manifests) {
    const arch = m.platform!.architecture;
    const img = await layout.imageByDigest(m.digest as never);
    const cfg = await img.configFile();
    assert.equal(cfg.architecture, arch);
    assert.equal(cfg.os, 'linux');
    // The libc of each image is its architecture's (the Debian package of that architecture).
    const sboms = await referrersOf(layout, m.digest);
    assert.ok(sboms.length >= 2, `${arch}: CycloneDX and SPDX referrers`);
    const cdx = await sbomOfImage(layout, m.digest, CYCLONEDX_MEDIA_TYPE);
    const libc = (cdx!.components as { name: string; purl: string }[]).find((c) => c.name === 'libc6');
    assert.match(libc!.purl, new RegExp(`\\?arch=${arch}&`), `${arch} SBOM names the architecture`);
    assert.match(r.out, new RegExp(`^run\\trun-linux-${arch}\\t${m.digest}\\tlinux/${arch}$`, 'm'));
  }
  // One lock section per architecture: the stack file's own at the top, arm64 in its own.
  const lock = (await readLock(path.join(work, 'stack.lock')))!;
  assert.ok(lock.run.packages.some((p) => p.name === 'libc6' && p.arch === 'amd64'));
  const arm = lock.platforms?.arm64;
  assert.ok(arm?.run.packages.some((p) => p.name === 'libc6' && p.arch === 'arm64'));
  assert.notEqual(arm!.inputs, lock.inputs);
  assert.match(
    await readFile(path.join(work, 'stack.lock'), 'utf8'),
    /^\[\[platforms\.arm64\.run\.packages\]\]$/m,
  );

  // Again: a no-op; elsewhere: the same bytes.
  const again = await create(out);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /run linux\/arm64 image .*\(up to date\)/);
  assert.equal((await runIndex(out)).desc.digest, desc.digest);
  // Made again in the local store and published: the same index, one tag, referrers per platform.
  const stored = await kiln(
    'stack',
    'create',
    '--config',
    path.join(work, 'stack.toml'),
    '--only',
    'run',
    '--platform',
    'linux/amd64,linux/arm64',
    '--publish',
    `${reg.host}/multi`,
  );
  assert.equal(stored.code, 0, stored.err);
  const client = new RegistryClient({});
  const pushed = await remoteManifest(client, parseReference(`${reg.host}/multi/run:latest`));
  assert.equal(await pushed.digest(), desc.digest, 'reproducible per platform, and published as one index');
  for (const m of index.manifests) {
    const repo = client.repository(parseReference(`${reg.host}/multi/run:latest`));
    const sbom = await sbomOfRemoteImage(repo, m.digest as Digest, CYCLONEDX_MEDIA_TYPE);
    assert.ok(sbom, `${m.platform!.architecture}: SBOM referrer in the registry`);
  }
});

test("images made before without --platform are reused for the stack file's own architecture", async () => {
  const out = path.join(work, 'single-first');
  const single = await kiln(
    'stack',
    'create',
    '--config',
    path.join(work, 'stack.toml'),
    '--only',
    'run',
    '--output',
    `oci:${out}`,
  );
  assert.equal(single.code, 0, single.err);
  const r = await create(out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /run linux\/amd64 image run-linux-amd64@\S+ \(up to date\)/);
  // And the other way round: a single-architecture create keeps the lock's arm64 section.
  assert.ok((await readLock(path.join(work, 'stack.lock')))?.platforms?.arm64);
});

test('--locked without a fresh arm64 lock section fails in one line; a bad platform is a usage error', async () => {
  await writeFile(path.join(work, 'other.toml'), STACK.replace('"tzdata", ', ''));
  const r = await kiln(
    'stack',
    'create',
    '--config',
    path.join(work, 'other.toml'),
    '--locked',
    '--only',
    'run',
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${work}/c`,
  );
  assert.notEqual(r.code, 0);
  assert.match(r.err, /--locked: .*other\.toml|--locked: .*stack\.lock has no fresh amd64 section/);
  const bad = await kiln(
    'stack',
    'create',
    '--config',
    path.join(work, 'stack.toml'),
    '--platform',
    'linux/s390x',
    '--output',
    `oci:${work}/d`,
  );
  assert.equal(bad.code, 3, bad.err);
  assert.match(
    bad.err,
    /linux\/s390x: kiln makes io\.kiln\.test\.multiarch for linux\/amd64 and linux\/arm64/,
  );
});
