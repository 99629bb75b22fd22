import { lchownSync, writeFileSync } from 'node:fs';
import { chmod, copyFile, lchown, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../internal/errors.ts';
import type { Binding } from './bindings.ts';

/** Options of writePlatformDir. */
export interface PlatformDirOptions {
  /** `<platform>/env/<NAME>` files: user build env (project.toml, --env-file, --env). */
  readonly env: Readonly<Record<string, string>>;
  /** `<platform>/bindings/<name>/` directories. */
  readonly bindings: readonly Binding[];
  /** A merged CA bundle to place at `<platform>/kiln/ca-certificates.crt` (see ca-certs.ts). */
  readonly caBundleFile?: string;
  /** Owner of binding files: the build user, so that only it (and kiln) can read them. */
  readonly uid?: number;
  readonly gid?: number;
}

/** Names of `<platform>/env` files: one path component. */
const ENV_FILE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * writePlatformDir fills a fresh platform directory (the build mounts it read-only at /platform
 * for detect and build, and nowhere else). Env files hold raw values (no newline added: the
 * lifecycle reads contents verbatim). Binding directories are 0500 and their files 0400, owned by
 * `uid:gid` when given, because they hold secrets. The directory lives in kiln's private scratch
 * space and is removed with it; it is never part of a layer or the cache.
 */
export async function writePlatformDir(dir: string, opts: PlatformDirOptions): Promise<void> {
  await mkdir(path.join(dir, 'env'), { recursive: true, mode: 0o755 });
  for (const [name, value] of Object.entries(opts.env)) {
    if (!ENV_FILE.test(name))
      throw new UsageError(`build env "${name}": not a valid environment variable name`);
    await writeFile(path.join(dir, 'env', name), value, { mode: 0o644 });
  }
  const own = async (p: string) => {
    if (opts.uid !== undefined || opts.gid !== undefined) await lchown(p, opts.uid ?? -1, opts.gid ?? -1);
  };
  const bindingsDir = path.join(dir, 'bindings');
  await mkdir(bindingsDir, { recursive: true, mode: 0o755 });
  for (const b of opts.bindings) {
    const bdir = path.join(bindingsDir, b.name);
    await mkdir(bdir, { mode: 0o700 });
    // Entries are small (secrets, one certificate each) and can be many (the ca-certificates
    // binding of the host bundle: ~300): written synchronously, they take ~10 ms instead of ~80 ms
    // of thread-pool round trips (open, write, close, chown each), and nothing else runs meanwhile.
    for (const e of b.entries) {
      const f = path.join(bdir, e.name);
      writeFileSync(f, e.content, { mode: 0o400 });
      if (opts.uid !== undefined || opts.gid !== undefined) lchownSync(f, opts.uid ?? -1, opts.gid ?? -1);
    }
    await chmod(bdir, 0o500);
    await own(bdir);
  }
  if (opts.caBundleFile) {
    await mkdir(path.join(dir, 'kiln'), { recursive: true, mode: 0o755 });
    await copyFile(opts.caBundleFile, path.join(dir, 'kiln', 'ca-certificates.crt'));
    await chmod(path.join(dir, 'kiln', 'ca-certificates.crt'), 0o644);
  }
}
