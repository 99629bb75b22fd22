import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../internal/errors.ts';
import type { Mount } from '../sandbox/executor.ts';

// `kiln build --volume <host>:<target>[:ro|rw]` (pack's flag): a host file or directory visible to
// detect and build, read-only unless `rw`. Volumes are never part of the image: only /layers and
// /workspace are exported, and a volume may not sit in either. Targets that would hide or replace
// what the platform mounts itself (the CNB directories, /proc, /dev, /sys, a whole /tmp or
// /home) are refused, as is `/` itself: a volume adds a path, it never changes the sandbox's
// contract.

/** Targets that may not be a volume nor contain one. */
const FORBIDDEN_TREES = ['/cnb', '/layers', '/workspace', '/platform', '/proc', '/dev', '/sys'];
/** Targets that may hold a volume below them but not be one (the sandbox mounts them itself). */
const FORBIDDEN_EXACT = ['/', '/tmp', '/home', '/run'];

/**
 * parseVolume turns one `--volume` value into a sandbox mount; `cwd` resolves a relative host
 * path, `workspace` is where the app is mounted (`--workspace`, default /workspace).
 */
export function parseVolume(spec: string, cwd: string, workspace = '/workspace'): Mount {
  const bad = (why: string): never => {
    throw new UsageError(`--volume ${spec}: ${why}`);
  };
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) bad('expected <host path>:<target path>[:ro|rw]');
  const [host, target, options = 'ro'] = parts as [string, string, string?];
  let readonly = true;
  for (const o of options.split(',')) {
    if (o === 'ro') readonly = true;
    else if (o === 'rw') readonly = false;
    else bad(`unsupported option "${o}" (ro or rw)`);
  }
  if (!host) bad('the host path is empty');
  if (!/^\//.test(target) || target.split('/').some((s) => s === '..' || s === '.'))
    bad('the target must be an absolute path without "." or ".." parts');
  const dst = path.posix.normalize(target).replace(/(.)\/+$/, '$1');
  for (const t of [...FORBIDDEN_TREES, ...(workspace === '/workspace' ? [] : [workspace])])
    if (dst === t || dst.startsWith(`${t}/`) || t.startsWith(`${dst}/`))
      bad(`the target ${dst} would cover ${t}, which the platform mounts itself`);
  if (FORBIDDEN_EXACT.includes(dst))
    bad(`the target ${dst} is mounted by the sandbox itself; use a path below it`);
  let src: string;
  try {
    // The host path as it really is: a link is followed once, here, and never again.
    src = realpathSync(path.resolve(cwd, host));
    const st = statSync(src);
    if (!st.isDirectory() && !st.isFile()) bad(`${src} is neither a file nor a directory`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    return bad(`host path ${path.resolve(cwd, host)} does not exist`);
  }
  return { src, dst, readonly };
}
