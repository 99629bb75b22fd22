import path from 'node:path';
import type { Order } from '../cnb/buildpack-toml.ts';
import { OrderToml, readOrderToml } from '../cnb/order-toml.ts';
import { readRunTomlIfExists } from '../cnb/run-toml.ts';
import { readSystemToml, withSystemBuildpacks } from '../cnb/system-toml.ts';
import { readTomlFileIfExists } from '../cnb/toml-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { inRoot, isDirInRoot } from '../internal/safe-read.ts';
import { extract } from '../layers/extract.ts';
import type { ExtractLimits } from '../layers/extract-limits.ts';
import type { Image } from '../oci/image.ts';
import { parseReference } from '../registry/reference.ts';
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
    throw new UsageError(
      `builder ${builder.name}: CNB_USER_ID/CNB_GROUP_ID must name a non-root build user (got ${env.CNB_USER_ID}:${env.CNB_GROUP_ID})`,
    );
  return { uid, gid, env };
}

/**
 * unpackBuilder unpacks the builder image once per digest (shared, read-only, inert: no setuid
 * bits or device nodes from the builder reach the host) and returns its root; a new unpack
 * applies the cache's bound (`bound`, default DEFAULT_ROOTFS_BOUND).
 */
export async function unpackBuilder(
  image: Image,
  cacheDir: string,
  bound?: PrunePolicy,
  limits?: ExtractLimits,
): Promise<string> {
  return new RootfsCache(cacheDir, {
    ...(bound ? { bound } : {}),
    ...(limits ? { limits } : {}),
  }).ensureImage(image, async (tar, dest, budget) => {
    await extract(tar, dest, { whiteouts: true, inert: true, special: 'skip', limits: budget });
  });
}

/**
 * runImageOf names the run image to build on (`--run-image`, else the builder's first) and the
 * mirrors run.toml lists for it (recorded in the label so rebase can accept them).
 */
export async function runImageOf(
  rootfs: string,
  builder: BuilderInput,
  flag: string | undefined,
  destRegistry?: string,
): Promise<{ name: string; mirrors: string[] }> {
  // Only an absent run.toml names no run image; a broken one is an error naming it.
  const run = await readRunTomlIfExists(inRoot(rootfs, 'cnb/run.toml', BUILDER));
  if (flag === undefined && run?.images?.[0]?.image) {
    // The platform spec: of the run image and its mirrors, the one on the app image's registry.
    const first = run.images[0];
    const all = [first.image, ...(first.mirrors ?? [])];
    const name = all.find((c) => destRegistry !== undefined && registryOf(c) === destRegistry) ?? first.image;
    return { name, mirrors: all.filter((c) => c !== name) };
  }
  const name = flag;
  if (!name)
    throw new UsageError(`builder ${builder.name} names no run image (/cnb/run.toml): pass --run-image`);
  const entry = run?.images?.find((i) => i.image === name || (i.mirrors ?? []).includes(name));
  return { name, mirrors: entry ? [...(entry.mirrors ?? [])] : [] };
}

/** registryOf is the registry host of an image name; undefined for what is no registry reference. */
function registryOf(name: string): string | undefined {
  try {
    return parseReference(name).registry;
  } catch {
    return undefined;
  }
}

/** What to do about the builder's image extensions (`[[order-extensions]]` in /cnb/order.toml). */
export interface ExtensionPolicy {
  /** The builder's name, for the message. */
  readonly builder: string;
  /** `--skip-extensions`: build without them (with a warning) instead of failing. */
  readonly skip: boolean;
  readonly warn: (line: string) => void;
}

/**
 * checkExtensions refuses a builder whose order has image extensions: they are Dockerfiles that
 * extend or switch the build and run images, which kiln does not run, and building as if they were
 * not there would give an image other than the builder's author meant. One line (exit 22, a detect
 * error in the spec's table) names them; `--skip-extensions` builds without them, with a warning.
 */
function checkExtensions(orderExtensions: Order | undefined, policy: ExtensionPolicy): void {
  const ids = [
    ...new Set(
      (orderExtensions ?? []).flatMap((g) => g.group.map((e) => (e.version ? `${e.id}@${e.version}` : e.id))),
    ),
  ];
  if (ids.length === 0) return;
  const what = `image extensions ${ids.join(', ')} ([[order-extensions]] in /cnb/order.toml)`;
  if (!policy.skip)
    // Extensions are part of detection (the spec's order-extensions): refusing them is a detect error.
    throw new KilnError(
      `builder ${policy.builder} has ${what}: kiln does not run Dockerfile extensions; pass --skip-extensions to build without them`,
    ).inPhase('detect');
  policy.warn(
    `skipping ${what} of builder ${policy.builder}: kiln does not run Dockerfile extensions (--skip-extensions)`,
  );
}

/** runImagesOf lists every run image the builder's run.toml names (each flavour); none when it has no run.toml. */
export async function runImagesOf(rootfs: string): Promise<string[]> {
  const run = await readRunTomlIfExists(inRoot(rootfs, 'cnb/run.toml', BUILDER));
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
  extensions?: ExtensionPolicy,
  opts: { readonly system?: boolean } = {},
): Promise<Order> {
  // The builder's order.toml is read even for a --buildpack group: its extensions would apply too.
  const file = inRoot(rootfs, 'cnb/order.toml', BUILDER);
  const toml = refs.group ? await readTomlFileIfExists(file, OrderToml) : await readOrderToml(file);
  if (extensions) checkExtensions(toml?.['order-extensions'], extensions);
  const base: Order = refs.group
    ? [{ group: refs.group.map((b) => ({ ...b, optional: false })) }]
    : (toml?.order ?? []);
  // project.toml pre/post groups go around every group of the order.
  const grouped =
    refs.pre.length || refs.post.length
      ? base.map((g) => ({ ...g, group: [...refs.pre, ...g.group, ...refs.post] }))
      : base;
  // The builder's system buildpacks (/cnb/system.toml) around those, unless disabled.
  if (opts.system === false) return grouped;
  return withSystemBuildpacks(grouped, await readSystemToml(inRoot(rootfs, 'cnb/system.toml', BUILDER)));
}

/** buildConfigDirOf is the rootfs's /cnb/build-config, when it is a directory there. */
export function buildConfigDirOf(rootfs: string): string | undefined {
  return isDirInRoot(rootfs, 'cnb/build-config', BUILDER)
    ? path.join(rootfs, 'cnb', 'build-config')
    : undefined;
}
