// Test helper: kiln's real stack images (stacks/bookworm), built once per stack.lock and reused
// by every test file and every later run.
//
//   const stack = await ensureTestStack();            // both images (build: ~1-2 min the first time)
//   const stack = await ensureTestStack({ roles: ['run'] });   // only the run image (~5 s)
//   stack.layoutDir, stack.tags.run / .build          // an OCI layout: oci:DIR:run, oci:DIR:build
//   const image = await stack.image('run');            // an Image value (src/oci/image.ts)
//   const rootfs = await stack.rootfs('build');        // the image unpacked (read-only use, shared)
//   stack.tags['run-shell'], stack.image('run-shell')  // run-image flavours: tag run-<flavour>
//
// Images live in ~/.cache/kiln/test-stack/<lock digest>-<stack file digest>/ (KILN_TEST_STACK_DIR overrides the
// parent), .debs in ~/.cache/kiln/debs (KILN_TEST_CACHE_DIR overrides ~/.cache/kiln). The
// committed stacks/bookworm/stack.lock decides the packages, so every run makes the same
// digests; a changed lock gets a new directory. Concurrent test files wait on a lock directory.
// The first build needs the Debian mirror (the machine's apt sources); later ones need nothing.
// Should the committed lock name .debs the live mirror no longer has (and that are not cached),
// the helper resolves a fresh lock of its own instead (see usableLock).

import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAptSources } from '../../src/debian/sources.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { extract } from '../../src/layers/extract.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { DEFAULT_EPOCH } from '../../src/oci/memory.ts';
import {
  type AccessOptions,
  fetchPackages,
  mirrorsOf,
  resolveStack,
} from '../../src/stack/archive-access.ts';
import { readStackConfig, type StackConfig } from '../../src/stack/config.ts';
import { createStack, type Role } from '../../src/stack/create.ts';
import {
  allLocked,
  inputsDigest,
  lockDigest,
  readLock,
  type StackLock,
  writeLock,
} from '../../src/stack/lock.ts';

/** StackImageKey names an image of the test stack: its role, or `run-<flavour>` (its tag too). */
export type StackImageKey = Role | `run-${string}`;

/** The stack file and lock the tests use (the ones kiln ships). */
export const TEST_STACK_FILE = fileURLToPath(new URL('../../stacks/bookworm/stack.toml', import.meta.url));
export const TEST_STACK_LOCK = fileURLToPath(new URL('../../stacks/bookworm/stack.lock', import.meta.url));

/** TestStack is a built stack in a shared OCI layout. */
export interface TestStack {
  readonly config: StackConfig;
  readonly lock: StackLock;
  /** The lock file `lock` came from (the committed one unless it could not be used). */
  readonly lockFile: string;
  readonly layoutDir: string;
  /** Tags in the layout: `run`, `build`, and `run-<flavour>` for every other run-image flavour. */
  readonly tags: Readonly<Record<Role, string>> & Readonly<Record<string, string>>;
  /** Directory of the SBOM files (`run.sbom.cdx.json`, ...). */
  readonly sbomDir: string;
  image(role: StackImageKey): Promise<Image>;
  /**
   * The image unpacked into a shared directory under the system temp dir, keyed by the image
   * digest (owners not applied: everything belongs to the test runner; do not modify it).
   */
  rootfs(role: StackImageKey): Promise<string>;
}

/** testCacheDir is where test .debs and indexes are cached (shared with kiln's own cache). */
export function testCacheDir(): string {
  return process.env.KILN_TEST_CACHE_DIR || path.join(homedir(), '.cache', 'kiln');
}

/**
 * usableLock is the committed stack.lock when it is fresh and its .debs can be had (cached, or
 * still on the mirror). The Debian mirror is live: superseded security updates disappear from it,
 * so on a machine without the cached .debs an old lock may point at files that are gone. Then the
 * tests re-resolve into a lock of their own (next to the test images; the committed one is left
 * alone) rather than fail for a reason that is not theirs.
 */
async function usableLock(
  config: StackConfig,
  access: AccessOptions,
): Promise<{ lock: StackLock; file: string }> {
  const committed = await readLock(TEST_STACK_LOCK);
  if (committed && committed.inputs === inputsDigest(config)) {
    try {
      await fetchPackages(allLocked(committed), access);
      return { lock: committed, file: TEST_STACK_LOCK };
    } catch (e) {
      if (!(e instanceof KilnError) || !/HTTP 404|HTTP 410/.test(e.message)) throw e;
    }
  }
  const own = path.join(testCacheDir(), 'test-stack', 'stack.lock');
  const fresh = await resolveStack(config, access);
  await mkdir(path.dirname(own), { recursive: true });
  await writeLock(own, fresh);
  return { lock: fresh, file: own };
}

