import { access, constants, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type ApiVersion, buildpackApi } from '../cnb/api.ts';
import {
  type BuildpackToml,
  type Order,
  readBuildpackToml,
  type Target,
  targetsOf,
} from '../cnb/buildpack-toml.ts';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import { escapeId } from '../cnb/ids.ts';

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
    const idDir = join(this.root, escapeId(id));
    if (!version) {
      let versions: string[];
      try {
        versions = (await readdir(idDir, { withFileTypes: true }))
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        versions = [];
      }
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
    const path = join(dir, 'buildpack.toml');
    try {
      await access(path);
    } catch {
      throw new KilnError(`buildpack ${id}@${version} not found: expected ${path}`);
    }
    const toml = await readBuildpackToml(path);
    const api = buildpackApi(toml.api, path);
    if (toml.buildpack.id !== id || toml.buildpack.version !== version) {
      throw new KilnError(
        `${path}: declares ${toml.buildpack.id}@${toml.buildpack.version}, expected ${id}@${version}`,
        ExitCode.Failed,
      );
    }
    const hasBinBuild = await exists(join(dir, 'bin', 'build'));
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

/** isExecutable tells whether `path` is a file kiln may ask the sandbox to execute. */
export async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
