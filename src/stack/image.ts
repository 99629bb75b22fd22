import { writeLayer } from '../layers/layer-writer.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { walk } from '../layers/walk.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Image, Layer } from '../oci/image.ts';
import { imageFrom, isoOfEpoch } from '../oci/memory.ts';
import { DEFAULT_FLAVOUR, flavourOf, hasFlavours, type StackConfig, userOf } from './config.ts';

/** PATH of both images (Debian's default for root, which covers every user's tools). */
export const STACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Label keys kiln adds to stack images beyond the CNB ones. */
export const StackLabel = {
  /** Digest of stack.lock's canonical text: the exact package set. */
  Lock: 'io.kiln.stack.lock',
  /** Digest of everything the image is made from (lock, config, epoch, assembly version). */
  Recipe: 'io.kiln.stack.recipe',
  /** Which of the pair: "run" or "build". */
  Role: 'io.kiln.stack.role',
  /**
   * The run-image flavour ("default", "shell", ...; run images of stacks with flavours only). App
   * images inherit it from their run image: `kiln inspect` shows it, `kiln build --run-image
   * <flavour>` selects by it.
   */
  Flavour: 'io.kiln.stack.flavour',
} as const;

/**
 * rootLayer writes the tree at `root` as one deterministic layer: every entry owned by root
 * except the image user's home, which that user owns (the build user, or the run user in the run
 * image, must be able to write its HOME).
 */
export async function rootLayer(
  root: string,
  config: StackConfig,
  opts: { store: BlobStore; epoch: number; compression?: 'gzip' | 'zstd'; role?: 'run' | 'build' },
): Promise<Layer> {
  const u = userOf(config, opts.role ?? 'build');
  const home = `home/${u.name}`;
  const entries = (await walk(root, { uid: 0, gid: 0 })).map(
    (e): TarEntry =>
      e.path === home || e.path.startsWith(`${home}/`) ? { ...e, uid: u.uid, gid: u.gid } : e,
  );
  return writeLayer(entries, {
    store: opts.store,
    epoch: opts.epoch,
    compression: opts.compression ?? 'gzip',
  });
}

/** stackLabels are the CNB platform spec labels of a base image plus the stack file's own. */
export function stackLabels(
  config: StackConfig,
  role: 'run' | 'build',
  extra: { epoch: number; lockDigest: string; recipe: string; packages: number; flavour?: string },
): Record<string, string> {
  const created = isoOfEpoch(extra.epoch);
  const flavour = role === 'run' ? (extra.flavour ?? DEFAULT_FLAVOUR) : undefined;
  const name = flavour !== undefined ? flavourOf(config, flavour).name : config.build.name;
  const what =
    flavour !== undefined && flavour !== DEFAULT_FLAVOUR ? `run image, ${flavour} flavour` : `${role} image`;
  return {
    ...config.labels,
    'io.buildpacks.base.distro.name': config.distro.name,
    'io.buildpacks.base.distro.version': config.distro.version,
    'io.buildpacks.base.id': config.id,
    'io.buildpacks.stack.id': config.id,
    'io.buildpacks.base.released': created,
    ...(role === 'run' ? { 'io.buildpacks.rebasable': 'true' } : {}),
    'org.opencontainers.image.title': name,
    'org.opencontainers.image.created': created,
    'org.opencontainers.image.description': `${config.distro.name} ${config.distro.version} ${what} (${extra.packages} packages)`,
    [StackLabel.Lock]: extra.lockDigest,
    [StackLabel.Recipe]: extra.recipe,
    [StackLabel.Role]: role,
    // A stack without flavours labels none: its run image is byte for byte what it was before.
    ...(flavour !== undefined && hasFlavours(config) ? { [StackLabel.Flavour]: flavour } : {}),
  };
}

/** stackImage assembles the image config around the root layer. */
export function stackImage(
  layer: Layer,
  config: StackConfig,
  role: 'run' | 'build',
  labels: Record<string, string>,
  epoch: number,
  packages: number,
): Image {
  // The build image names its user in CNB_USER_ID/CNB_GROUP_ID (platform spec); the run image only
  // in User: CNB_USER_ID there would tell a platform the wrong owner of the app's layers.
  const u = userOf(config, role);
  const env = [`PATH=${STACK_PATH}`];
  if (role === 'build')
    env.push(`CNB_USER_ID=${u.uid}`, `CNB_GROUP_ID=${u.gid}`, `CNB_STACK_ID=${config.id}`);
  const clean = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
  return imageFrom({
    config: {
      architecture: config.archive.arch,
      os: 'linux',
      created: isoOfEpoch(epoch),
      config: {
        User: `${u.uid}:${u.gid}`,
        Env: env,
        WorkingDir: `/home/${u.name}`,
        Labels: clean,
      },
      history: [
        {
          created: isoOfEpoch(epoch),
          created_by: `kiln stack create: ${role} image from ${packages} Debian packages`,
        },
      ],
    },
    layers: [layer],
  });
}
