import { z } from 'zod';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { readTomlFileIfExists, type TomlSource, toTomlText } from './toml-file.ts';

/** LayerTypes are the three flags of `[types]`; all default to false. */
export interface LayerTypes {
  readonly launch: boolean;
  readonly build: boolean;
  readonly cache: boolean;
}

const Types = z
  .object({
    launch: z.boolean().default(false),
    build: z.boolean().default(false),
    cache: z.boolean().default(false),
  })
  .loose();

/** The schema of `<layers>/<bp>/<layer>.toml`. Flags at the top level are an error (lifecycle behaviour). */
export const LayerToml = z
  .object({
    types: Types.optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .loose()
  .superRefine((v, ctx) => {
    for (const key of ['launch', 'build', 'cache']) {
      if (key in v) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'the launch, cache and build flags must be in the [types] table',
        });
      }
    }
  });

/** LayerMetadataFile is a decoded layer.toml. */
export interface LayerMetadataFile {
  readonly types: LayerTypes;
  readonly metadata: Record<string, unknown>;
}

/** readLayerToml reads `<layer>.toml`; a missing file reads as all-false with no metadata. */
export async function readLayerToml(path: TomlSource): Promise<LayerMetadataFile> {
  const v = await readTomlFileIfExists(path, LayerToml);
  if (v === undefined) return { types: { launch: false, build: false, cache: false }, metadata: {} };
  return {
    types: v.types ? { launch: v.types.launch, build: v.types.build, cache: v.types.cache } : noTypes,
    metadata: v.metadata ?? {},
  };
}

const noTypes: LayerTypes = { launch: false, build: false, cache: false };

/**
 * writeLayerToml writes a layer.toml. The restorer writes files WITHOUT `[types]` (buildpacks must
 * set the flags again), so `types` is optional.
 */
export async function writeLayerToml(
  path: string,
  metadata: Record<string, unknown>,
  types?: LayerTypes,
): Promise<void> {
  const value: Record<string, unknown> = {};
  if (types) value.types = { launch: types.launch, build: types.build, cache: types.cache };
  value.metadata = metadata;
  await writeFileAtomic(path, toTomlText(value));
}
