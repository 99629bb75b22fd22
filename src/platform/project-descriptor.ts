import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'smol-toml';
import { z } from 'zod';
import { CnbFileError, validate } from '../cnb/toml-file.ts';
import { readTextInRootIfExists } from '../internal/safe-read.ts';
import { type SourceFilter, sourceFilter } from './source-filter.ts';

// project.toml, the project descriptor (spec: buildpacks/spec extensions/project-descriptor.md,
// schema 0.2). Like pack we also read 0.1 (no `_.schema-version`: `[project]`, `[build]`) and 0.3
// (0.2 plus `exec-env` lists), and the deprecated `[[io.buildpacks.env.build]]` alias. Everything
// is resolved into one version-free value so the build never branches on the schema version.

/** Names a build env var may have: it becomes the file `<platform>/env/<NAME>`. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

const envEntry = z.strictObject({
  name: z
    .string()
    .regex(ENV_NAME, { message: 'expected an environment variable name ([A-Za-z_][A-Za-z0-9_.-]*)' }),
  value: z.string(),
  'exec-env': z.array(z.string()).optional(),
});

const scriptSchema = z.strictObject({
  api: z.string().regex(/^\d+\.\d+$/, { message: 'expected a Buildpack API version such as "0.10"' }),
  inline: z.string().min(1, { message: 'expected a non-empty script' }),
  shell: z.string().optional(),
});

const groupEntry = z
  .strictObject({
    id: z.string().min(1).optional(),
    version: z.string().min(1).optional(),
    uri: z.string().min(1).optional(),
    script: scriptSchema.optional(),
    'exec-env': z.array(z.string()).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.id === undefined && e.uri === undefined)
      ctx.addIssue({ code: 'custom', message: 'expected an id or a uri' });
    if (e.uri !== undefined && e.version !== undefined)
      ctx.addIssue({ code: 'custom', message: 'a buildpack cannot have both uri and version' });
    if (e.script !== undefined && e.uri !== undefined)
      ctx.addIssue({ code: 'custom', message: 'an inline buildpack (script) cannot have a uri' });
    if (e.script !== undefined && e.id === undefined)
      ctx.addIssue({ code: 'custom', message: 'an inline buildpack (script) needs an id' });
  });

const license = z
  .strictObject({ type: z.string().optional(), uri: z.string().optional() })
  .refine((l) => l.type !== undefined || l.uri !== undefined, { message: 'expected a type or a uri' });

const patterns = z.array(z.string());

// The project's own keys: [_] in 0.2, [project] in 0.1.
const projectFields = {
  id: z.string().optional(),
  name: z.string().optional(),
  version: z.string().optional(),
  authors: z.array(z.string()).optional(),
  'documentation-url': z.string().optional(),
  'source-url': z.string().optional(),
  licenses: z.array(license).optional(),
};

const V02Schema = z.looseObject({
  _: z.looseObject({
    'schema-version': z.string(),
    ...projectFields,
    metadata: z.record(z.string(), z.unknown()).optional(),
  }),
  io: z
    .looseObject({
      buildpacks: z
        .looseObject({
          builder: z.string().min(1).optional(),
          include: patterns.optional(),
          exclude: patterns.optional(),
          group: z.array(groupEntry).optional(),
          pre: z.strictObject({ group: z.array(groupEntry).optional() }).optional(),
          post: z.strictObject({ group: z.array(groupEntry).optional() }).optional(),
          build: z.looseObject({ env: z.array(envEntry).optional() }).optional(),
          // Deprecated spelling pack still reads (buildpacks/pack#1479).
          env: z.looseObject({ build: z.array(envEntry).optional() }).optional(),
          // Not in pack's schema: read as [io.kiln] run-image (below), kiln's own table.
          'run-image': z.string().min(1).optional(),
        })
        .optional(),
      // kiln's own table (the spec gives other tools reverse-domain tables): the run image or
      // run-image flavour to build on when no --run-image is given.
      kiln: z.looseObject({ 'run-image': z.string().min(1).optional() }).optional(),
    })
    .optional(),
});

const V01Schema = z.looseObject({
  project: z.looseObject(projectFields).optional(),
  build: z
    .looseObject({
      include: patterns.optional(),
      exclude: patterns.optional(),
      builder: z.string().min(1).optional(),
      buildpacks: z.array(groupEntry).optional(),
      env: z.array(envEntry).optional(),
    })
    .optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

/** An inline buildpack: a shell script run as `bin/build` (detect always passes), as pack does. */
export interface InlineScript {
  readonly api: string;
  readonly inline: string;
  /** Interpreter for the `#!` line; defaults to `/bin/sh`. */
  readonly shell: string;
}

