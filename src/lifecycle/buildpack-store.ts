import { join } from 'node:path';
import { type ApiVersion, buildpackApi } from '../cnb/api.ts';
import {
  type BuildpackToml,
  type Order,
  readBuildpackToml,
  type Target,
  targetsOf,
} from '../cnb/buildpack-toml.ts';
import { escapeId } from '../cnb/ids.ts';
import { KilnError } from '../internal/errors.ts';
import {
  existsInRoot,
  inRoot,
  lstatInRoot,
  readdirInRootIfExists,
  shownPath,
} from '../internal/safe-read.ts';

/**
 * How the store's files are named in errors: its content is a builder's or a buildpackage's,
 * untrusted, so it is read through safe-read (a symlinked buildpack.toml is refused).
 */
const STORE = { what: 'the buildpacks directory', shown: '/cnb/buildpacks' } as const;

/** BuildpackDescriptor is a buildpack found in the store, with its descriptor decoded once. */
export interface BuildpackDescriptor {
  readonly id: string;
  readonly version: string;
  readonly api: ApiVersion;
  readonly homepage?: string;
  /** Host directory holding buildpack.toml. */
  readonly dir: string;
  /** Path of `dir` relative to the store root (`<escaped id>/<version>`), the same inside the sandbox. */
  readonly relativeDir: string;
  readonly toml: BuildpackToml;
  /** A composite buildpack has an order and no executables. */
  readonly order?: Order;
  readonly targets: readonly Target[];
  readonly clearEnv: boolean;
  readonly sbomFormats: readonly string[];
  readonly execEnv: readonly string[];
}

/**
 * BuildpackStore finds buildpacks in a directory laid out as the builder spec's
 * `/cnb/buildpacks/<escaped id>/<version>/buildpack.toml` (CNB_BUILDPACKS_DIR). Descriptors are
 * read once and cached. The store root is what the sandbox mounts at `/cnb/buildpacks`.
 */
export class BuildpackStore {
  readonly root: string;
  readonly #cache = new Map<string, Promise<BuildpackDescriptor>>();

  constructor(root: string) {
    this.root = root;
  }

  /**
   * lookup returns the buildpack `id@version`. Without a version the store's only version is
   * used (an error when there are several). Unknown buildpacks and unsupported Buildpack APIs
   * throw KilnError (exit 12 for the API).
   */
  lookup(id: string, version?: string): Promise<BuildpackDescriptor> {
    const key = `${id}@${version ?? ''}`;
    let p = this.#cache.get(key);
    if (!p) {
      p = this.#load(id, version);
      this.#cache.set(key, p);
    }
    return p;
  }

  async #load(id: string, version: string | undefined): Promise<BuildpackDescriptor> {
    if (!version) {
      let versions: string[];
      versions = (readdirInRootIfExists(this.root, escapeId(id), STORE) ?? [])
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
      if (versions.length !== 1) {
        throw new KilnError(
          versions.length === 0
            ? `buildpack ${id} not found in ${this.root}`
            : `buildpack ${id} has several versions in ${this.root} (${versions.sort().join(', ')}): name one`,
        );
      }
      version = versions[0]!;
    }
    const relativeDir = join(escapeId(id), version);
    const dir = join(this.root, relativeDir);
    const file = inRoot(this.root, `${relativeDir}/buildpack.toml`, STORE);
    const path = shownPath(file);
    if (!existsInRoot(file.root, file.rel, file))
      throw new KilnError(`buildpack ${id}@${version} not found: expected ${path}`);
    const toml = await readBuildpackToml(file);
    const api = buildpackApi(toml.api, path);
    if (toml.buildpack.id !== id || toml.buildpack.version !== version) {
      throw new KilnError(
        `${path}: declares ${toml.buildpack.id}@${toml.buildpack.version}, expected ${id}@${version}`,
      );
    }
    const hasBinBuild = existsInRoot(this.root, `${relativeDir}/bin/build`, STORE);
    return {
      id,
      version,
      api,
      homepage: toml.buildpack.homepage,
      dir,
      relativeDir,
      toml,
      order: toml.order?.length ? toml.order : undefined,
      targets: targetsOf(toml, hasBinBuild),
      clearEnv: toml.buildpack['clear-env'] ?? false,
      sbomFormats: toml.buildpack['sbom-formats'] ?? [],
      // exec-env on the buildpack only means something from Buildpack API 0.12.
      execEnv: api.atLeast('0.12') ? (toml.buildpack['exec-env'] ?? []) : [],
    };
  }
}

/**
 * isExecutable tells whether `bin/<name>` of a buildpack is something kiln may ask the sandbox to
 * execute: an executable regular file, or a link (`bin/build -> main`, common in libcnb
 * buildpacks), which only the sandbox resolves, in its own root; kiln never follows it here.
 */
export function isExecutable(bp: BuildpackDescriptor, name: 'build' | 'detect'): boolean {
  const root = bp.dir.slice(0, bp.dir.length - bp.relativeDir.length);
  const st = lstatInRoot(root, `${bp.relativeDir}/bin/${name}`, STORE);
  return st !== undefined && (st.isSymbolicLink() || (st.isFile() && (st.mode & 0o111) !== 0));
}
