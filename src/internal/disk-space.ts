import { statfsSync } from 'node:fs';

// Free space on the host's filesystems, and how sizes are written for people. Shared by the
// build's disk watcher (sandbox/) and the extractor's limits (layers/): neither may run the host's
// filesystem below its reserve.

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Kept free on the host filesystem of what kiln writes into, whatever a budget allows. */
export const DEFAULT_DISK_RESERVE_BYTES = 2 * GiB;

/** Free bytes (for an unprivileged writer), free inodes and total inodes of the filesystem of `p`. */
export function freeSpace(p: string): { bytes: number; inodes: number; totalInodes: number } {
  const s = statfsSync(p);
  return { bytes: s.bavail * s.bsize, inodes: s.ffree, totalInodes: s.files };
}

/** The inode reserve: 1% of the filesystem's inodes, at least 1000 (0 for filesystems without any). */
export function inodeReserve(total: number): number {
  return total === 0 ? 0 : Math.max(1000, Math.floor(total / 100));
}

/** formatBytes writes a size as people read it: `10 GiB`, `64 MiB`, `512 bytes`. */
export function formatBytes(n: number): string {
  const fmt = (v: number, unit: string) => `${v.toFixed(1).replace(/\.0$/, '')} ${unit}`;
  if (n >= GiB) return fmt(n / GiB, 'GiB');
  if (n >= MiB) return fmt(n / MiB, 'MiB');
  if (n >= KiB) return fmt(n / KiB, 'KiB');
  return `${n} bytes`;
}
