import { z } from 'zod';
import { oneLine } from '../internal/one-line.ts';
import { isDigest } from './digest.ts';

// zod schemas for the OCI image spec documents. Unknown fields are kept (`looseObject`) so that
// a manifest or config read from elsewhere round-trips without losing what we do not model.

const digest = z.string().refine(isDigest, { message: 'expected sha256:<64 hex>' });
const annotations = z.record(z.string(), z.string());

export const PlatformSchema = z.looseObject({
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
});
export type Platform = z.infer<typeof PlatformSchema>;

export const DescriptorSchema = z.looseObject({
  mediaType: z.string(),
  digest,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: annotations.optional(),
  platform: PlatformSchema.optional(),
  artifactType: z.string().optional(),
});
export type Descriptor = z.infer<typeof DescriptorSchema>;

export const ManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: annotations.optional(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

export const IndexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: annotations.optional(),
});
export type Index = z.infer<typeof IndexSchema>;

const HistorySchema = z.looseObject({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});
export type History = z.infer<typeof HistorySchema>;

export const ContainerConfigSchema = z.looseObject({
  User: z.string().optional(),
  ExposedPorts: z.record(z.string(), z.object({})).optional(),
  Env: z.array(z.string()).optional(),
  Entrypoint: z.array(z.string()).nullable().optional(),
  Cmd: z.array(z.string()).nullable().optional(),
  Volumes: z.record(z.string(), z.object({})).nullable().optional(),
  WorkingDir: z.string().optional(),
  Labels: z.record(z.string(), z.string()).nullable().optional(),
  StopSignal: z.string().optional(),
});
export type ContainerConfig = z.infer<typeof ContainerConfigSchema>;

export const ConfigFileSchema = z.looseObject({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  variant: z.string().optional(),
  config: ContainerConfigSchema.optional(),
  rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(digest) }),
  history: z.array(HistorySchema).optional(),
});
export type ConfigFile = z.infer<typeof ConfigFileSchema>;

export { oneLine };

/**
 * MAX_JSON_DEPTH bounds the nesting of a JSON document from outside: JSON.parse takes any depth,
 * but JSON.stringify, deep comparison and the TOML writer (which stops at 1000) later overflow
 * the stack or throw on a value nested tens of thousands deep.
 */
export const MAX_JSON_DEPTH = 1000;

/** jsonTooDeep tells whether a decoded JSON value nests deeper than `max` (walked without recursion). */
export function jsonTooDeep(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const todo: [unknown, number][] = [[value, 0]];
  while (todo.length > 0) {
    const [v, depth] = todo.pop()!;
    if (depth > max) return true;
    for (const c of Object.values(v as object))
      if (c !== null && typeof c === 'object') todo.push([c, depth + 1]);
  }
  return false;
}

/**
 * parseJson parses `bytes` as JSON and validates it with `schema`, throwing one TypeError line
 * that names the document (`what`) and the first offending field.
 */
export function parseJson<T>(schema: z.ZodType<T>, bytes: Uint8Array | string, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    // V8's message quotes the start of the input, which may be a file kiln should never echo.
    const at = /position (\d+)/.exec((e as Error).message)?.[1];
    throw new TypeError(`invalid ${what}: not JSON${at === undefined ? '' : ` (at byte ${at})`}`);
  }
  if (raw !== null && typeof raw === 'object' && jsonTooDeep(raw))
    throw new TypeError(`invalid ${what}: nested deeper than ${MAX_JSON_DEPTH} levels`);
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = issue.path.length ? issue.path.join('.') : '(document)';
    throw new TypeError(oneLine(`invalid ${what}: field "${field}": ${issue.message}`));
  }
  return r.data;
}
