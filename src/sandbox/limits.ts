import { UsageError } from '../internal/errors.ts';

/**
 * The resource limits of a build, in the words users see: sizes (`10GiB`, `64MiB`, `4g`),
 * durations (`90s`, `30m`, `1h`), the defaults, and for each limit the one line that says it was
 * hit and how to raise it. The enforcement lives elsewhere (cgroup.ts, disk-budget.ts,
 * run-guard.ts, prlimit in _child.ts); this module only names things consistently.
 */

import { DEFAULT_DISK_RESERVE_BYTES, formatBytes } from '../internal/disk-space.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Defaults of `kiln build` (README.md "Limits" says why each is sized so): a Node.js build with a
 * few hundred MB of node_modules, or a Java build with a Maven/Gradle cache and a JDK, fits the
 * disk budget several times over; 4 GiB of memory fits javac, webpack and npm (Node's default heap
 * limit is 2-4 GiB); a single file larger than 4 GiB is not part of a normal image layer.
 */
export const BUILD_LIMIT_DEFAULTS = {
  diskBytes: 10 * GiB,
  fileSizeBytes: 4 * GiB,
  memoryBytes: 4 * GiB,
  /** Kept free on the host filesystem of /layers and /workspace whatever the budget says. */
  diskReserveBytes: DEFAULT_DISK_RESERVE_BYTES,
  /** Default `--timeout` where nobody watches the build (CI set, or output not a terminal). */
  unattendedTimeoutMs: 60 * 60 * 1000,
} as const;

/** How the user raises each limit (flag, then config key). */
export const RAISE = {
  disk: '--disk-budget or disk-budget in the kiln config',
  reserve: 'free space on the host, or lower --disk-reserve / disk-reserve in the kiln config',
  fileSize: '--file-size-limit or file-size-limit in the kiln config',
  memory: '--memory-limit or memory-limit in the kiln config',
  processes: '--process-limit or process-limit in the kiln config',
  timeout: '--timeout or timeout in the kiln config',
} as const;

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: KiB,
  kb: KiB,
  kib: KiB,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: 1024 * GiB,
  tb: 1024 * GiB,
  tib: 1024 * GiB,
};

/**
 * parseSize reads a byte size: a number with an optional binary unit (`64MiB`, `4g`, `10GB`,
 * `1.5GiB`; k/m/g/t are all powers of 1024, as ulimit and docker --memory read them). `what`
 * names the flag or key in the error.
 */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new UsageError(
      `${what} "${text}" is not a size: expected a number with an optional unit such as 512MiB, 4GiB or 10g`,
    );
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${what} "${text}" must be a positive size`);
  return n;
}

/**
 * parseDuration reads a duration: `90s`, `30m`, `1h`, `1h30m`, `500ms` or plain seconds. `0`,
 * `none` and `off` mean no limit (undefined).
 */
export function parseDuration(text: string, what: string): number | undefined {
  const t = text.trim().toLowerCase();
  if (t === '0' || t === 'none' || t === 'off') return undefined;
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of t.matchAll(re)) {
    if (m.index !== consumed) break;
    consumed += m[0].length;
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
  }
  if (t === '' || consumed !== t.length || !Number.isFinite(total) || total <= 0)
    throw new UsageError(
      `${what} "${text}" is not a duration: expected e.g. 90s, 30m, 1h or 1h30m (0 or none: no limit)`,
    );
  return Math.round(total);
}

export { formatBytes };

/** formatDuration writes milliseconds as the user would have typed them: `30s`, `90s`, `30m`, `1h`. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 100 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The one-line reasons a run was stopped by a limit (RunResult.limit). */
export const limitMessages = {
  disk: (used: number, budget: number, roots: readonly string[]) =>
    `the build's disk budget of ${formatBytes(budget)} for ${roots.join(' and ')} was exceeded (${formatBytes(used)} written); raise it with ${RAISE.disk}`,
  reserve: (path: string, free: number, reserve: number) =>
    `the host filesystem of ${path} has only ${formatBytes(free)} free, below the ${formatBytes(reserve)} kiln keeps free; ${RAISE.reserve}`,
  entries: (max: number, roots: readonly string[]) =>
    `the build created more than ${max} files and directories in ${roots.join(' and ')}; that many is not a real build`,
  inodes: (path: string, free: number) =>
    `the host filesystem of ${path} is running out of inodes (${free} left); the build created too many files`,
  memory: (limit: number) =>
    `it ran out of memory: the ${formatBytes(limit)} memory limit was reached and the kernel killed it; raise it with ${RAISE.memory}`,
  processes: (n: number) =>
    `the process limit of ${n} processes was reached (fork failed); raise it with ${RAISE.processes}`,
  fileSize: (n: number) =>
    `a file reached the ${formatBytes(n)} per-file size limit; raise it with ${RAISE.fileSize}`,
} as const;
