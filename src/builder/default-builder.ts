import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Image } from '../oci/image.ts';
import type { ImageStore } from '../store/store.ts';
import { readBuilderConfig } from './builder-config.ts';
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
  const config = await readBuilderConfig(configFile);
  const hash = createHash('sha256');
  hash.update(`kiln builder key v1\nbuild ${await buildImage.digest()}\nepoch ${epoch ?? ''}\n`);
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
  const key = await builderKey(configFile, buildImage, opts.epoch);
  const existing = await opts.store.find(name);
  if (existing) {
    const info = await readBuilder(existing, name).catch(() => undefined);
    if (info?.key === key) return { image: existing, name, key, created: false };
  }
  opts.log?.(`Creating the default builder ${name} from ${configFile}`);
  const config = await readBuilderConfig(configFile);
  const { image } = await createBuilder(config, {
    buildImage,
    store: opts.store.blobs,
    kilnVersion: opts.kilnVersion,
    labels: { [BuilderLabel.Key]: key },
    ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
  });
  await opts.store.write(image, [name]);
  return { image: (await opts.store.find(name)) ?? image, name, key, created: true };
}
