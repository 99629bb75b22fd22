import type { Command } from 'commander';
import { loadConfig } from '../../config/config-file.ts';
import { formatBytes, parseByteSize, parseDuration } from '../../config/units.ts';
import { UsageError } from '../../internal/errors.ts';
import { type ExtractLimits, ROOTFS_LIMITS } from '../../layers/extract-limits.ts';
import {
  DEFAULT_ROOTFS_BOUND,
  type PrunePolicy,
  RootfsCache,
  sandboxCacheDir,
} from '../../sandbox/rootfs-cache.ts';
import type { CliContext } from '../context.ts';
import type { Settings } from '../settings.ts';

// `kiln cache prune`: removes unpacked builder and run-image roots from the rootfs cache, like
// `docker builder prune` (same flag names: --all, --keep-storage, --filter until=, plus
// --dry-run). Entries a running build or `kiln run` uses are never removed. Without flags it
// applies the configured bound (`[rootfs-cache]` in the config file), which builds also apply
// after unpacking a new root.

interface PruneFlags {
  all?: boolean;
  keepStorage?: string;
  filter: string[];
  dryRun?: boolean;
}

/** rootfsBound is the automatic bound of the rootfs cache: the config file's, else the default. */
export async function rootfsBound(settings: Settings): Promise<PrunePolicy> {
  const c = (await loadConfig(settings.configFile)).rootfsCache;
  return {
    ...(c.maxBytes !== undefined || c.maxAgeMs === undefined
      ? { maxBytes: c.maxBytes ?? DEFAULT_ROOTFS_BOUND.maxBytes }
      : {}),
    ...(c.maxAgeMs !== undefined || c.maxBytes === undefined
      ? { maxAgeMs: c.maxAgeMs ?? DEFAULT_ROOTFS_BOUND.maxAgeMs }
      : {}),
  };
}

/** rootfsLimits is what one image may unpack to in the rootfs cache: the config file's, else the default. */
export async function rootfsLimits(settings: Settings): Promise<ExtractLimits> {
  const c = (await loadConfig(settings.configFile)).rootfsCache;
  return {
    ...ROOTFS_LIMITS,
    ...(c.maxImageBytes !== undefined ? { maxBytes: c.maxImageBytes } : {}),
    ...(c.maxImageEntries !== undefined ? { maxEntries: c.maxImageEntries } : {}),
  };
}

/** policyOf turns the flags into a prune policy (no flag: the configured bound). */
export function policyOf(flags: PruneFlags, bound: PrunePolicy): PrunePolicy {
  let maxBytes: number | undefined;
  let maxAgeMs: number | undefined;
  if (flags.keepStorage !== undefined) {
    maxBytes = parseByteSize(flags.keepStorage);
    if (maxBytes === undefined)
      throw new UsageError(`--keep-storage "${flags.keepStorage}": expected a size such as 10GiB or 500MB`);
  }
  for (const f of flags.filter) {
    const m = /^until=(.*)$/.exec(f);
    maxAgeMs = m ? parseDuration(m[1]!) : undefined;
    if (maxAgeMs === undefined)
      throw new UsageError(`--filter "${f}": expected until=DURATION such as until=24h or until=30d`);
  }
  const dryRun = Boolean(flags.dryRun);
  if (flags.all) return { all: true, dryRun };
  if (maxBytes === undefined && maxAgeMs === undefined) return { ...bound, dryRun };
  return {
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    dryRun,
  };
}

/** register adds `kiln cache prune`. */
export function register(program: Command, ctx: CliContext): void {
  const cache = program.command('cache').description("manage kiln's caches");
  cache
    .command('prune')
    .description(
      'remove unpacked builder and run-image roots (the rootfs cache); entries in use are kept. Without flags: the configured bound ([rootfs-cache] max-size, max-age; default 8GiB, 30d)',
    )
    .option('-a, --all', 'remove every entry not in use')
    .option('--keep-storage <size>', 'keep at most this much, least recently used removed first (e.g. 10GiB)')
    .option(
      '--filter <until=DURATION>',
      'remove entries unused for longer than DURATION (e.g. until=24h, until=30d)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--dry-run', 'only list what would be removed')
    .action(async (flags: PruneFlags) => {
      const settings = ctx.settings;
      const hostUid = process.getuid?.() ?? 0;
      const policy = policyOf(flags, await rootfsBound(settings));
      const rootfs = new RootfsCache(await sandboxCacheDir(settings.cacheDir, hostUid));
      const report = await rootfs.prune(policy);
      const verb = policy.dryRun ? 'would remove' : 'removed';
      let freed = 0;
      for (const e of report.removed) {
        freed += e.bytes;
        ctx.stdout.write(
          `${verb} ${e.path} (${formatBytes(e.bytes)}, last used ${e.lastUsed.toISOString()}, ${e.reason})\n`,
        );
      }
      for (const p of report.inUse) ctx.log.info(`kept ${p}: in use`);
      ctx.log.info(
        `rootfs cache ${rootfs.dir}: ${verb} ${report.removed.length} (${formatBytes(freed)}), ${formatBytes(report.keptBytes)} kept`,
      );
    });
}