async function withDirLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${dir}.lock`;
  await mkdir(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A lock older than 15 minutes belongs to a killed run.
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 15 * 60_000) await rm(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/**
 * testMirrors picks the Debian mirrors for tests as the CLI does: KILN_DEBIAN_MIRROR /
 * KILN_DEBIAN_SECURITY_MIRROR when set (an Ubuntu machine's apt names no Debian mirror), else apt.
 */
export async function testMirrors(config: StackConfig): Promise<Map<string, string>> {
  const env = process.env;
  return mirrorsOf(config, {
    apt: await readAptSources(),
    ...(env.KILN_DEBIAN_MIRROR ? { mirror: env.KILN_DEBIAN_MIRROR } : {}),
    ...(env.KILN_DEBIAN_SECURITY_MIRROR ? { securityMirror: env.KILN_DEBIAN_SECURITY_MIRROR } : {}),
  });
}

/** testAccess is how tests reach the Debian archive: testMirrors, the stack's keyring, the shared cache. */
export async function testAccess(config: StackConfig): Promise<AccessOptions> {
  return {
    mirrors: await testMirrors(config),
    keyring: config.archive.keyring,
    cacheDir: testCacheDir(),
  };
}

/**
 * ensureTestStack returns the stack images, creating the missing ones (from the committed lock,
 * with SOURCE_DATE_EPOCH = kiln's default) the first time.
 */
export async function ensureTestStack(opts: { roles?: readonly Role[] } = {}): Promise<TestStack> {
  const config = await readStackConfig(TEST_STACK_FILE);
  const access = await testAccess(config);
  const { lock, file: lockFile } = await usableLock(config, access);
  const parent = process.env.KILN_TEST_STACK_DIR || path.join(testCacheDir(), 'test-stack');
  // Keyed by the stack file too (users, labels): branches with different stack files sharing one
  // cache must not rebuild each other's images back and forth.
  const configKey = createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 8);
  const dir = path.join(
    parent,
    `${lockDigest(lock).slice('sha256:'.length, 'sha256:'.length + 16)}-${configKey}`,
  );
  const layoutDir = path.join(dir, 'layout');
  const sbomDir = path.join(dir, 'sbom');
  const tags: Record<string, string> & Record<Role, string> = { run: 'run', build: 'build' };
  for (const f of Object.keys(config.run.flavours)) tags[`run-${f}`] = `run-${f}`;
  const roles = opts.roles ?? (['run', 'build'] as const);
  await withDirLock(dir, async () => {
    const layout = await Layout.init(layoutDir);
    await createStack(config, {
      lock,
      access,
      layout,
      tags,
      epoch: DEFAULT_EPOCH,
      roles,
      sbomDir,
    });
  });
  const rootfsCache = new Map<string, Promise<string>>();
  const tagOf = (key: StackImageKey): string => {
    const t = tags[key];
    if (!t) throw new Error(`the test stack has no image ${key} (images: ${Object.keys(tags).join(', ')})`);
    return t;
  };
  return {
    config,
    lock,
    lockFile,
    layoutDir,
    tags,
    sbomDir,
    image: async (role) => (await Layout.open(layoutDir)).image(tagOf(role)),
    rootfs(role) {
      let p = rootfsCache.get(role);
      if (!p) {
        p = unpacked(layoutDir, tagOf(role));
        rootfsCache.set(role, p);
      }
      return p;
    },
  };
}

// Unpacked root filesystems live under the system temp dir, not ~/.cache: bubblewrap started as
// uid 1000 must be able to reach them, and root's home is not traversable for other users.
async function unpacked(layoutDir: string, tag: string): Promise<string> {
  const layout = await Layout.open(layoutDir);
  const desc = await layout.resolve(tag);
  const parent = path.join(tmpdir(), 'kiln-test-rootfs');
  await mkdir(parent, { recursive: true, mode: 0o755 });
  await chmod(parent, 0o755);
  const target = path.join(parent, desc.digest.slice(7, 23));
  // Root filesystems of older stack images (a changed lock or assembly) are hundreds of MB each:
  // drop the ones nobody has unpacked for a day.
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const p = path.join(parent, name);
    if (p === target || name.endsWith('.lock')) continue;
    const st = await stat(p).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > 24 * 3600_000) await rm(p, { recursive: true, force: true });
  }
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  ) {
    // Mark it used, so that the clean-up above keeps it.
    await utimes(target, new Date(), new Date());
    return target;
  }
  return withDirLock(target, async () => {
    if (
      await stat(target).then(
        () => true,
        () => false,
      )
    )
      return target;
    const image = await layout.image(tag);
    const tmp = `${target}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    for (const l of await image.layers()) {
      await extract(await l.compressed(), tmp, { whiteouts: true, times: false });
    }
    await chmod(tmp, 0o755);
    await rename(tmp, target);
    return target;
  });
}

/** layerFile is the path of an image's single layer blob (for tar-level checks). */
export async function layerFile(stack: TestStack, role: StackImageKey): Promise<string> {
  const image = await stack.image(role);
  const [layer] = await image.layers();
  const d = await layer!.digest();
  return path.join(stack.layoutDir, 'blobs', 'sha256', d.slice(7));
}
