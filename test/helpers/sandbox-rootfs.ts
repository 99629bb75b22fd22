// Test helper: a root filesystem for sandbox tests that needs no image. It is a small directory
// with the sandbox's mount points and the usual merged-/usr symlinks; the host's /usr and /etc are
// bound read-only into it (extraMounts), so /bin/sh, bash, coreutils and friends work inside.
// The host's /root, /home, /tmp and /work are NOT in it: what a test plants there stays invisible.

import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Mount } from '../../src/sandbox/executor.ts';
import { MOUNT_POINTS } from '../../src/sandbox/executor.ts';

export interface HostRootfs {
  /** The directory holding everything (remove with cleanup). */
  readonly dir: string;
  readonly rootfs: string;
  /** Writable, owned by the build uid. */
  readonly workspace: string;
  readonly layers: string;
  /** Host /usr and /etc read-only. */
  readonly extraMounts: readonly Mount[];
  /** The usual build mounts: extraMounts + /workspace + /layers. */
  readonly mounts: readonly Mount[];
  cleanup(): Promise<void>;
}

/** Makes a throw-away rootfs plus writable workspace/layers owned by `uid:gid`. */
export async function makeHostRootfs(uid = 1000, gid = 1000): Promise<HostRootfs> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-sbx-'));
  // mkdtemp makes 0700 dirs; the sandbox user must be able to reach the mount sources.
  await chmod(dir, 0o755);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of [...MOUNT_POINTS, '/usr', '/etc']) await mkdir(path.join(rootfs, d), { recursive: true });
  for (const [name, target] of [
    ['bin', 'usr/bin'],
    ['sbin', 'usr/sbin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ] as const) {
    await symlink(target, path.join(rootfs, name));
  }
  const workspace = path.join(dir, 'workspace');
  const layers = path.join(dir, 'layers');
  for (const d of [workspace, layers]) {
    await mkdir(d);
    await chown(d, uid, gid);
  }
  const extraMounts: Mount[] = [
    { src: '/usr', dst: '/usr', readonly: true },
    { src: '/etc', dst: '/etc', readonly: true },
  ];
  return {
    dir,
    rootfs,
    workspace,
    layers,
    extraMounts,
    mounts: [
      ...extraMounts,
      { src: workspace, dst: '/workspace', readonly: false },
      { src: layers, dst: '/layers', readonly: false },
    ],
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * bwrapAsUid1000 runs `cmd` in `rootfs` (read-only, fresh /proc, /dev and /tmp, every namespace
 * unshared: no network) as uid:gid 1000:1000 with no supplementary groups, through setpriv and
 * bubblewrap (needs root). `extra` are bwrap arguments placed before the command.
 */
export function bwrapAsUid1000(
  rootfs: string,
  extra: readonly string[],
  cmd: readonly string[],
  timeoutMs: number,
): SpawnSyncReturns<string> {
  return spawnSync(
    'setpriv',
    [
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      'bwrap',
      '--unshare-all',
      '--die-with-parent',
      '--ro-bind',
      rootfs,
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      ...extra,
      ...cmd,
    ],
    { encoding: 'utf8', timeout: timeoutMs },
  );
}
