import { z } from 'zod';
import { jsonTooDeep, MAX_JSON_DEPTH, oneLine } from '../oci/schema.ts';
import { LAYER_NAME_EXPECTED, LAYER_NAME_PATTERN } from './ids.ts';

// The three JSON labels the exporter writes on an app image, and the cache metadata document
// (same shape as the lifecycle label's buildpack list). Key names follow the reference lifecycle
// exactly (`key`, `topLayer`, `process-types`, `data`, `sha`, ...): `pack inspect`, `pack rebase` and
// the next build's layer reuse read them. Unknown keys are kept so a label written by another
// lifecycle version round-trips.

/** Label holding the layer metadata of an app image (reuse, rebase). */
export const LIFECYCLE_METADATA_LABEL = 'io.buildpacks.lifecycle.metadata';
/** Label holding the build metadata (buildpacks, processes, launcher). */
export const BUILD_METADATA_LABEL = 'io.buildpacks.build.metadata';
/** Label holding project-metadata.toml as JSON. */
export const PROJECT_METADATA_LABEL = 'io.buildpacks.project.metadata';
/** Label on a cache image; also the name of the volume cache's metadata file. */
export const CACHE_METADATA_LABEL = 'io.buildpacks.lifecycle.cache.metadata';
/**
 * The build user (`uid:gid`, CNB_USER_ID:CNB_GROUP_ID of the builder) that owns the app's layers.
 * kiln's own label: the lifecycle records it nowhere but in the layer tars' owners, and the image's
 * `User` is the run user, which should differ (see kiln inspect).
 */
export const BUILD_USER_LABEL = 'io.kiln.build.user';
/**
 * Where the run image's OS SBOM goes under `<layers>` (next to the launcher's, in the lifecycle's
 * namespace); readers of an image's SBOM layer find it there.
 */
export const RUN_IMAGE_SBOM_DIR = 'sbom/launch/buildpacksio_lifecycle/run-image';

const sha = z.string();

/** LayerSha is `{"sha": "<diffID>"}`, the record of one non-buildpack layer. */
export const LayerShaSchema = z.looseObject({ sha });
export type LayerSha = z.infer<typeof LayerShaSchema>;

/** BuildpackLayerMetadata is one launch (or cache) layer: diffID, layer.toml metadata and its flags. */
export const BuildpackLayerMetadataSchema = z.looseObject({
  sha: z.string().default(''),
  data: z.unknown().optional(),
  build: z.boolean().default(false),
  launch: z.boolean().default(false),
  cache: z.boolean().default(false),
});
export type BuildpackLayerMetadata = z.infer<typeof BuildpackLayerMetadataSchema>;

/** BuildpackLayersMetadata groups a buildpack's layers; `key` is the buildpack id (not escaped). */
export const BuildpackLayersMetadataSchema = z.looseObject({
  key: z.string(),
  version: z.string().default(''),
  // Names come back from a previous image or a cache and become paths on restore.
  layers: z
    .record(z.string(), BuildpackLayerMetadataSchema)
    .nullable()
    .default({})
    .superRefine((layers, ctx) => {
      for (const name of Object.keys(layers ?? {}))
        if (!LAYER_NAME_PATTERN.test(name))
          ctx.addIssue({
            code: 'custom',
            message: `layer name ${JSON.stringify(name)}: expected ${LAYER_NAME_EXPECTED}`,
          });
    }),
  store: z.looseObject({ metadata: z.record(z.string(), z.unknown()).nullable().optional() }).optional(),
});
export type BuildpackLayersMetadata = z.infer<typeof BuildpackLayersMetadataSchema>;

/** RunImageForExport names the run image and its mirrors as the user asked for it. */
export const RunImageForExportSchema = z.looseObject({
  image: z.string().optional(),
  mirrors: z.array(z.string()).nullable().optional(),
});

/** RunImageMetadata is `runImage`: what rebase needs to cut and restack the base layers. */
export const RunImageMetadataSchema = z.looseObject({
  topLayer: z.string().default(''),
  reference: z.string().default(''),
  image: z.string().optional(),
  mirrors: z.array(z.string()).nullable().optional(),
});
export type RunImageMetadata = z.infer<typeof RunImageMetadataSchema>;

/** LifecycleMetadata is the `io.buildpacks.lifecycle.metadata` label. */
export const LifecycleMetadataSchema = z.looseObject({
  // Older lifecycles wrote a single object here; accept both, always write an array.
  app: z
    .union([z.array(LayerShaSchema), LayerShaSchema])
    .nullable()
    .default([])
    .transform((a) => (a === null ? [] : Array.isArray(a) ? a : [a])),
  sbom: LayerShaSchema.optional(),
  config: LayerShaSchema.default({ sha: '' }),
  launcher: LayerShaSchema.default({ sha: '' }),
  'process-types': LayerShaSchema.default({ sha: '' }),
  buildpacks: z.array(BuildpackLayersMetadataSchema).nullable().default([]),
  runImage: RunImageMetadataSchema.default({ topLayer: '', reference: '' }),
  stack: z.looseObject({ runImage: RunImageForExportSchema.optional() }).optional(),
});
export type LifecycleMetadata = z.infer<typeof LifecycleMetadataSchema>;

