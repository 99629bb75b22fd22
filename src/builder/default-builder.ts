import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import type { Image } from '../oci/image.ts';
import type { ImageStore } from '../store/store.ts';
import { type BuilderConfig, readBuilderConfig } from './builder-config.ts';
import { BuilderLabel, createBuilder, readBuilder } from './builder-image.ts';
import { contentDigest, readBuildpackSource } from './buildpack-source.ts';

/** The repository root (this file is src/builder/default-builder.ts). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** DEFAULT_BUILDER_CONFIG is the embedded default builder's definition. */
export const DEFAULT_BUILDER_CONFIG = path.join(ROOT, 'builders', 'bookworm', 'builder.toml');

/** DEFAULT_BUILDER_NAME is the local-store name of the embedded default builder. */
export const DEFAULT_BUILDER_NAME = 'kiln/builders/bookworm:latest';

/** Options of ensureDefaultBuilder. */
export interface DefaultBuilderOptions {
  /** The local store: the builder is looked up and saved there. */
  readonly store: ImageStore;
  /**
   * Returns the stack's build image (from the store), creating the stack first when it is
   * missing — the caller (kiln build) wires in the stack module.
   */
  readonly buildImage: () => Promise<Image>;
  readonly kilnVersion: string;
  /** Default: builders/bookworm/builder.toml of this checkout. */
  readonly configFile?: string;
  /** Default: DEFAULT_BUILDER_NAME. */
  readonly name?: string;
  readonly epoch?: number;
  readonly log?: (message: string) => void;
  /**
   * Where to remember the builder key (kiln's cache dir): reused while the file metadata of the
   * config and the buildpack directories is unchanged, which spares hashing the buildpacks (and
   * parsing their descriptors), ~35 ms, on every build.
   */
  readonly keyCacheFile?: string;
}

/** DefaultBuilder is the builder to use, and whether it was made just now. */
export interface DefaultBuilder {
  readonly image: Image;
  readonly name: string;
  readonly key: string;
  readonly created: boolean;
}

/**
 * builderKey digests everything a builder is made from: the build image (its digest covers the
 * stack lock), each buildpack's content and the builder config text.
 */
export async function builderKey(
  configFile: string,
  buildImage: Image,
  epoch: number | undefined,
): Promise<string> {
  return keyOf(await readBuilderConfig(configFile), buildImage, epoch);
}

/** keyOf is builderKey of a config already read. */
async function keyOf(config: BuilderConfig, buildImage: Image, epoch: number | undefined): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`kiln builder key v2\nbuild ${await buildImage.digest()}\nepoch ${epoch ?? ''}\n`);
  hash.update(config.text);
  for (const b of config.buildpacks) {
    const src = await readBuildpackSource(b.dir, b);
    hash.update(`\nbuildpack ${src.id}@${src.version} ${await contentDigest(src)}`);
  }
  return `sha256:${hash.digest('hex')}`;
}

/**
 * ensureDefaultBuilder returns the embedded default builder from the local store, creating it
 * (and, through `buildImage`, the stack) when it is missing or its inputs changed. The check is
 * cheap: hashing the bundled buildpacks (a few hundred KB) and reading one label.
 */
export async function ensureDefaultBuilder(opts: DefaultBuilderOptions): Promise<DefaultBuilder> {
  const configFile = opts.configFile ?? DEFAULT_BUILDER_CONFIG;
  const name = opts.name ?? DEFAULT_BUILDER_NAME;
  const buildImage = await opts.buildImage();
  const key = await cachedBuilderKey(configFile, buildImage, opts.epoch, opts.keyCacheFile);
  const existing = await opts.store.find(name);
  if (existing) {
    // A builder that cannot be read is rebuilt, as a stale one is.
    const info = await readBuilder(existing, name).catch(() => undefined);
    if (info?.key === key) return { image: existing, name, key, created: false };
  }
  opts.log?.(`Creating the default builder ${name} from ${configFile}`);
  const config = await readBuilderConfig(configFile);
  const { image } = await createBuilder(config, {
    buildImage,
    ...(config.buildImage ? { buildImageName: config.buildImage } : {}),
    store: opts.store.blobs,
    kilnVersion: opts.kilnVersion,
    labels: { [BuilderLabel.Key]: key },
    ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
  });
  await opts.store.write(image, [name]);
  return { image: (await opts.store.find(name)) ?? image, name, key, created: true };
}

const KEY_CACHE_VERSION = 'kiln-builder-key-v2';

/**
 * cachedBuilderKey is builderKey, remembered in `cacheFile` together with a stamp of its inputs:
 * the build image digest, the epoch and the metadata (type, size, mode, inode, mtime and ctime:
 * no edit keeps both) of every file under the config and the buildpack directories. Builders
 * with buildpackages (images, .cnb files) are not remembered.
 */
export async function cachedBuilderKey(
  configFile: string,
  buildImage: Image,
  epoch: number | undefined,
  cacheFile: string | undefined,
): Promise<string> {
  if (cacheFile === undefined) return builderKey(configFile, buildImage, epoch);
  const digest = await buildImage.digest();
  let memo: { version?: string; stamp?: string; key?: string; paths?: string[] } | undefined;
  try {
    memo = JSON.parse(await readFile(cacheFile, 'utf8'));
  } catch {
    // The key memo is a cache: unreadable or corrupt, the key is computed again.
    memo = undefined;
  }
  if (
    memo?.version === KEY_CACHE_VERSION &&
    typeof memo.key === 'string' &&
    Array.isArray(memo.paths) &&
    memo.paths[0] === configFile &&
    memo.stamp === inputStamp(memo.paths, digest, epoch)
  )
    return memo.key;
  const config = await readBuilderConfig(configFile);
  const paths = [configFile, ...config.buildpacks.map((b) => b.dir)];
  // Stamped before and after hashing: an input edited meanwhile leaves the key unremembered.
  const before = inputStamp(paths, digest, epoch);
  const key = await keyOf(config, buildImage, epoch);
  if (config.buildpacks.every((b) => b.image === undefined) && inputStamp(paths, digest, epoch) === before) {
    const text = JSON.stringify({ version: KEY_CACHE_VERSION, stamp: before, key, paths });
    // The key memo is a cache: failing to write it only costs the next run a recomputation.
    await writeFileAtomic(cacheFile, `${text}\n`).catch(() => {});
  }
  return key;
}

/** inputStamp digests the metadata of every file under `paths` (see cachedBuilderKey). */
function inputStamp(paths: readonly string[], digest: string, epoch: number | undefined): string {
  const hash = createHash('sha256');
  hash.update(`${KEY_CACHE_VERSION}\n${digest}\n${epoch ?? ''}\n`);
  const visit = (p: string) => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      // A missing input is part of the stamp, so adding it later changes the key.
      hash.update(`${p}\0missing\n`);
      return;
    }
    hash.update(`${p}\0${st.mode}\0${st.size}\0${st.ino}\0${st.dev}\0${st.mtimeMs}\0${st.ctimeMs}\n`);
    if (st.isSymbolicLink()) hash.update(`${readlinkSync(p)}\n`);
    else if (st.isDirectory()) for (const name of readdirSync(p).sort()) visit(path.join(p, name));
  };
  for (const p of paths) visit(p);
  return hash.digest('hex');
}
