import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { parseDuration } from '../config/units.ts';
import { DataFileError, parseTomlData } from '../internal/data-file.ts';
import { errnoOf } from '../internal/errors.ts';

// The fleet file: which app images kiln keeps built and patched, from which sources, on which
// builders and run images. It is TOML with a schema version so a later kiln can read old files
// (and refuse newer ones by name). Everything is validated before anything is recorded; an error
// names the file and the key (`fleet.toml: images.api.source.branch: ...`).
//
//   schema-version = 1
//   [run-images.base]     image = "registry:5000/stack/run:latest"
//   [builders.default]    image = "registry:5000/stack/builder:latest"
//   [images.api]          tag = "registry:5000/apps/api:latest", builder = "default", run-image = "base"
//                         source = { git = "https://…/api.git", branch = "main" }  (or tag = "v1", or path = "/src")
//                         signing-key = "/etc/kiln/release.key"  (passphrase: KILN_PASSWORD in serve's env)

/** The schema versions this kiln reads. */
export const FLEET_SCHEMA_VERSION = 1;

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const name = z.string().regex(NAME, 'expected a name of lowercase letters, digits, ".", "_" or "-"');
// Image references: no whitespace or control characters, a sane length; the registry client
// parses them fully when they are used.
const imageRef = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[^\s\x00-\x1f]+$/, 'expected an image reference');
const gitRef = z
  .string()
  .min(1)
  .max(255)
  .regex(/^(?!-)[A-Za-z0-9._/+-]+$/, 'expected a git branch or tag name (not starting with "-")')
  .refine((s) => !s.includes('..'), 'expected a git ref name without ".."');
const duration = z
  .string()
  .refine((s) => (parseDuration(s) ?? 0) > 0, 'expected a duration such as 30s, 5m, 1h');

const gitSource = z.strictObject({
  git: z
    .string()
    .min(1)
    .max(2048)
    .regex(/^(?!-)\S+$/, 'expected a git repository URL or path (not starting with "-")')
    .refine((s) => !/^ext::/i.test(s), 'the ext:: transport is not allowed'),
  branch: gitRef.optional(),
  tag: gitRef.optional(),
  // A subdirectory of the repository that holds the app.
  subdir: z
    .string()
    .regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$)).+$/, 'expected a relative path inside the repository')
    .optional(),
});
const pathSource = z.strictObject({
  path: z
    .string()
    .min(1)
    .refine((p) => path.isAbsolute(p), 'expected an absolute directory path'),
});

const imageDecl = z.strictObject({
  /** Where the image is published (a registry reference with a tag). */
  tag: imageRef,
  source: z.union([gitSource, pathSource], {
    error: 'expected { git = URL, branch|tag = … } or { path = DIR }',
  }),
  /** A key of [builders] or an image reference. */
  builder: z.string().min(1).max(512).optional(),
  /** A key of [run-images], a run-image flavour of the builder, or an image reference. */
  'run-image': z.string().min(1).max(512).optional(),
  env: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'expected an env var name'), z.string())
    .optional(),
  /** Service bindings by reference: `NAME=DIR` (an absolute directory, as `kiln build --binding`). */
  bindings: z
    .array(
      z.string().regex(/^[A-Za-z0-9_.-]+=\/\S*$/, 'expected NAME=/absolute/dir (as kiln build --binding)'),
    )
    .optional(),
  /** The build cache: a registry image (`cache-image`) or the default per-image directory. */
  'cache-image': imageRef.optional(),
  'history-limit': z.number().int().min(1).max(10_000).optional(),
  /**
   * The private key (a kiln or cosign key file) every build and rebase of this image is signed
   * with, as `kiln build --sign-key`: a path only; its passphrase comes from KILN_PASSWORD or
   * COSIGN_PASSWORD in the environment of serve and the workers, never from the fleet file.
   */
  'signing-key': z
    .string()
    .max(4096)
    .regex(/^[^\x00-\x1f]+$/, 'expected a key file path')
    .refine((p) => path.isAbsolute(p), 'expected the absolute path of a private key file')
    .optional(),
  /** Rebuilds only: never rebase (a STACK change then rebuilds). */
  rebase: z.boolean().optional(),
});

const watched = z.strictObject({ image: imageRef });

// `[[images]]` with `name = "api"` is accepted as well as `[images.api]`: an array of tables
// with unique names becomes the table by name (anything else stays as it is, and is refused).
const byName = (v: unknown): unknown => {
  if (!Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const e of v) {
    const n = (e as { name?: unknown } | null)?.name;
    if (typeof n !== 'string' || Object.hasOwn(out, n)) return v;
    const { name: _n, ...rest } = e as Record<string, unknown>;
    out[n] = rest;
  }
  return out;
};
const named = <T extends z.ZodType>(item: T) => z.preprocess(byName, z.record(name, item));

export const fleetFileSchema = z.strictObject({
  'schema-version': z.literal(FLEET_SCHEMA_VERSION, {
    error: `expected ${FLEET_SCHEMA_VERSION} (the fleet file versions this kiln reads)`,
  }),
  'poll-interval': duration.optional(),
  'history-limit': z.number().int().min(1).max(10_000).optional(),
  builders: named(watched).optional(),
  'run-images': named(watched).optional(),
  images: named(imageDecl).optional(),
});

export type FleetFile = z.output<typeof fleetFileSchema>;
export type GitSource = z.output<typeof gitSource>;