/** CacheMetadata is the volume cache's metadata file and the cache image's label. */
export const CacheMetadataSchema = z.looseObject({
  sbom: LayerShaSchema.optional(),
  buildpacks: z.array(BuildpackLayersMetadataSchema).nullable().default([]),
});
export type CacheMetadata = z.infer<typeof CacheMetadataSchema>;

const processSchema = z.looseObject({
  type: z.string(),
  command: z.array(z.string()),
  args: z.array(z.string()).nullable().optional(),
  direct: z.boolean().optional(),
  'working-dir': z.string().optional(),
  buildpackID: z.string().optional(),
  'exec-env': z.array(z.string()).optional(),
});
export type BuildMetadataProcess = z.infer<typeof processSchema>;

const groupElementSchema = z.looseObject({
  id: z.string(),
  version: z.string(),
  homepage: z.string().optional(),
  api: z.string().optional(),
});

/** BuildMetadata is the `io.buildpacks.build.metadata` label. */
export const BuildMetadataSchema = z.looseObject({
  bom: z.array(z.unknown()).nullable().optional(),
  buildpacks: z.array(groupElementSchema).nullable().default([]),
  extensions: z.array(groupElementSchema).nullable().optional(),
  launcher: z
    .looseObject({
      version: z.string().default(''),
      source: z
        .looseObject({
          git: z.looseObject({ repository: z.string().default(''), commit: z.string().default('') }),
        })
        .optional(),
    })
    .optional(),
  processes: z.array(processSchema).nullable().default([]),
  'buildpack-default-process-type': z.string().optional(),
});
export type BuildMetadata = z.infer<typeof BuildMetadataSchema>;

/** ProjectMetadata is `io.buildpacks.project.metadata`: project-metadata.toml as JSON. */
export const ProjectMetadataSchema = z.looseObject({
  source: z
    .looseObject({
      type: z.string().optional(),
      version: z.record(z.string(), z.unknown()).optional(),
      metadata: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});
export type ProjectMetadata = z.infer<typeof ProjectMetadataSchema>;

function parseLabel<T>(schema: z.ZodType<T>, raw: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw new TypeError(`invalid ${what} label: not JSON: ${oneLine((e as Error).message)}`);
  }
  if (value !== null && typeof value === 'object' && jsonTooDeep(value))
    throw new TypeError(`invalid ${what} label: nested deeper than ${MAX_JSON_DEPTH} levels`);
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = issue.path.length ? issue.path.join('.') : '(document)';
    throw new TypeError(oneLine(`invalid ${what} label: field "${field}": ${issue.message}`));
  }
  return r.data;
}

/** parseLifecycleMetadata parses the `io.buildpacks.lifecycle.metadata` label value. */
export function parseLifecycleMetadata(raw: string): LifecycleMetadata {
  return parseLabel(LifecycleMetadataSchema, raw, LIFECYCLE_METADATA_LABEL);
}

/** parseBuildMetadata parses the `io.buildpacks.build.metadata` label value. */
export function parseBuildMetadata(raw: string): BuildMetadata {
  return parseLabel(BuildMetadataSchema, raw, BUILD_METADATA_LABEL);
}

/** parseProjectMetadata parses the `io.buildpacks.project.metadata` label value. */
export function parseProjectMetadata(raw: string): ProjectMetadata {
  return parseLabel(ProjectMetadataSchema, raw, PROJECT_METADATA_LABEL);
}

/** parseCacheMetadata parses a volume cache metadata file or a cache image label. */
export function parseCacheMetadata(raw: string): CacheMetadata {
  return parseLabel(CacheMetadataSchema, raw, CACHE_METADATA_LABEL);
}

/** emptyLifecycleMetadata is the metadata of "no previous image". */
export function emptyLifecycleMetadata(): LifecycleMetadata {
  return LifecycleMetadataSchema.parse({});
}

/**
 * layerMetadataFor returns the recorded metadata of layer `name` of buildpack `id`, if any.
 * Works for both the image label and the cache metadata.
 */
export function layerMetadataFor(
  md: { buildpacks: readonly BuildpackLayersMetadata[] | null },
  id: string,
  name: string,
): BuildpackLayerMetadata | undefined {
  const bp = md.buildpacks?.find((b) => b.key === id);
  return bp?.layers?.[name];
}

/** buildpackMetadataFor returns the recorded metadata of buildpack `id`, if any. */
export function buildpackMetadataFor(
  md: { buildpacks: readonly BuildpackLayersMetadata[] | null },
  id: string,
): BuildpackLayersMetadata | undefined {
  return md.buildpacks?.find((b) => b.key === id);
}

/**
 * stringifyLabel serializes a label value deterministically: object keys are sorted so the
 * same metadata always gives the same bytes (and so the same config digest).
 */
export function stringifyLabel(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      // defineProperty, not assignment: a `__proto__` key in a label is data, not a prototype.
      if (x !== undefined)
        Object.defineProperty(out, k, {
          value: sortKeys(x),
          enumerable: true,
          writable: true,
          configurable: true,
        });
    }
    return out;
  }
  return v;
}
