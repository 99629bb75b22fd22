// E2E fixture for `kiln build`: a TEST builder made by kiln's own createBuilder from the bash
// buildpacks in test/e2e/buildpacks (on a skeleton build image whose /usr and /etc are the host's,
// bound read-only by the sandbox, so bash and coreutils work without a Debian image), a tiny
// shell-free run image (passwd, /tmp) and an app holding a static program. Builds go through the
// same orchestration and image access as the CLI. Everything lives in one temp dir.

import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readBuilderConfig } from '../../src/builder/builder-config.ts';
import { createBuilder } from '../../src/builder/builder-image.ts';
import { imageAccess } from '../../src/cli/commands/build.ts';
import { type LauncherInfo, loadLauncher } from '../../src/launcher/index.ts';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import type { TarEntry } from '../../src/layers/tar-writer.ts';
import type { Image } from '../../src/oci/image.ts';
import { DEFAULT_EPOCH, imageFrom } from '../../src/oci/memory.ts';
import { type BuildOutcome, type BuildRequest, runBuild } from '../../src/platform/build.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import { MOUNT_POINTS } from '../../src/sandbox/executor.ts';
import { attachSbom } from '../../src/stack/sbom.ts';
import { ImageStore } from '../../src/store/store.ts';
import { Transports } from '../../src/transport/transports.ts';
import type { Podman, PodmanResult } from '../helpers/podman.ts';
import { fileEntry } from '../helpers/tar-entries.ts';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
export const E2E_BUILDPACKS = path.join(here, 'buildpacks');

/** The test app's program: prints GREETING, its uid and the first line of the file it is given. */
const HELLO_C = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int c, char **v) {
  const char *g = getenv("GREETING");
  char line[256] = "";
  for (int i = 1; i < c; i++) {
    FILE *f = fopen(v[i], "r");
    if (f) { if (!fgets(line, sizeof line, f)) line[0] = 0; fclose(f); }
    else printf("arg=%s ", v[i]);
  }
  printf("GREETING=%s uid=%d message=%s", g ? g : "(unset)", (int)getuid(), line);
  if (line[0] == 0) printf("\\n");
  return 0;
}
`;

const file = fileEntry;
const dir = (p: string, mode = 0o755, uid = 0, gid = 0): TarEntry => ({
  path: p,
  type: 'dir',
  mode,
  uid,
  gid,
});
const link = (p: string, target: string): TarEntry => ({
  path: p,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname: target,
});

/**
 * podmanRunRetrying is podman.run, retried when podman 4.3 loses the container's exit code
 * ("no such exit code (container in state stopped)"), a conmon race it shows under heavy load.
 */
export async function podmanRunRetrying(
  podman: Podman,
  ...args: Parameters<Podman['run']>
): Promise<PodmanResult> {
  let r = await podman.run(...args);
  for (let i = 0; i < 2 && r.code !== 0 && /no such exit code/.test(r.stderr); i++)
    r = await podman.run(...args);
  return r;
}

/** A log that keeps every line (and echoes nothing). */
export interface CapturedLog {
  readonly lines: string[];
  phase(name: string): void;
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

export function captureLog(): CapturedLog {
  const lines: string[] = [];
  return {
    lines,
    phase: (n) => lines.push(`===> ${n}`),
    debug: () => {},
    info: (m) => lines.push(m),
    warn: (m) => lines.push(`Warning: ${m}`),
    error: (m) => lines.push(`ERROR: ${m}`),
  };
}

/** The E2E world: store, builder, run image, and helpers to make apps and build them. */
export interface E2E {
  readonly root: string;
  readonly store: ImageStore;
  readonly builder: Image;
  readonly launcher: LauncherInfo;
  readonly hello: string;
  /** Writes an app dir (program, message.txt, deps.txt) and returns it. */
  app(name: string, message: string, deps?: string): Promise<string>;
  /** Runs a build of `appDir` into the local store as `image` (or `dest`, e.g. `oci:DIR:TAG`). */
  build(
    appDir: string,
    image: string,
    over?: Partial<BuildRequest> & { dest?: string },
  ): Promise<BuildOutcome & { log: CapturedLog }>;
  cleanup(): Promise<void>;
}

/** makeE2E builds the fixture (about a second: one static compile and three small images). */
export async function makeE2E(): Promise<E2E> {
  const root = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-'));
  try {
    return await setUp(root);
  } catch (e) {
    await rm(root, { recursive: true, force: true });
    throw e;
  }
}

async function setUp(root: string): Promise<E2E> {
  await chmod(root, 0o755);
  const store = await ImageStore.open(path.join(root, 'store'));
  const hello = path.join(root, 'hello');
  await writeFile(`${hello}.c`, HELLO_C);
  await execFileP('musl-gcc', ['-static', '-Os', '-o', hello, `${hello}.c`]);

  // Build image: mount points and merged-/usr links only; the sandbox binds the host's /usr, /etc.
  const skeleton: TarEntry[] = [
    ...new Set(
      [...MOUNT_POINTS, '/usr', '/etc', '/home/cnb'].flatMap((p) => {
        const parts = p.split('/').filter(Boolean);
        return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
      }),
    ),
  ].map((p) => (p === 'home/cnb' ? dir(p, 0o755, 1000, 1000) : p === 'tmp' ? dir(p, 0o1777) : dir(p)));
  skeleton.push(
    link('bin', 'usr/bin'),
    link('sbin', 'usr/sbin'),
    link('lib', 'usr/lib'),
    link('lib64', 'usr/lib64'),
  );
  const buildBase = await writeLayer(skeleton, { store: store.blobs });
  const buildImage = imageFrom({
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: '1000:1000',
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/home/cnb', 'CNB_USER_ID=1000', 'CNB_GROUP_ID=1000'],
        Labels: { 'io.buildpacks.base.distro.name': 'debian', 'io.buildpacks.base.distro.version': '12' },
      },
    },
    layers: [buildBase],
  });
  await store.write(buildImage, ['e2e/build']);

  // Run image: no shell, no libc: the launcher and the app are static.
  const runBase = await writeLayer(
    [
      dir('etc'),
      file(
        'etc/passwd',
        'root:x:0:0:root:/root:/sbin/nologin\ncnb:x:1000:1000:cnb:/home/cnb:/sbin/nologin\n',
      ),
      file('etc/group', 'root:x:0:\ncnb:x:1000:\n'),
      dir('home'),
      dir('home/cnb', 0o755, 1000, 1000),
      dir('tmp', 0o1777),
    ],
    { store: store.blobs },
  );
  const runImage = imageFrom({
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: '1000:1000',
        Env: ['PATH=/usr/bin:/bin'],
        Labels: {
          'io.buildpacks.base.distro.name': 'debian',
          'io.buildpacks.base.distro.version': '12',
          'io.buildpacks.base.id': 'io.kiln.e2e',
          'io.buildpacks.rebasable': 'true',
        },
      },
    },
    layers: [runBase],
  });
  const runDesc = await store.write(runImage, ['e2e/run']);
  // The OS-package SBOM a stack attaches to its run image (as OCI referrers), which builds ship.
  await attachSbom(
    store.layout,
    { mediaType: runDesc.mediaType, digest: runDesc.digest, size: runDesc.size },
    {
      cyclonedx: {
        bomFormat: 'CycloneDX',
        specVersion: '1.6',
        components: [{ type: 'library', name: 'e2e-base-files' }],
      },
      spdx: { spdxVersion: 'SPDX-2.3', name: 'e2e-run', packages: [{ name: 'e2e-base-files' }] },
    },
  );

  const builderToml = path.join(root, 'builder.toml');
  await writeFile(
    builderToml,
    `description = "kiln e2e test builder"
