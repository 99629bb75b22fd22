// The issue's default-builder path for two platforms: `kiln build --platform
// linux/amd64,linux/arm64` of the Express sample with no --builder makes the embedded default stack
// and builder for arm64 on first use (the full bookworm build image, its maintainer scripts under
// qemu-user: about 7 minutes on 2 loaded cores), builds both platforms in one command, and writes
// one index to the store. Checked: two manifests with their platform fields; each platform's
// Node.js binary (the nodejs-engine layer) is ELF for that machine; the arm64 image runs under
// podman with emulation and answers HTTP. The static-binary Procfile app holds one prebuilt
// binary: built for both platforms, the arm64 build refuses its amd64 binary in one line; built
// for arm64 from an arm64 binary, it answers under podman. Runs when the e2e home already holds
// the arm64 default stack, or with KILN_TEST_ARM64_DEFAULT=1 (which makes it); skips otherwise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTar } from '../../src/layers/tar-reader.ts';
import type { Digest } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { IndexSchema, parseJson } from '../../src/oci/schema.ts';
import { checkEmulation } from '../../src/sandbox/emulation.ts';
import { ImageStore } from '../../src/store/store.ts';
import type { Podman } from '../helpers/podman.ts';
import { copySample, freePort, httpGet, KILN_HOME, kiln, podmanOnKilnStore } from './samples-harness.ts';

const MACHINE: Record<string, number> = { amd64: 62, arm64: 183 };
const ARM64_STACK = 'docker.io/kiln/stacks/bookworm/build:latest-linux-arm64';

/** armStackCached tells whether the e2e home's store already holds the arm64 default build image. */
function armStackCached(): boolean {
  try {
    const index = JSON.parse(readFileSync(path.join(KILN_HOME, 'images', 'index.json'), 'utf8')) as {
      manifests?: { annotations?: Record<string, string> }[];
    };
    return (index.manifests ?? []).some(
      (m) => m.annotations?.['org.opencontainers.image.ref.name'] === ARM64_STACK,
    );
  } catch {
    return false;
  }
}

function unavailable(): string | false {
  if (process.arch !== 'x64') return 'this e2e test builds arm64 on an amd64 machine';
  if ((process.getuid?.() ?? 0) !== 0) return 'needs root (sandboxes, podman)';
  try {
    checkEmulation('arm64', 'amd64');
  } catch (e) {
    return `binfmt_misc cannot be used here: ${(e as Error).message}`;
  }
  if (process.env.KILN_TEST_ARM64_DEFAULT !== '1' && !armStackCached())
    return 'no arm64 default stack in the e2e home yet: set KILN_TEST_ARM64_DEFAULT=1 to make it (about 7 minutes under qemu emulation, once per machine; then the test takes about 2 minutes cold, 40 s warm)';
  return false;
}

/** nodeMachine returns the ELF machine of the Node.js binary in the image's nodejs-engine layer. */
async function nodeMachine(image: Image): Promise<number | undefined> {
  let machine: number | undefined;
  for (const l of await image.layers()) {
    for await (const e of readTar(await l.uncompressed())) {
      const wanted =
        e.header.type === 'file' && /(^|\/)layers\/kiln_nodejs-engine\/node\/bin\/node$/.test(e.header.path);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of e.body) {
        if (wanted && size < 4096) {
          chunks.push(c as Buffer);
          size += (c as Buffer).length;
        }
      }
      if (!wanted) continue;
      // The ELF header's e_machine (the binary is ~100 MB: only its head is kept).
      const head = Buffer.concat(chunks);
      assert.equal(head.subarray(0, 4).toString('latin1'), '\x7fELF', `${e.header.path}: an ELF file`);
      machine = head.readUInt16LE(18);
    }
    if (machine !== undefined) return machine;
  }
  return machine;
}

