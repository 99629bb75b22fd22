import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exists } from './fsutil.ts';
import { readToml, writeToml } from './toml.ts';

/** LayerTypes are the `[types]` flags of `<layer>.toml` (all default false). */
export interface LayerTypes {
  readonly build?: boolean;
  readonly cache?: boolean;
  readonly launch?: boolean;
}

/** PreviousLayer is what the lifecycle restored for a layer: its metadata, and whether its files came back. */
export interface PreviousLayer {
  readonly metadata: Record<string, unknown>;
  /** True when the layer directory was restored (build or cache layers restored from the cache). */
  readonly hasContents: boolean;
}

/** layerDir is the directory of layer `name`. */
export function layerDir(layersDir: string, name: string): string {
  return join(layersDir, name);
}

/**
 * previousLayer reads what the restorer left for `name`: restored `<layer>.toml` files carry
 * metadata but never `[types]`, so the buildpack must write the types again to keep the layer.
 */
export async function previousLayer(layersDir: string, name: string): Promise<PreviousLayer | undefined> {
  const doc = await readToml(join(layersDir, `${name}.toml`));
  if (!doc) return undefined;
  const metadata = (doc.metadata as Record<string, unknown> | undefined) ?? {};
  return { metadata, hasContents: await exists(join(layersDir, name)) };
}

/** resetLayer empties layer `name` (directory and TOML) and returns its fresh directory. */
export async function resetLayer(layersDir: string, name: string): Promise<string> {
  const dir = layerDir(layersDir, name);
  await rm(join(layersDir, `${name}.toml`), { force: true });
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** writeLayerToml declares layer `name` with its types and metadata (written last, after the files). */
export async function writeLayerToml(
  layersDir: string,
  name: string,
  types: LayerTypes,
  metadata: Record<string, unknown>,
): Promise<void> {
  await writeToml(join(layersDir, `${name}.toml`), {
    types: { build: types.build === true, cache: types.cache === true, launch: types.launch === true },
    metadata,
  });
}

/** EnvScope is the env directory of a layer: all phases, build only, or launch only. */
export type EnvScope = 'env' | 'env.build' | 'env.launch';
/** EnvAction is an env-file suffix of the buildpack spec. */
export type EnvAction = 'override' | 'default' | 'prepend' | 'append' | 'delim';

/**
 * writeEnv writes one env file. Values are used raw by the lifecycle (a trailing newline would be
 * part of the value), so none is added.
 */
export async function writeEnv(
  dir: string,
  scope: EnvScope,
  name: string,
  action: EnvAction,
  value: string,
): Promise<void> {
  await mkdir(join(dir, scope), { recursive: true });
  const file = join(dir, scope, `${name}.${action}`);
  // An unchanged file is left alone: a kept layer whose files were not rewritten is recognised by
  // the platform without re-reading it (kiln's layer fingerprints cover mtimes and ctimes).
  if ((await readFile(file, 'utf8').catch(() => undefined)) === value) return;
  await writeFile(file, value);
}

/** prependPath writes `NAME.prepend` + `NAME.delim=:` so `value` goes in front of a path list. */
export async function prependPath(dir: string, scope: EnvScope, name: string, value: string): Promise<void> {
  await writeEnv(dir, scope, name, 'prepend', value);
  await writeEnv(dir, scope, name, 'delim', ':');
}

/** replaceWithSymlink makes `path` a symlink to `target`, removing whatever was there. */
export async function replaceWithSymlink(path: string, target: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
  await symlink(target, path);
}