[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'runtime')}"
[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'deps')}"
[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'process')}"
[[order]]
  [[order.group]]
  id = "e2e/runtime"
  [[order.group]]
  id = "e2e/deps"
  [[order.group]]
  id = "e2e/process"
[build]
image = "e2e/build"
[[run.images]]
image = "e2e/run"
`,
  );
  const created = await createBuilder(await readBuilderConfig(builderToml), {
    buildImage,
    store: store.blobs,
    kilnVersion: '0.1.0-e2e',
  });
  await store.write(created.image, ['e2e/builder']);
  return openE2E(root);
}

/**
 * openE2E opens a fixture made by makeE2E (in this or another process: the fault tests run builds
 * in child processes over the same root).
 */
export async function openE2E(root: string): Promise<E2E> {
  const store = await ImageStore.open(path.join(root, 'store'));
  const hello = path.join(root, 'hello');
  const builder = await store.find('e2e/builder');
  if (!builder) throw new Error(`${root}: no e2e/builder in the fixture store`);
  const created = { image: builder };
  const launcher = await loadLauncher();
  // The fixture's one store, shared by every target (as a CLI command shares its own).
  const images = new Transports({ client: new RegistryClient({}), storeDir: store.dir }, store);
  const executor = new BubblewrapExecutor({ hostUid: process.getuid?.() ?? 0 });

  return {
    root,
    store,
    builder: created.image,
    launcher,
    hello,
    async app(name, message, deps = 'left-pad@1') {
      const d = path.join(root, 'apps', name);
      await mkdir(d, { recursive: true });
      await writeFile(path.join(d, 'hello'), await readFile(hello), { mode: 0o755 });
      await chmod(path.join(d, 'hello'), 0o755);
      await writeFile(path.join(d, 'message.txt'), `${message}\n`);
      await writeFile(path.join(d, 'deps.txt'), deps);
      await chmod(d, 0o755);
      return d;
    },
    async build(appDir, image, over = {}) {
      const dest = over.dest ? images.parse(over.dest) : images.local(image);
      const log = captureLog();
      const outcome = await runBuild({
        imageName: image,
        appDir,
        builder: { image: created.image, name: 'e2e/builder' },
        env: {},
        extraMounts: [
          { src: '/usr', dst: '/usr', readonly: true },
          { src: '/etc', dst: '/etc', readonly: true },
        ],
        cacheDir: path.join(root, 'cache', image.replace(/[^a-z0-9]+/g, '_')),
        clearCache: false,
        network: 'none',
        executor,
        rootfsCacheDir: path.join(root, 'rootfs'),
        launcher,
        store,
        images: imageAccess(dest, dest, images),
        epoch: DEFAULT_EPOCH,
        compression: 'gzip',
        tmpDir: path.join(root, 'tmp'),
        log,
        ...over,
      });
      return { ...outcome, log };
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