/** One entry of a project's buildpack group (or of its pre/post groups). */
export interface GroupEntry {
  readonly id?: string;
  readonly version?: string;
  /** The uri as written. */
  readonly uri?: string;
  /**
   * The uri made usable: a relative path (no scheme) resolved against the project directory;
   * anything with a scheme (`docker://`, `urn:cnb:registry:`, `https://`, `file://`) unchanged.
   */
  readonly resolvedUri?: string;
  readonly script?: InlineScript;
  readonly execEnv?: readonly string[];
}

/** The `_` (or 0.1 `[project]`) table: who and what the project is. */
export interface ProjectInfo {
  readonly id?: string;
  readonly name?: string;
  readonly version?: string;
  readonly authors: readonly string[];
  readonly documentationUrl?: string;
  readonly sourceUrl?: string;
  readonly licenses: ReadonlyArray<{ readonly type?: string; readonly uri?: string }>;
}

/**
 * ProjectDescriptor is a project.toml resolved into what a build needs. A project without a
 * project.toml gets `emptyProjectDescriptor()`: no filter, no env, no group.
 */
export interface ProjectDescriptor {
  /** The file read, or undefined when the project has none. */
  readonly file: string | undefined;
  /** The schema version that was read ("0.1" when the file declares none, as pack assumes). */
  readonly schemaVersion: string;
  readonly project: ProjectInfo;
  /** `_.metadata` (0.2) or `[metadata]` (0.1): free-form. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** `io.buildpacks.builder`: the builder to use when no --builder flag is given. */
  readonly builder: string | undefined;
  /**
   * `[io.kiln] run-image` (also read as `io.buildpacks.run-image`): the run image or run-image
   * flavour (`shell`) when no --run-image flag is given.
   */
  readonly runImage: string | undefined;
  readonly include: readonly string[] | undefined;
  readonly exclude: readonly string[] | undefined;
  /** Which app files go into the build (include/exclude in gitignore syntax). */
  readonly filter: SourceFilter;
  /** Build-time env in file order; a later entry of the same name wins. Files in `<platform>/env`. */
  readonly env: Readonly<Record<string, string>>;
  /** `io.buildpacks.group`: when non-empty, the group to use instead of the builder's order. */
  readonly group: readonly GroupEntry[];
  /** `io.buildpacks.pre.group`: prepended to every group. */
  readonly pre: readonly GroupEntry[];
  /** `io.buildpacks.post.group`: appended to every group. */
  readonly post: readonly GroupEntry[];
  /** Keys the schema does not know (ignored, as pack ignores them): for a warning each. */
  readonly warnings: readonly string[];
}

const SUPPORTED = ['0.1', '0.2', '0.3'];

/** emptyProjectDescriptor is the descriptor of a project without a project.toml. */
export function emptyProjectDescriptor(): ProjectDescriptor {
  return {
    file: undefined,
    schemaVersion: '0.2',
    project: { authors: [], licenses: [] },
    metadata: {},
    builder: undefined,
    runImage: undefined,
    include: undefined,
    exclude: undefined,
    filter: sourceFilter(undefined, undefined),
    env: {},
    group: [],
    pre: [],
    post: [],
    warnings: [],
  };
}

/**
 * readProjectDescriptor reads `<appDir>/project.toml` (or `file`, e.g. from a --descriptor flag;
 * a relative one is taken from appDir as pack does). A missing default file gives the empty
 * descriptor; a missing explicit file, invalid TOML or a schema violation throws a CnbFileError
 * naming the file and the key.
 */
