import path from 'node:path';
import type { Order } from '../cnb/buildpack-toml.ts';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import { readOrderToml } from '../cnb/order-toml.ts';
import { readRunToml } from '../cnb/run-toml.ts';
import { inRoot, isDirInRoot, UntrustedFileError } from '../internal/safe-read.ts';
import { extract } from '../layers/extract.ts';
import type { Image } from '../oci/image.ts';
import { type PrunePolicy, RootfsCache } from '../sandbox/rootfs-cache.ts';

// What the platform reads from the builder, once per build: its config (the build user, the
// environment), its unpacked root filesystem, and the files there that name the run image
// (/cnb/run.toml), the order (/cnb/order.toml) and the build config (/cnb/build-config).

/**
 * How a builder's own files are named in errors (`/cnb/order.toml`). They are read through
 * internal/safe-read inside the unpacked rootfs: a symlink there is refused, never followed.
 */
export const BUILDER = {
  what: "the builder's root filesystem",
  shown: '/',
  exitCode: ExitCode.Failed,
} as const;

/** The builder to build with. */
export interface BuilderInput {
  readonly image: Image;
  readonly name: string;
}

/** The builder image's config, read once. */
export interface BuilderConfig {
  /** The build user (CNB_USER_ID / CNB_GROUP_ID; never 0). */
  readonly uid: number;
  readonly gid: number;
  /** The image's config env. */
  readonly env: Readonly<Record<string, string>>;
}

function envOf(env: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env ?? []) {
    const i = e.indexOf('=');
    if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

/** readBuilderConfig reads the builder's env and build user; a root or malformed user is refused. */
export async function readBuilderConfig(builder: BuilderInput): Promise<BuilderConfig> {
  const env = envOf((await builder.image.configFile()).config?.Env);
  const uid = Number(env.CNB_USER_ID ?? '1000');
  const gid = Number(env.CNB_GROUP_ID ?? '1000');
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0)
    throw new KilnError(
      `builder ${builder.name}: CNB_USER_ID/CNB_GROUP_ID must name a non-root build user (got ${env.CNB_USER_ID}:${env.CNB_GROUP_ID})`,
      ExitCode.InvalidArgs,
    );
  return { uid, gid, env };
}

/**
 * unpackBuilder unpacks the builder image once per digest (shared, read-only, inert: no setuid
 * bits or device nodes from the builder reach the host) and returns its root; a new unpack
 * applies the cache's bound (`bound`, default DEFAULT_ROOTFS_BOUND).
 */
export async function unpackBuilder(image: Image, cacheDir: string, bound?: PrunePolicy): Promise<string> {
  return new RootfsCache(cacheDir, bound ? { bound } : {}).ensureImage(image, async (tar, dest) => {
    await extract(tar, dest, { whiteouts: true, inert: true, special: 'skip' });
  });
}

/** rethrowUntrusted lets a refused builder file fail the build; other read errors read as absent. */
function rethrowUntrusted(e: unknown): undefined {
  if (e instanceof UntrustedFileError) throw e;
  return undefined;
}

/**
 * runImageOf names the run image to build on (`--run-image`, else the builder's first) and the
 * mirrors run.toml lists for it (recorded in the label so rebase can accept them).
 */
export async function runImageOf(
  rootfs: string,
  builder: BuilderInput,
  flag: string | undefined,
): Promise<{ name: string; mirrors: string[] }> {
  const run = await readRunToml(inRoot(rootfs, 'cnb/run.toml', BUILDER)).catch(rethrowUntrusted);
  const name = flag ?? run?.images?.[0]?.image;
  if (!name)
    throw new KilnError(
      `builder ${builder.name} names no run image (/cnb/run.toml): pass --run-image`,
      ExitCode.InvalidArgs,
    );
  const entry = run?.images?.find((i) => i.image === name || (i.mirrors ?? []).includes(name));
  return { name, mirrors: entry ? [...(entry.mirrors ?? [])] : [] };
}

/** runImagesOf lists every run image the builder's run.toml names (each flavour); none when it has no run.toml. */
export async function runImagesOf(rootfs: string): Promise<string[]> {
  const run = await readRunToml(inRoot(rootfs, 'cnb/run.toml', BUILDER)).catch(() => undefined);
  return (run?.images ?? [])
    .map((i) => i.image)
    .filter((i): i is string => typeof i === 'string' && i !== '');
}

/** The order to detect: `--buildpack`'s group or the builder's order, with pre/post groups around each. */
export async function orderOf(
  rootfs: string,
  refs: {
    readonly group?: readonly { id: string; version?: string }[];
    readonly pre: readonly { id: string; version?: string }[];
    readonly post: readonly { id: string; version?: string }[];
  },
): Promise<Order> {
  const base: Order = refs.group
    ? [{ group: refs.group.map((b) => ({ ...b, optional: false })) }]
    : (await readOrderToml(inRoot(rootfs, 'cnb/order.toml', BUILDER))).order;
  // project.toml pre/post groups go around every group of the order.
  return refs.pre.length || refs.post.length
    ? base.map((g) => ({ ...g, group: [...refs.pre, ...g.group, ...refs.post] }))
    : base;
}

/** buildConfigDirOf is the rootfs's /cnb/build-config, when it is a directory there. */
export function buildConfigDirOf(rootfs: string): string | undefined {
  return isDirInRoot(rootfs, 'cnb/build-config', BUILDER)
    ? path.join(rootfs, 'cnb', 'build-config')
    : undefined;
}
