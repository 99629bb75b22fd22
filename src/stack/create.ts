import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KilnError } from '../internal/errors.ts';
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
import { DEFAULT_FLAVOUR, hasFlavours, runFlavours, type StackConfig } from './config.ts';
import { writeStatusD } from './dpkg-db.ts';
import { finishRunRoot } from './finish.ts';
import { rootLayer, StackLabel, stackImage, stackLabels } from './image.ts';
import { type LockedPackage, lockDigest, lockedFlavour, type StackLock } from './lock.ts';
import { prepareRoot, unpackPackages } from './rootfs.ts';
import { attachSbom, KILN_TOOL, packageComponents, sbomDocuments, writeSbomFiles } from './sbom.ts';

/** Bumped whenever assembly changes what it writes: part of every image's recipe digest. */
export const ASSEMBLY_VERSION = '3';

/** Role names the two images of a stack. */
export type Role = 'run' | 'build';

/** CreatedImage is one stack image written to the layout. */
export interface CreatedImage {
  readonly role: Role;
  /** The run-image flavour (DEFAULT_FLAVOUR for [run]); absent for the build image. */
  readonly flavour?: string;
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
  /**
   * Which run-image flavours other than the default to make when the run role is made (default:
   * all of the stack's).
   */
  readonly flavours?: readonly string[];
  /** Tag of each flavour's image (default: `<run tag>-<flavour>`). */
  readonly flavourTags?: Readonly<Record<string, string>>;
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
export function recipeOf(
  config: StackConfig,
  lock: StackLock,
  role: Role,
  epoch: number,
  flavour: string = DEFAULT_FLAVOUR,
): string {
  // The default flavour's recipe, and that of a stack without flavours, is what it was before
  // flavours existed: the same stack file keeps making the same images.
  const which = role === 'run' && flavour !== DEFAULT_FLAVOUR ? `run:${flavour}` : role;
  const { flavours, ...run } = config.run;
  const recipeConfig = hasFlavours(config) ? config : { ...config, run };
  return sha256(
    JSON.stringify({ v: ASSEMBLY_VERSION, role: which, config: recipeConfig, lock: lockDigest(lock), epoch }),
  );
}

/** flavourTag is the tag of a run-image flavour's image in `opts`' layout. */
export function flavourTag(opts: Pick<CreateOptions, 'tags' | 'flavourTags'>, flavour: string): string {
  if (flavour === DEFAULT_FLAVOUR) return opts.tags.run;
  return opts.flavourTags?.[flavour] ?? `${opts.tags.run}-${flavour}`;
}

/** StackImages are what createStack made: the build image, the run image and its flavours. */
export interface StackImages {
  readonly run: CreatedImage | undefined;
  readonly build: CreatedImage | undefined;
  /** The run-image flavours other than the default, by name. */
  readonly flavours: Readonly<Record<string, CreatedImage>>;
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
    // An image that is missing or cannot be read is made again, as one with another recipe is.
    return undefined;
  }
}

/**
 * createStack makes the run and build images of `config` (and the run image's flavours) from
 * exactly the packages of `lock` and writes them to the layout under their tags. An image whose
 * recipe (lock, config, epoch, assembly version) matches the one already tagged is reused without
 * unpacking anything.
 */