export async function readProjectDescriptor(appDir: string, file?: string): Promise<ProjectDescriptor> {
  const explicit = file !== undefined;
  const target = path.resolve(appDir, file ?? 'project.toml');
  if (!explicit) {
    // The app's own project.toml comes with the source (a cloned repository may hold a symlink
    // named project.toml): read inside the app dir, a link refused. A --descriptor is the user's.
    const text = readTextInRootIfExists(appDir, 'project.toml', {
      what: 'the app directory',
      userInput: true,
    });
    return text === undefined ? emptyProjectDescriptor() : parseProjectDescriptor(text, target);
  }
  let text: string;
  try {
    text = await readFile(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return emptyProjectDescriptor();
    throw new CnbFileError(
      target,
      code === 'ENOENT' ? 'project descriptor not found' : `cannot read: ${code}`,
      { cause: err, userInput: true },
    );
  }
  return parseProjectDescriptor(text, target);
}

/**
 * parseProjectDescriptor parses project.toml text; `file` names the file in errors and anchors
 * relative buildpack uris (its directory is the project directory).
 */
export function parseProjectDescriptor(text: string, file: string): ProjectDescriptor {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0];
    throw new CnbFileError(file, `invalid TOML: ${first}`, { cause: err, userInput: true });
  }
  const doc = raw as Record<string, unknown>;
  const underscore = doc._;
  let version = '0.1';
  if (underscore !== undefined) {
    if (typeof underscore !== 'object' || underscore === null || Array.isArray(underscore))
      throw new CnbFileError(file, '_: expected a table', { userInput: true });
    const sv = (underscore as Record<string, unknown>)['schema-version'];
    if (sv !== undefined) {
      if (typeof sv !== 'string')
        throw new CnbFileError(file, '_.schema-version: expected a string such as "0.2"', {
          userInput: true,
        });
      version = sv;
    }
  }
  if (!SUPPORTED.includes(version))
    throw new CnbFileError(
      file,
      `_.schema-version: unsupported project descriptor schema ${JSON.stringify(version)} (supported: ${SUPPORTED.join(', ')})`,
      { userInput: true },
    );
  const projectDir = path.dirname(file);
  return version === '0.1' ? fromV01(doc, file, projectDir) : fromV02(doc, file, projectDir, version);
}

function check<S extends z.ZodType>(raw: unknown, schema: S, file: string): z.output<S> {
  try {
    return validate(raw, schema, file);
  } catch (err) {
    // Re-raise as invalid arguments: a bad project.toml is the user's input, not a build failure.
    if (err instanceof CnbFileError)
      throw new CnbFileError(file, err.message.slice(file.length + 2), { userInput: true });
    throw err;
  }
}

function fromV02(
  raw: Record<string, unknown>,
  file: string,
  projectDir: string,
  version: string,
): ProjectDescriptor {
  const d = check(raw, V02Schema, file);
  const bp = d.io?.buildpacks;
  const warnings: string[] = [];
  const knownUnderscore = [
    'schema-version',
    'id',
    'name',
    'version',
    'authors',
    'documentation-url',
    'source-url',
    'licenses',
    'metadata',
  ];
  for (const k of Object.keys(d._)) if (!knownUnderscore.includes(k)) warnings.push(`_.${k}`);
  if (bp) {
    const known = ['builder', 'include', 'exclude', 'group', 'pre', 'post', 'build', 'env', 'run-image'];
    for (const k of Object.keys(bp)) if (!known.includes(k)) warnings.push(`io.buildpacks.${k}`);
    if (bp.env !== undefined)
      warnings.push('io.buildpacks.env.build (deprecated: use [[io.buildpacks.build.env]])');
  }
  const execEnvAllowed = version !== '0.2';
  const all = [...(bp?.group ?? []), ...(bp?.pre?.group ?? []), ...(bp?.post?.group ?? [])];
  const envs = bp?.build?.env ?? bp?.env?.build ?? [];
  if (!execEnvAllowed && (all.some((e) => e['exec-env']) || envs.some((e) => e['exec-env'])))
    warnings.push('exec-env (needs schema-version 0.3; ignored)');
  return finish(file, {
    schemaVersion: version,
    project: {
      id: d._.id,
      name: d._.name,
      version: d._.version,
      authors: d._.authors ?? [],
      documentationUrl: d._['documentation-url'],
      sourceUrl: d._['source-url'],
      licenses: d._.licenses ?? [],
    },
    metadata: d._.metadata ?? {},
    builder: bp?.builder,
    runImage: d.io?.kiln?.['run-image'] ?? bp?.['run-image'],
    include: bp?.include,
    exclude: bp?.exclude,
    envEntries: envs,
    group: (bp?.group ?? []).map((e) => groupOf(e, projectDir, execEnvAllowed)),
    pre: (bp?.pre?.group ?? []).map((e) => groupOf(e, projectDir, execEnvAllowed)),
    post: (bp?.post?.group ?? []).map((e) => groupOf(e, projectDir, execEnvAllowed)),
    warnings,
  });
}