/** One managed image as the reconciler sees it: every reference resolved to an image name. */
export interface ImageDeclaration {
  readonly name: string;
  readonly tag: string;
  readonly source:
    | { readonly git: string; readonly ref: string; readonly subdir?: string }
    | { readonly path: string };
  /** The builder image reference (undefined: kiln's default builder). */
  readonly builder: string | undefined;
  /** The run image reference or flavour (undefined: the builder's). */
  readonly runImage: string | undefined;
  /** The run image is watched (declared in [run-images]): its changes are STACK. */
  readonly watchedRunImage: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly bindings: readonly string[];
  readonly cacheImage: string | undefined;
  /** The private key file builds and rebases are signed with (undefined: not signed). */
  readonly signingKey: string | undefined;
  readonly historyLimit: number;
  readonly rebase: boolean;
  /** sha256 of the declaration: a change is reason CONFIG. */
  readonly hash: string;
}

/** The whole fleet, resolved. */
export interface Fleet {
  readonly pollIntervalMs: number;
  readonly builders: Readonly<Record<string, string>>;
  readonly runImages: Readonly<Record<string, string>>;
  readonly images: readonly ImageDeclaration[];
}

export const DEFAULT_POLL_MS = 60_000;
export const DEFAULT_HISTORY = 20;

/** FleetFileError is a fleet file that cannot be used (a usage error: the user's input). */
export class FleetFileError extends DataFileError {
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(file, message, { ...options, userInput: true });
    this.name = 'FleetFileError';
  }
}

const errorOf = (p: string, m: string, o?: ErrorOptions) => new FleetFileError(p, m, o);

/** parseFleet validates fleet TOML text (`file` names it in errors) and resolves references. */
export function parseFleet(text: string, file: string): Fleet {
  const raw = parseTomlData(text, fleetFileSchema, file, errorOf);
  const builders = Object.fromEntries(Object.entries(raw.builders ?? {}).map(([k, v]) => [k, v.image]));
  const runImages = Object.fromEntries(Object.entries(raw['run-images'] ?? {}).map(([k, v]) => [k, v.image]));
  const images: ImageDeclaration[] = [];
  const tags = new Map<string, string>();
  for (const [n, d] of Object.entries(raw.images ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const key = `images.${n}`;
    const other = tags.get(d.tag);
    if (other !== undefined)
      throw errorOf(file, `${key}.tag: ${d.tag} is already the tag of images.${other}`);
    tags.set(d.tag, n);
    let source: ImageDeclaration['source'];
    if ('git' in d.source) {
      const s = d.source;
      if ((s.branch === undefined) === (s.tag === undefined))
        throw errorOf(file, `${key}.source: expected exactly one of branch or tag`);
      source = {
        git: s.git,
        ref: s.branch !== undefined ? `refs/heads/${s.branch}` : `refs/tags/${s.tag}`,
        ...(s.subdir !== undefined ? { subdir: s.subdir } : {}),
      };
    } else source = { path: d.source.path };
    const signingKey = d['signing-key'];
    // The build copies a path source into its sandbox (and maybe the image): never the key.
    if (signingKey !== undefined && 'path' in source && isInside(signingKey, source.path))
      throw errorOf(
        file,
        `${key}.signing-key: ${signingKey} is inside source.path ${source.path}; keep keys out of the app directory`,
      );
    const builder = d.builder === undefined ? undefined : (builders[d.builder] ?? d.builder);
    if (d.builder !== undefined && builders[d.builder] === undefined && !/[/:@]/.test(d.builder))
      throw errorOf(
        file,
        `${key}.builder: "${d.builder}" is neither a key of [builders] nor an image reference`,
      );
    const watchedRun = d['run-image'] === undefined ? undefined : runImages[d['run-image']];
    const decl = {
      name: n,
      tag: d.tag,
      source,
      builder,
      runImage: watchedRun ?? d['run-image'],
      watchedRunImage: watchedRun,
      env: d.env ?? {},
      bindings: d.bindings ?? [],
      cacheImage: d['cache-image'],
      signingKey,
      historyLimit: d['history-limit'] ?? raw['history-limit'] ?? DEFAULT_HISTORY,
      rebase: d.rebase ?? true,
    };
    images.push({ ...decl, hash: declarationHash(decl) });
  }
  return {
    pollIntervalMs:
      raw['poll-interval'] === undefined ? DEFAULT_POLL_MS : parseDuration(raw['poll-interval'])!,
    builders,
    runImages,
    images,
  };
}

/** isInside tells whether absolute path `p` is `dir` or below it (lexically). */
function isInside(p: string, dir: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** readFleetFile reads and validates a fleet file. */
export async function readFleetFile(file: string): Promise<Fleet> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw errorOf(file, errnoOf(e) === 'ENOENT' ? 'file not found' : (e as Error).message, { cause: e });
  }
  return parseFleet(text, file);
}

// The hash covers what a build reads from the declaration; the history limit and the rebase
// switch change no image, so editing them is not a reason to rebuild.
function declarationHash(d: Omit<ImageDeclaration, 'hash'>): string {
  const { historyLimit: _h, rebase: _r, watchedRunImage: _w, ...inputs } = d;
  return createHash('sha256').update(canonicalJson(inputs)).digest('hex');
}

/** canonicalJson is JSON with object keys sorted (stable hashes of declarations and inputs). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
