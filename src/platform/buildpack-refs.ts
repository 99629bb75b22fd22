import { chmod, cp, mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { readBuildpackToml } from '../cnb/buildpack-toml.ts';
import { escapeId } from '../cnb/ids.ts';
import { UsageError } from '../internal/errors.ts';
import { isDir } from '../internal/fs.ts';
import { lstatInRoot, statInRoot } from '../internal/safe-read.ts';
import { extract } from '../layers/extract.ts';
import { BUILDPACKAGE_LIMITS, ExtractBudget } from '../layers/extract-limits.ts';
import type { Image } from '../oci/image.ts';
import { BUILDER } from './builder-facts.ts';

// `--buildpack` references (and project.toml's groups): ids of the builder's buildpacks,
// buildpack directories, and buildpackage images, resolved into the group to run and the
// buildpacks directory the sandbox mounts at /cnb/buildpacks.

/** A buildpack as a group names it. */
export interface BuildpackRef {
  readonly id: string;
  readonly version?: string;
}

/** What resolveBuildpacks reads. */
export interface BuildpackRefs {
  /** `--buildpack` values, the group to run instead of the builder's order. */
  readonly buildpacks?: readonly string[];
  /** A buildpacks directory to use instead of the builder's /cnb/buildpacks. */
  readonly extraBuildpacksDir?: string;
  /** project.toml `io.buildpacks.pre.group` / `post.group`, around every group. */
  readonly preBuildpacks?: readonly string[];
  readonly postBuildpacks?: readonly string[];
  /** Opens a buildpackage image named by a `--buildpack` value (undefined: not an image). */
  readonly openBuildpackage?: (ref: string) => Promise<Image | undefined>;
}

/** The resolved references. */
export interface ResolvedBuildpacks {
  /** The buildpacks directory to mount (the builder's, or a private copy with additions). */
  readonly root: string;
  readonly group?: BuildpackRef[];
  readonly pre: BuildpackRef[];
  readonly post: BuildpackRef[];
}

function parseBuildpackRef(ref: string): BuildpackRef {
  const at = ref.lastIndexOf('@');
  return at > 0 ? { id: ref.slice(0, at), version: ref.slice(at + 1) } : { id: ref };
}

/**
 * resolveBuildpacks turns `--buildpack` values into a group. Ids name the builder's buildpacks;
 * directories and buildpackage images are added to a private copy of the builder's buildpacks
 * (the sandbox mounts one directory at /cnb/buildpacks), so the builder's rootfs stays untouched.
 */
export async function resolveBuildpacks(
  r: BuildpackRefs,
  rootfs: string,
  work: string,
): Promise<ResolvedBuildpacks> {
  // The builder's /cnb/buildpacks is mounted and copied below by path: it must be a directory
  // of the rootfs, not a link (to a host directory) that both would follow.
  if (!r.extraBuildpacksDir) statInRoot(rootfs, 'cnb/buildpacks', BUILDER);
  const dir = new BuildpacksDir(r.extraBuildpacksDir ?? path.join(rootfs, 'cnb', 'buildpacks'), work);
  const all = async (refs: readonly string[] | undefined) => {
    const out: BuildpackRef[] = [];
    for (const ref of refs ?? []) out.push(await dir.resolve(ref, r.openBuildpackage));
    return out;
  };
  const group = r.buildpacks?.length ? await all(r.buildpacks) : undefined;
  const pre = await all(r.preBuildpacks);
  const post = await all(r.postBuildpacks);
  // `root` last: resolving may have switched it to the private copy.
  return { root: dir.root, ...(group ? { group } : {}), pre, post };
}

/** The buildpacks directory of a build: the builder's until something is added to it. */
class BuildpacksDir {
  readonly #builderRoot: string;
  readonly #work: string;
  #root: string;
  #images = 0;

  constructor(builderRoot: string, work: string) {
    this.#builderRoot = builderRoot;
    this.#root = builderRoot;
    this.#work = work;
  }

  get root(): string {
    return this.#root;
  }

  /** own switches to (and returns) the private copy of the builder's buildpacks. */
  async #own(): Promise<string> {
    if (this.#root !== this.#builderRoot) return this.#root;
    this.#root = path.join(this.#work, 'buildpacks');
    await mkdir(this.#root, { mode: 0o755 });
    await chmod(this.#root, 0o755);
    if (await isDir(this.#builderRoot))
      await cp(this.#builderRoot, this.#root, { recursive: true, verbatimSymlinks: true });
    return this.#root;
  }

  /** resolve tries a directory, a buildpack the builder has, then a buildpackage image. */
  async resolve(ref: string, open: BuildpackRefs['openBuildpackage']): Promise<BuildpackRef> {
    const hasToml = await stat(path.join(ref, 'buildpack.toml')).then(
      () => true,
      () => false,
    );
    if (hasToml) return this.#addDirectory(ref);
    const asId = parseBuildpackRef(ref);
    if (!/^\.\.?$/.test(asId.id) && lstatInRoot(this.#builderRoot, escapeId(asId.id), BUILDER)?.isDirectory())
      return asId;
    const image = await open?.(ref);
    if (image) return this.#addImage(ref, image);
    // A path (not an id) that holds no buildpack: say so now, not as a missing id during detect.
    const isRefDir = await isDir(ref);
    if (isRefDir || /^(\.{0,2}\/|~)/.test(ref)) {
      const what = isRefDir ? `no buildpack.toml in ${ref}` : 'no such directory or buildpackage';
      throw new UsageError(
        `--buildpack ${ref}: ${what} (expected a buildpack directory, id[@version], a .cnb file or a buildpackage image)`,
      );
    }
    return asId; // detect reports it as not found, naming it
  }

  async #addDirectory(ref: string): Promise<BuildpackRef> {
    const toml = await readBuildpackToml(path.join(ref, 'buildpack.toml'));
    const dst = path.join(await this.#own(), escapeId(toml.buildpack.id), toml.buildpack.version);
    await rm(dst, { recursive: true, force: true });
    await cp(path.resolve(ref), dst, { recursive: true, verbatimSymlinks: true });
    await chmodTree(dst);
    return { id: toml.buildpack.id, version: toml.buildpack.version };
  }

  async #addImage(ref: string, image: Image): Promise<BuildpackRef> {
    const tmp = path.join(this.#work, `bp-image-${this.#images++}`);
    // Inert: the work dir is reachable by the build user; no setuid file may appear there.
    const limits = new ExtractBudget(`--buildpack ${ref}`, BUILDPACKAGE_LIMITS);
    for (const layer of await image.layers()) {
      limits.layer = String(await layer.digest());
      await extract(await layer.uncompressed(), tmp, { inert: true, special: 'skip', limits }).catch(
        async (e: unknown) => {
          await rm(tmp, { recursive: true, force: true });
          throw e;
        },
      );
    }
    const label = (await image.configFile()).config?.Labels?.['io.buildpacks.buildpackage.metadata'];
    const md = label ? (JSON.parse(label) as { id?: string; version?: string }) : {};
    if (!md.id)
      throw new UsageError(
        `--buildpack ${ref}: not a buildpackage (no io.buildpacks.buildpackage.metadata label)`,
      );
    // cp follows links on the way to its source: cnb/ or cnb/buildpacks of the package's layers
    // must be directories of the package, not links to a host directory.
    statInRoot(tmp, 'cnb/buildpacks', {
      what: 'the buildpackage',
      shown: ref,
      userInput: true,
    });
    await cp(path.join(tmp, 'cnb', 'buildpacks'), await this.#own(), {
      recursive: true,
      verbatimSymlinks: true,
    });
    await chmodTree(this.#root);
    return { id: md.id, ...(md.version ? { version: md.version } : {}) };
  }
}

/** Buildpack files must be readable (and their dirs searchable) by the build user. */
async function chmodTree(dir: string): Promise<void> {
  const st = await stat(dir);
  await chmod(dir, st.isDirectory() || (st.mode & 0o111) !== 0 ? 0o755 : 0o644);
  if (!st.isDirectory()) return;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isSymbolicLink()) continue;
    await chmodTree(path.join(dir, e.name));
  }
}