export async function createStack(config: StackConfig, opts: CreateOptions): Promise<StackImages> {
  const out: {
    run: CreatedImage | undefined;
    build: CreatedImage | undefined;
    flavours: Record<string, CreatedImage>;
  } = { run: undefined, build: undefined, flavours: {} };
  const roles = opts.roles ?? (['run', 'build'] as const);
  const jobs: { role: Role; flavour?: string }[] = [];
  for (const role of roles) {
    if (role === 'build') jobs.push({ role });
    else {
      const wanted = opts.flavours ? new Set([DEFAULT_FLAVOUR, ...opts.flavours]) : undefined;
      for (const f of runFlavours(config))
        if (!wanted || wanted.has(f.flavour)) jobs.push({ role, flavour: f.flavour });
    }
  }
  for (const { role, flavour } of jobs) {
    const tag = flavour === undefined ? opts.tags[role] : flavourTag(opts, flavour);
    const recipe = recipeOf(config, opts.lock, role, opts.epoch, flavour);
    let made: CreatedImage | undefined;
    if (!opts.force) {
      const have = await existingRecipe(opts.layout, tag);
      if (have && have.recipe === recipe) {
        const descriptor = await opts.layout.resolve(tag);
        opts.log?.(`${label(role, flavour)} image ${tag} is up to date (${descriptor.digest})`);
        made = {
          role,
          ...(flavour !== undefined ? { flavour } : {}),
          image: have.image,
          descriptor,
          tag,
          reused: true,
        };
      }
    }
    made ??= await createImage(config, role, recipe, opts, flavour);
    if (role === 'build') out.build = made;
    else if (flavour === DEFAULT_FLAVOUR) out.run = made;
    else out.flavours[flavour!] = made;
  }
  return out;
}

/** label names an image in log lines: `run`, `build`, or `run (shell)`. */
function label(role: Role, flavour: string | undefined): string {
  return flavour === undefined || flavour === DEFAULT_FLAVOUR ? role : `${role} (${flavour})`;
}

/** removeAbandoned deletes staging dirs of runs that were killed (their pid is gone). */
async function removeAbandoned(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    // `run-<pid>-…`/`build-<pid>-…` (optionally `_<flavour>`) is what older versions named a stage.
    const pid = tempOwner(name) ?? Number(/^(?:run|build)(?:_[a-z0-9-]+)?-(\d+)-/.exec(name)?.[1]);
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
  flavour: string | undefined,
): Promise<CreatedImage> {
  const pkgs: readonly LockedPackage[] =
    role === 'run' ? lockedFlavour(opts.lock, flavour ?? DEFAULT_FLAVOUR) : opts.lock.build.packages;
  const what = label(role, flavour);
  const tag = role === 'run' ? flavourTag(opts, flavour ?? DEFAULT_FLAVOUR) : opts.tags.build;
  if (pkgs.length === 0) throw new KilnError(`stack lock has no packages for the ${what} image`);
  const t0 = Date.now();
  const debs = await fetchPackages(pkgs, opts.access);
  opts.log?.(`${what}: ${pkgs.length} packages ready in the cache (${Date.now() - t0} ms)`);
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
  const stageName = flavour && flavour !== DEFAULT_FLAVOUR ? `${role}_${flavour}` : role;
  const stage = tempSibling(join(parent, stageName));
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
    opts.log?.(`${what}: unpacked ${unpacked.length} packages (${Date.now() - t1} ms)`);
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
      ...(flavour !== undefined ? { flavour } : {}),
    });
    const image = stackImage(layer, config, role, labels, opts.epoch, pkgs.length);
    const descriptor = await opts.layout.writeImage(image, tag);
    opts.log?.(`${what}: layer written (${Date.now() - t3} ms): ${tag} ${descriptor.digest}`);
    // The SBOM names the image by digest, so it is made after the image and attached to it.
    const docs = sbomDocuments(components, {
      subject: { name: tag, digest: descriptor.digest },
      epoch: opts.epoch,
      tool: KILN_TOOL,
    });
    await attachSbom(opts.layout, descriptor, docs);
    // run.sbom.*, build.sbom.*, and run-<flavour>.sbom.* for the other flavours.
    const base = flavour && flavour !== DEFAULT_FLAVOUR ? `run-${flavour}` : role;
    const sbomFiles = opts.sbomDir ? await writeSbomFiles(opts.sbomDir, base, docs) : [];
    return {
      role,
      ...(flavour !== undefined ? { flavour } : {}),
      image,
      descriptor,
      tag,
      reused: false,
      components,
      sbomFiles,
    };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