function fromV01(raw: Record<string, unknown>, file: string, projectDir: string): ProjectDescriptor {
  const d = check(raw, V01Schema, file);
  const warnings = ['_.schema-version (none declared: read as schema 0.1; declare "0.2")'];
  for (const k of Object.keys(raw))
    if (k.startsWith('io.') || k === 'io') warnings.push(`${k} (a schema 0.2 table in a 0.1 file: ignored)`);
  return finish(file, {
    schemaVersion: '0.1',
    project: {
      id: d.project?.id,
      name: d.project?.name,
      version: d.project?.version,
      authors: d.project?.authors ?? [],
      documentationUrl: d.project?.['documentation-url'],
      sourceUrl: d.project?.['source-url'],
      licenses: d.project?.licenses ?? [],
    },
    metadata: d.metadata ?? {},
    builder: d.build?.builder,
    runImage: undefined,
    include: d.build?.include,
    exclude: d.build?.exclude,
    envEntries: d.build?.env ?? [],
    group: (d.build?.buildpacks ?? []).map((e) => groupOf(e, projectDir, false)),
    pre: [],
    post: [],
    warnings,
  });
}

interface Parts {
  schemaVersion: string;
  project: ProjectInfo;
  metadata: Record<string, unknown>;
  builder: string | undefined;
  runImage: string | undefined;
  include: string[] | undefined;
  exclude: string[] | undefined;
  envEntries: ReadonlyArray<{ name: string; value: string }>;
  group: GroupEntry[];
  pre: GroupEntry[];
  post: GroupEntry[];
  warnings: string[];
}

function finish(file: string, p: Parts): ProjectDescriptor {
  const key = p.schemaVersion === '0.1' ? 'build' : 'io.buildpacks';
  if (p.include !== undefined && p.exclude !== undefined)
    throw new CnbFileError(file, `${key}: include and exclude cannot both be set`, { userInput: true });
  const env: Record<string, string> = {};
  for (const e of p.envEntries) env[e.name] = e.value;
  return {
    file,
    schemaVersion: p.schemaVersion,
    project: p.project,
    metadata: p.metadata,
    builder: p.builder,
    runImage: p.runImage,
    include: p.include,
    exclude: p.exclude,
    filter: sourceFilter(p.include, p.exclude),
    env,
    group: p.group,
    pre: p.pre,
    post: p.post,
    warnings: p.warnings,
  };
}

type RawGroupEntry = z.infer<typeof groupEntry>;

function groupOf(e: RawGroupEntry, projectDir: string, execEnvAllowed: boolean): GroupEntry {
  return {
    ...(e.id !== undefined && { id: e.id }),
    ...(e.version !== undefined && { version: e.version }),
    ...(e.uri !== undefined && { uri: e.uri, resolvedUri: resolveUri(e.uri, projectDir) }),
    ...(e.script !== undefined && {
      script: { api: e.script.api, inline: e.script.inline, shell: e.script.shell ?? '/bin/sh' },
    }),
    ...(execEnvAllowed && e['exec-env'] !== undefined && { execEnv: e['exec-env'] }),
  };
}

/** resolveUri makes a scheme-less buildpack uri an absolute path under the project directory. */
export function resolveUri(uri: string, projectDir: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri)) return uri;
  return path.resolve(projectDir, uri);
}
