// One command builds an amd64 + arm64 app image index (the e2e): a small stack made for
// both platforms (the arm64 build image's maintainer scripts run under qemu-user), a builder index
// of it, and `kiln build --platform linux/amd64,linux/arm64 --publish` of a Procfile app whose
// static server is prebuilt per architecture (the static-binary sample, compiled with musl-gcc and
// aarch64-linux-musl-gcc; a test buildpack picks bin/$CNB_TARGET_ARCH/). Node.js under emulation
// is too slow for this file's time budget, so the static binary stands in for it. Checked: the
// index in the test registry has two manifests with the right platform fields; each platform's
// server binary and launcher are ELF for that machine; the arm64 image runs under podman with
// emulation and answers HTTP; a rebuild reuses each platform's own cache; `kiln rebase` of the
// index onto a patched run-image index keeps every app layer of both platforms.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { bufferReader, parseElf } from '../../src/layers/elf.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Digest } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { IndexSchema, parseJson } from '../../src/oci/schema.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { RemoteIndex, remoteManifest } from '../../src/registry/remote.ts';
import { checkEmulation } from '../../src/sandbox/emulation.ts';
import { startPodman } from '../helpers/podman.ts';
import { freePort, type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { testCacheDir } from '../helpers/stack.ts';
import { kiln, ROOT } from './samples-harness.ts';

const execFileP = promisify(execFile);
const MACHINE: Record<string, number> = { amd64: 62, arm64: 183 };

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
[run-user]
name = "cnb"
uid = 1001
gid = 1000
[run]
name = "kiln-test/multiarch/run"
packages = ["base-files", "netbase", "tzdata", "ca-certificates", "libc6"]
exclude = ["debconf", "debconf-2.0", "openssl", "dpkg", "perl-base", "bash", "dash", "coreutils", "tar", "awk", "gawk", "mawk", "original-awk"]
[build]
name = "kiln-test/multiarch/build"
essential = true
compression = "zstd"
packages = ["usr-is-merged", "ca-certificates"]
`;

function unavailable(): string | false {
  if (process.arch !== 'x64') return 'this e2e test builds arm64 on an amd64 machine';
  if ((process.getuid?.() ?? 0) !== 0) return 'needs root (sandboxes, podman)';
  if (!existsSync('/usr/bin/aarch64-linux-musl-gcc'))
    return 'aarch64-linux-musl-gcc missing: run scripts/bootstrap.sh';
  try {
    checkEmulation('arm64', 'amd64');
  } catch (e) {
    return `binfmt_misc cannot be used here: ${(e as Error).message}`;
  }
  return false;
}

let work: string;
let home: string;
let reg: RegistryHandle;
let stackDir: string;
const k = (args: string[]) => kiln(args, { env: { KILN_HOME: home } });
const ok = async (args: string[]) => {
  const r = await k(args);
  assert.equal(r.code, 0, `kiln ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r;
};
const timings: string[] = [];
const timed = async (what: string, args: string[]) => {
  const t = performance.now();
  const r = await ok(args);
  timings.push(`${what}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return r;
};

async function layerFiles(image: Image): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const l of await image.layers()) {
    for await (const e of readTar(await l.uncompressed())) {
      if (e.header.type !== 'file') continue;
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c as Buffer);
      if (/(^|\/)(hello-server|launcher)$/.test(e.header.path))
        out.set(e.header.path.replace(/^\.?\//, ''), Buffer.concat(chunks));
    }
  }
  return out;
}

describe('kiln build --platform linux/amd64,linux/arm64', { skip: unavailable() }, () => {
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'kiln-multiarch-'));
    home = path.join(work, 'home');
    reg = await startRegistry();
    // The stack is made once per machine (its arm64 build image takes minutes under emulation):
    // kept in the test cache by the stack file's digest, re-created as a no-op.
    stackDir = path.join(
      testCacheDir(),
      'multiarch-stack',
      createHash('sha256').update(STACK).digest('hex').slice(0, 16),
    );
    await mkdir(stackDir, { recursive: true });
    await writeFile(path.join(stackDir, 'stack.toml'), STACK);
    await timed('stack create (both platforms; a no-op once made)', [
      'stack',
      'create',
      '--config',
      path.join(stackDir, 'stack.toml'),
      '--platform',
      'linux/amd64,linux/arm64',
      '--output',
      `oci:${stackDir}/oci`,
    ]);
  });
  after(async () => {
    if (timings.length) console.log(`# timings\n# ${timings.join('\n# ')}`);
    await reg?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('kiln stack inspect lists every platform of the stack, each with its own packages', async () => {
    const inspect = (...extra: string[]) =>
      ok([
        'stack',
        'inspect',
        '--config',
        path.join(stackDir, 'stack.toml'),
        '--output',
        `oci:${stackDir}/oci`,
        ...extra,
      ]);
    const r = await inspect('--json');
    const rows = JSON.parse(r.stdout) as {
      role: string;
      platform?: string;
      packages: { name: string; version: string }[];
    }[];
    for (const role of ['run', 'build'])
      assert.deepEqual(
        rows.filter((x) => x.role === role).map((x) => x.platform),
        ['linux/amd64', 'linux/arm64'],
        r.stdout,
      );
    assert.ok(rows.every((x) => x.packages.some((p) => p.name === 'libc6')));
    const human = await inspect();
    assert.match(human.stdout, /^build linux\/arm64: build$/m);
  });

  test('one command: an index of both platforms, each of its architecture, the arm64 one answering HTTP under emulation', async () => {
    // The app: the static-binary sample, its server built for each architecture.
    const app = path.join(work, 'app');
    await cp(path.join(ROOT, 'samples', 'static-binary'), app, { recursive: true });
    for (const [arch, cc] of [
      ['amd64', 'musl-gcc'],
      ['arm64', 'aarch64-linux-musl-gcc'],
    ] as const) {
      await mkdir(path.join(app, 'bin', arch), { recursive: true });
      await execFileP(cc, [
        '-static',
        '-Os',
        '-s',
        '-o',
        path.join(app, 'bin', arch, 'hello-server'),
        path.join(app, 'hello.c'),
      ]);
    }
    // The builder: an index of both platforms from the stack's build image index (a copy of the
    // cached stack, blobs hard-linked: the rebase below patches its run image).
    await execFileP('cp', ['-al', path.join(stackDir, 'oci'), path.join(work, 'stack')]);
    await writeFile(
      path.join(work, 'builder.toml'),
      `[[buildpacks]]\nuri = "${path.join(ROOT, 'test/e2e/multiarch/static-arch')}"\n[[order]]\n[[order.group]]\nid = "test/static-arch"\n` +
        `[build]\nimage = "oci:${work}/stack:build"\n[[run.images]]\nimage = "oci:${work}/stack:run"\n`,
    );
    await ok([
      'builder',
      'create',
      '--config',
      path.join(work, 'builder.toml'),
      '--platform',
      'linux/amd64,linux/arm64',
      '--output',
      `oci:${work}/builder:b`,
    ]);

    const ref = `${reg.host}/multi/app:1`;
    const args = [
      'build',
      ref,
      '--publish',
      '--path',
      app,
      '--builder',
      `oci:${work}/builder:b`,
      '--platform',
      'linux/amd64,linux/arm64',
      '--network',
      'none',
    ];
    const cold = await timed('build both platforms (cold)', args);
    assert.match(cold.stderr, /\[linux\/arm64\] test\/static-arch: build for arm64 on aarch64/);
    assert.match(cold.stderr, /\[linux\/amd64\] test\/static-arch: build for amd64 on x86_64/);

    const client = new RegistryClient({});
    const top = await remoteManifest(client, parseReference(ref));
    assert.ok(top instanceof RemoteIndex, 'an image index');
    assert.equal(cold.stdout.trim(), await top.digest());
    const index = await top.indexManifest();
    assert.deepEqual(
      index.manifests.map((m) => m.platform),
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    for (const m of index.manifests) {
      const arch = m.platform!.architecture;
      const image = await top.image(m.digest as Digest);
      assert.equal((await image.configFile()).architecture, arch);
      const files = await layerFiles(image);
      const server = [...files].find(([p]) => p.endsWith('hello-server'));
      assert.ok(server, `${arch}: the server is in the image`);
      assert.equal(
        parseElf(bufferReader(server[1])).machine,
        MACHINE[arch],
        `${arch}: the server's ELF machine`,
      );
      assert.equal(
        parseElf(bufferReader(files.get('cnb/lifecycle/launcher')!)).machine,
        MACHINE[arch],
        `${arch}: the launcher's ELF machine`,
      );
    }

    // The arm64 image runs under podman with emulation and answers HTTP.
    const podman = await startPodman();
    try {
      const port = await freePort();
      const name = `kiln-multiarch-${port}`;
      const started = await podman.exec(
        [
          'run',
          '-d',
          '--name',
          name,
          '--tls-verify=false',
          '--platform',
          'linux/arm64',
          '--network',
          'slirp4netns',
          '-p',
          `127.0.0.1:${port}:8080`,
          '--env',
          'PORT=8080',
          ref,
        ],
        180_000,
      );
      assert.equal(started.code, 0, started.stderr);
      let body = '';
      for (let i = 0; i < 100 && !body; i++) {
        body = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }).then(
          (r) => r.text(),
          () => '',
        );
        if (!body) await new Promise((r) => setTimeout(r, 300));
      }
      const uname = await podman.exec(['inspect', '--format', '{{.Architecture}}', ref]);
      assert.match(body, /hello/i, `the arm64 server answered (${uname.stdout.trim()})`);
      assert.equal(uname.stdout.trim(), 'arm64');
      await podman.exec(['rm', '--force', '--time', '0', name], 30_000);
    } finally {
      await podman.cleanup();
    }

    // Warm: each platform's cache, nothing rebuilt; the same index.
    const warm = await timed('build both platforms (warm)', args);
    assert.equal(warm.stdout.trim(), cold.stdout.trim(), 'the same index when nothing changed');

    // Rebase the index onto a patched run-image index (the same packages made at another time):
    // every platform moves to its own new run image and keeps every app layer.
    const patch = (out: string, platforms: string) =>
      kiln(
        [
          'stack',
          'create',
          '--config',
          path.join(stackDir, 'stack.toml'),
          '--only',
          'run',
          '--platform',
          platforms,
          '--output',
          `oci:${out}`,
        ],
        { env: { KILN_HOME: home, SOURCE_DATE_EPOCH: '1700000000' } },
      );
    assert.equal((await patch(path.join(work, 'stack'), 'linux/amd64,linux/arm64')).code, 0);
    const patched = await Layout.open(path.join(work, 'stack'));
    const runIndex = parseJson(
      IndexSchema,
      await patched.blobs.readBytes((await patched.resolve('run')).digest),
      'run index',
    );
    // The run image recorded in the app (oci:…/stack:run) now names the patched index.
    const rebased = await timed('rebase of the index', ['rebase', ref, '--publish']);
    const after = await remoteManifest(client, parseReference(ref));
    assert.ok(after instanceof RemoteIndex);
    assert.equal(rebased.stdout.trim(), await after.digest());
    assert.notEqual(await after.digest(), await top.digest());
    const was = await top.indexManifest();
    const now = await after.indexManifest();
    assert.deepEqual(
      now.manifests.map((m) => m.platform),
      was.manifests.map((m) => m.platform),
    );
    for (const [i, m] of now.manifests.entries()) {
      const arch = m.platform!.architecture;
      const oldImg: Image = await top.image(was.manifests[i]!.digest as Digest);
      const newImg: Image = await after.image(m.digest as Digest);
      const oldL: string[] = (await oldImg.manifest()).layers.map((l) => l.digest);
      const newL: string[] = (await newImg.manifest()).layers.map((l) => l.digest);
      const run = await patched.imageByDigest(
        runIndex.manifests.find((r) => r.platform?.architecture === arch)!.digest as Digest,
      );
      const runL = (await run.manifest()).layers.map((l) => l.digest);
      assert.deepEqual(newL.slice(0, runL.length), runL, `${arch}: on its own patched run image`);
      assert.deepEqual(
        newL.slice(runL.length),
        oldL.slice(oldL.length - (newL.length - runL.length)),
        `${arch}: every app layer kept`,
      );
      assert.equal(
        newL.length - runL.length,
        oldL.length - 1,
        `${arch}: the one run-image layer replaced, nothing else`,
      );
      assert.equal((await newImg.configFile()).architecture, arch);
    }
    // A run-image index without arm64 fails in one line naming what is missing.
    assert.equal((await patch(path.join(work, 'amd-only'), 'linux/amd64')).code, 0);
    const missing = await k([
      'rebase',
      ref,
      '--publish',
      '--force',
      '--run-image',
      `oci:${work}/amd-only:run`,
    ]);
    assert.notEqual(missing.code, 0);
    assert.match(
      missing.stderr,
      /^ERROR: oci:.*amd-only:run has no linux\/arm64 image \(it has linux\/amd64\)$/m,
    );
  });
});