describe('kiln build --platform linux/amd64,linux/arm64 with the default builder', {
  skip: unavailable(),
}, () => {
  let podman: Podman;
  let podmanStore: string;
  before(async () => {
    ({ podman, store: podmanStore } = await podmanOnKilnStore());
  });
  after(async () => {
    await podman?.cleanup();
  });

  test('the Express sample: one index, each Node.js of its architecture, the arm64 image answering HTTP under podman', async () => {
    const { dir, cleanup } = await copySample('node-express');
    const name = 'kiln-e2e-express-multiarch';
    const timings: string[] = [];
    try {
      const build = async (what: string) => {
        const t = performance.now();
        const r = await kiln(['build', name, '--path', dir, '--platform', 'linux/amd64,linux/arm64'], {
          timeoutMs: 1_800_000,
        });
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        timings.push(`${what}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
        return r;
      };
      const first = await build('build both platforms');
      assert.match(
        first.stderr,
        /Building docker\.io\/library\/kiln-e2e-express-multiarch:latest for linux\/arm64 .* with builder kiln\/builders\/bookworm:latest-linux-arm64/,
      );

      const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
      const layout = store.layout;
      const top = await layout.resolve(`docker.io/library/${name}:latest`);
      assert.equal(top.mediaType, 'application/vnd.oci.image.index.v1+json', 'an image index');
      assert.equal(first.stdout.trim(), top.digest);
      const index = parseJson(IndexSchema, await layout.blobs.readBytes(top.digest as Digest), 'index');
      assert.deepEqual(
        index.manifests.map((m) => m.platform),
        [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
      );
      for (const m of index.manifests) {
        const arch = m.platform!.architecture;
        const image = await layout.imageByDigest(m.digest as Digest);
        assert.equal((await image.configFile()).architecture, arch);
        assert.equal(await nodeMachine(image), MACHINE[arch], `${arch}: the Node.js binary's ELF machine`);
      }

      // The arm64 image runs under podman (qemu-user through binfmt_misc) and answers HTTP.
      const port = await freePort();
      const container = `kiln-e2e-arm64-${port}`;
      const ref = `oci:${podmanStore}:docker.io/library/${name}:latest`;
      const running = podman.run(ref, [], {
        network: 'host',
        env: { PORT: String(port) },
        flags: ['--name', container, '--platform', 'linux/arm64'],
        timeoutMs: 180_000,
      });
      try {
        assert.equal(await httpGet(port, 120_000), 'Hello from kiln: node-express\n');
        const arch = await podman.exec(['inspect', '--format', '{{.ImageName}} {{.Platform}}', container]);
        const uname = await podman.exec([
          'exec',
          container,
          '/layers/kiln_nodejs-engine/node/bin/node',
          '-p',
          'process.arch',
        ]);
        assert.equal(uname.stdout.trim(), 'arm64', `node's process.arch in the container (${arch.stdout})`);
      } finally {
        const stopped = await podman.exec(['stop', '-t', '2', container]);
        if (stopped.code !== 0) await podman.exec(['kill', container]);
        await podman.exec(['rm', '-f', container]);
        await running;
      }

      // Warm: each platform's own cache; nothing changed, so the same index.
      const warm = await build('build both platforms again (warm)');
      assert.equal(warm.stdout.trim(), first.stdout.trim(), 'the same index when nothing changed');
    } finally {
      console.log(`# timings\n# ${timings.join('\n# ')}`);
      await cleanup();
    }
  });

  test('the static-binary Procfile app: an amd64 binary in an arm64 build fails in one line; an arm64 one answers under podman', {
    skip: existsSync('/usr/bin/aarch64-linux-musl-gcc')
      ? false
      : 'aarch64-linux-musl-gcc missing: run scripts/bootstrap.sh',
  }, async () => {
    const { dir, cleanup } = await copySample('static-binary');
    try {
      // The default builder copies the app's one binary into every platform's image: the
      // procfile buildpack refuses one of another architecture than the image's.
      execFileSync('sh', [path.join(dir, 'build.sh')]);
      const both = await kiln([
        'build',
        'kiln-e2e-static-multiarch',
        '--path',
        dir,
        '--platform',
        'linux/amd64,linux/arm64',
      ]);
      assert.notEqual(both.code, 0);
      assert.match(
        both.stderr,
        /^\[linux\/arm64\] ERROR: Procfile web: \.\/hello-server is a program for amd64, this image is for arm64: build it for arm64 \(a multi-platform build needs one per platform\)$/m,
      );
      // Built for arm64, it runs under podman with emulation and answers HTTP.
      execFileSync('aarch64-linux-musl-gcc', [
        '-static',
        '-Os',
        '-s',
        '-o',
        path.join(dir, 'hello-server'),
        path.join(dir, 'hello.c'),
      ]);
      const name = 'kiln-e2e-static-arm64';
      const arm = await kiln(['build', name, '--path', dir, '--platform', 'linux/arm64']);
      assert.equal(arm.code, 0, arm.stderr);
      const stored = await (await ImageStore.open(path.join(KILN_HOME, 'images'))).find(name);
      assert.equal((await stored!.configFile()).architecture, 'arm64');
      const port = await freePort();
      const container = `kiln-e2e-static-arm64-${port}`;
      const running = podman.run(`oci:${podmanStore}:docker.io/library/${name}:latest`, [], {
        network: 'host',
        env: { PORT: String(port) },
        flags: ['--name', container, '--platform', 'linux/arm64'],
        timeoutMs: 120_000,
      });
      try {
        assert.equal(await httpGet(port, 60_000), 'Hello from kiln: static-binary\n');
      } finally {
        const stopped = await podman.exec(['stop', '-t', '2', container]);
        if (stopped.code !== 0) await podman.exec(['kill', container]);
        await podman.exec(['rm', '-f', container]);
        await running;
      }
    } finally {
      await cleanup();
    }
  });
});
