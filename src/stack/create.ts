import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KilnError } from '../cnb/exit-codes.ts';
import { pidAlive } from '../internal/process.ts';
import { tempOwner, tempSibling } from '../internal/temp-name.ts';
import type { Layout } from '../layout/layout.ts';
import { sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import type { Descriptor } from '../oci/schema.ts';
import { searchableByOthers } from '../sandbox/rootfs-cache.ts';
import type { SbomComponent } from '../sbom/model.ts';
import { type AccessOptions, fetchPackages } from './archive-access.ts';
import { finishBuildRoot, type SandboxOptions } from './build-root.ts';
import type { StackConfig } from './config.ts';
import { writeStatusD } from './dpkg-db.ts';
import { finishRunRoot } from './finish.ts';
import { rootLayer, StackLabel, stackImage, stackLabels } from './image.ts';
import { type LockedPackage, lockDigest, type StackLock } from './lock.ts';
import { prepareRoot, unpackPackages } from './rootfs.ts';
import { attachSbom, KILN_TOOL, packageComponents, sbomDocuments, writeSbomFiles } from './sbom.ts';

/** Bumped whenever assembly changes what it writes: part of every image's recipe digest. */
export const ASSEMBLY_VERSION = '3';

/** Role names the two images of a stack. */
export type Role = 'run' | 'build';

/** CreatedImage is one stack image written to the layout. */
export interface CreatedImage {
  readonly role: Role;
  readonly image: Image;
  readonly descriptor: Descriptor;
  readonly tag: string;
  /** True when an image with the same recipe was already there and nothing was rebuilt. */
  readonly reused: boolean;
  /** The image's OS packages as SBOM components (absent when reused). */
  readonly components?: readonly SbomComponent[];
  /** SBOM files written next to the image (absent when reused). */
  readonly sbomFiles?: readonly string[];
}

/** CreateOptions are the collaborators of stack creation (the CLI resolves all of them). */
export interface CreateOptions {
  readonly lock: StackLock;
  readonly access: AccessOptions;
  readonly layout: Layout;
  /** Tag of each image in the layout. */
  readonly tags: Readonly<Record<Role, string>>;
  /** SOURCE_DATE_EPOCH: every timestamp in the images. */
  readonly epoch: number;
  /** Which images to make (default both). */
  readonly roles?: readonly Role[];
  /** Parent of the staging directories (default: `<cacheDir>/stack-staging`). */
  readonly workDir?: string;
  /** Rebuild even when an image with the same recipe exists. */
  readonly force?: boolean;
  readonly sandbox?: SandboxOptions;
  readonly log?: (line: string) => void;
  /** Where the SBOM files go (`<role>.sbom.cdx.json`, `<role>.sbom.spdx.json`); default: not written as files. */
  readonly sbomDir?: string;
}

/** recipeOf digests everything a stack image is made from: same recipe, same image. */
export function recipeOf(config: StackConfig, lock: StackLock, role: Role, epoch: number): string {
  return sha256(JSON.stringify({ v: ASSEMBLY_VERSION, role, config, lock: lockDigest(lock), epoch }));
}

async function existingRecipe(
  layout: Layout,
  tag: string,
): Promise<{ image: Image; recipe: string } | undefined> {
  try {
    const image = await layout.image(tag);
    const cfg = await image.configFile();
    const recipe = cfg.config?.Labels?.[StackLabel.Recipe];
    return recipe ? { image, recipe } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * createStack makes the run and build images of `config` from exactly the packages of `lock`
 * and writes them to the layout under their tags. An image whose recipe (lock, config, epoch,
 * assembly version) matches the one already tagged is reused without unpacking anything.
 */
export async function createStack(
  config: StackConfig,
  opts: CreateOptions,
): Promise<Record<Role, CreatedImage | undefined>> {
  const out: Record<Role, CreatedImage | undefined> = { run: undefined, build: undefined };
  for (const role of opts.roles ?? (['run', 'build'] as const)) {
    const tag = opts.tags[role];
    const recipe = recipeOf(config, opts.lock, role, opts.epoch);
    if (!opts.force) {
      const have = await existingRecipe(opts.layout, tag);
      if (have && have.recipe === recipe) {
        const descriptor = await opts.layout.resolve(tag);
        opts.log?.(`${role} image ${tag} is up to date (${descriptor.digest})`);
        out[role] = { role, image: have.image, descriptor, tag, reused: true };
        continue;
      }
    }
    out[role] = await createImage(config, role, recipe, opts);
  }
  return out;
}

/** removeAbandoned deletes staging dirs of runs that were killed (their pid is gone). */
async function removeAbandoned(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    // `run-<pid>-…`/`build-<pid>-…` is what older versions named a stage.
    const pid = tempOwner(name) ?? Number(/^(?:run|build)-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    if (!pidAlive(pid)) await rm(join(parent, name), { recursive: true, force: true });
  }
}

/** Where root stages the build image when its cache dir is out of an unprivileged id's reach. */
const STAGING_FOR_ROOT = '/var/cache/kiln/stack-staging';

async function createImage(
  config: StackConfig,
  role: Role,
  recipe: string,
  opts: CreateOptions,
): Promise<CreatedImage> {
  const pkgs: readonly LockedPackage[] = opts.lock[role].packages;
  if (pkgs.length === 0) throw new KilnError(`stack lock has no packages for the ${role} image`);
  const t0 = Date.now();
  const debs = await fetchPackages(pkgs, opts.access);
  opts.log?.(`${role}: ${pkgs.length} packages ready in the cache (${Date.now() - t0} ms)`);
  let parent = opts.workDir ?? join(opts.access.cacheDir, 'stack-staging');
  // As root, the maintainer scripts' sandbox starts as a leased unprivileged id that must reach
  // the staged root (as for the rootfs cache, see sandboxCacheDir): not under /root, say.
  const sandboxed = role === 'build' && process.getuid?.() === 0;
  await mkdir(parent, { recursive: true });
  if (sandboxed && !(await searchableByOthers(parent))) {
    parent = STAGING_FOR_ROOT;
    // Explicit modes: the umask must not make it unreachable.
    await mkdir(parent, { recursive: true });
    for (const d of [dirname(parent), parent]) await chmod(d, 0o755);
  }
  await removeAbandoned(parent);
  const stage = tempSibling(join(parent, role));
  await mkdir(stage, { mode: 0o700 });
  // Searchable, not listable: the sandbox reaches root/ inside without seeing other stages.
  if (sandboxed) await chmod(stage, 0o711);
  try {
    const root = join(stage, 'root');
    await mkdir(root);
    await chmod(root, 0o755);
    await prepareRoot(root);
    const t1 = Date.now();
    const unpacked = await unpackPackages(
      pkgs.map((pkg, i) => ({ pkg, deb: debs[i]! })),
      root,
      { profile: role },
    );
    opts.log?.(`${role}: unpacked ${unpacked.length} packages (${Date.now() - t1} ms)`);
    const t2 = Date.now();
    if (role === 'run') {
      await finishRunRoot(root, config);
      await writeStatusD(root, unpacked);
    } else {
      await finishBuildRoot(root, unpacked, config, { ...opts.sandbox, epoch: opts.epoch });
      opts.log?.(`build: maintainer scripts configured (${Date.now() - t2} ms)`);
    }
    const components = await packageComponents(root, unpacked, config);
    const t3 = Date.now();
    const layer = await rootLayer(root, config, {
      store: opts.layout.blobs,
      epoch: opts.epoch,
      compression: config[role].compression,
      role,
    });
    const labels = stackLabels(config, role, {
      epoch: opts.epoch,
      lockDigest: lockDigest(opts.lock),
      recipe,
      packages: pkgs.length,
    });
    const image = stackImage(layer, config, role, labels, opts.epoch, pkgs.length);
    const descriptor = await opts.layout.writeImage(image, opts.tags[role]);
    opts.log?.(`${role}: layer written (${Date.now() - t3} ms): ${opts.tags[role]} ${descriptor.digest}`);
    // The SBOM names the image by digest, so it is made after the image and attached to it.
    const docs = sbomDocuments(components, {
      subject: { name: opts.tags[role], digest: descriptor.digest },
      epoch: opts.epoch,
      tool: KILN_TOOL,
    });
    await attachSbom(opts.layout, descriptor, docs);
    const sbomFiles = opts.sbomDir ? await writeSbomFiles(opts.sbomDir, role, docs) : [];
    return { role, image, descriptor, tag: opts.tags[role], reused: false, components, sbomFiles };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
