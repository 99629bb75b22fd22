import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { UsageError } from '../internal/errors.ts';

const pkgName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9+.-]*(=[^\s]+)?$/, 'expected a Debian package name (optionally name=version)');

const ImageSpecSchema = z.strictObject({
  /** Repository-style name of the image in kiln's local store. */
  name: z.string().min(1),
  packages: z.array(pkgName).min(1),
  exclude: z.array(pkgName).default([]),
  /** Also install every `Essential: yes` package. */
  essential: z.boolean().default(false),
  /** Layer compression: gzip (every tool reads it) or zstd (several times faster to write). */
  compression: z.enum(['gzip', 'zstd']).default('gzip'),
});

const UserSchema = z.strictObject({
  name: z.string().regex(/^[a-z_][a-z0-9_-]*$/, 'expected a lower-case user name'),
  // Root is never a stack user: neither buildpacks nor apps may run as uid 0.
  uid: z.number().int().min(1).max(65533),
  gid: z.number().int().min(1).max(65533),
});

/** DEFAULT_FLAVOUR names the [run] image among the run-image flavours. */
export const DEFAULT_FLAVOUR = 'default';

/**
 * A run-image flavour: the [run] image plus packages (a shell, say). Its exclusions are [run]'s
 * minus what the flavour asks for, so a flavour can bring back what the default leaves out.
 */
const FlavourSchema = z.strictObject({
  /** Repository-style name of the flavour's image in kiln's local store. */
  name: z.string().min(1),
  description: z.string().default(''),
  packages: z.array(pkgName).min(1),
  /** Further exclusions (on top of [run]'s, minus the flavour's packages). */
  exclude: z.array(pkgName).default([]),
});

/** Flavour names: what `kiln build --run-image <flavour>` and project.toml accept. */
const FLAVOUR_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** The [run] table: the default flavour, and the other flavours under [run.flavours.<name>]. */
const RunSpecSchema = ImageSpecSchema.extend({
  flavours: z
    .record(z.string(), FlavourSchema)
    .default({})
    .superRefine((f, ctx) => {
      for (const key of Object.keys(f)) {
        if (key === DEFAULT_FLAVOUR)
          ctx.addIssue({
            code: 'custom',
            message: `"${DEFAULT_FLAVOUR}" names the [run] image itself, not a flavour`,
          });
        else if (!FLAVOUR_NAME.test(key))
          ctx.addIssue({
            code: 'custom',
            message: `"${key}": expected a flavour name (lower-case letters, digits, "-", at most 32)`,
          });
      }
    }),
});

/** StackConfigSchema is the zod schema of stack.toml. */
export const StackConfigSchema = z.strictObject({
  id: z.string().min(1),
  distro: z.strictObject({ name: z.string().min(1), version: z.string().min(1) }),
  archive: z.strictObject({
    arch: z.string().min(1),
    components: z.array(z.string().min(1)).min(1).default(['main']),
    suites: z.array(z.string().min(1)).min(1),
    mirror: z.url().optional(),
    'security-mirror': z.url().optional(),
    keyring: z.string().min(1).default('/usr/share/keyrings/debian-archive-keyring.gpg'),
  }),
  /** The build user: buildpacks run as it (CNB_USER_ID/CNB_GROUP_ID and User of the build image). */
  user: UserSchema,
  /**
   * The run user: apps run as it (User of the run image). The CNB platform spec says it SHOULD
   * differ from the build user, so an app cannot rewrite what buildpacks wrote; absent, the run
   * image uses the build user (kiln's behaviour before the two were separated).
   */
  'run-user': UserSchema.optional(),
  labels: z.record(z.string(), z.string()).default({}),
  run: RunSpecSchema,
  build: ImageSpecSchema,
});

/** StackConfig is a parsed stack.toml. */
export type StackConfig = z.infer<typeof StackConfigSchema>;
/** StackUser is the [user] (build) or [run-user] table. */
export type StackUser = z.infer<typeof UserSchema>;

/** userOf is the user an image of the stack runs as: the build user, or the run user. */
export function userOf(config: StackConfig, role: 'run' | 'build'): StackUser {
  return role === 'run' ? (config['run-user'] ?? config.user) : config.user;
}
/** ImageSpec is the [run] or [build] table. */
export type ImageSpec = z.infer<typeof ImageSpecSchema>;
/** FlavourSpec is one [run.flavours.<name>] table. */
export type FlavourSpec = z.infer<typeof FlavourSchema>;

/** hasFlavours says whether the stack has run-image flavours besides [run] itself. */
export function hasFlavours(config: StackConfig): boolean {
  return Object.keys(config.run.flavours).length > 0;
}

/** RunFlavour is one run image of the stack with what it is resolved from. */
export interface RunFlavour {
  /** DEFAULT_FLAVOUR for [run], else the key under [run.flavours]. */
  readonly flavour: string;
  readonly name: string;
  readonly packages: readonly string[];
  readonly exclude: readonly string[];
}

/** bareName is a package entry without its `=version`. */
function bareName(p: string): string {
  const i = p.indexOf('=');
  return i < 0 ? p : p.slice(0, i);
}

/**
 * runFlavours lists the stack's run images, the default ([run]) first, then the flavours in name
 * order (a stable order: lock sections, builder lists and reports follow it).
 */
export function runFlavours(config: StackConfig): RunFlavour[] {
  const out: RunFlavour[] = [
    {
      flavour: DEFAULT_FLAVOUR,
      name: config.run.name,
      packages: config.run.packages,
      exclude: config.run.exclude,
    },
  ];
  for (const key of Object.keys(config.run.flavours).sort()) {
    const f = config.run.flavours[key]!;
    const wanted = new Set(f.packages.map(bareName));
    out.push({
      flavour: key,
      name: f.name,
      packages: [...config.run.packages, ...f.packages],
      exclude: [...config.run.exclude.filter((e) => !wanted.has(bareName(e))), ...f.exclude],
    });
  }
  return out;
}

/** flavourOf finds a run flavour by name; the error lists the ones there are. */
export function flavourOf(config: StackConfig, flavour: string): RunFlavour {
  const all = runFlavours(config);
  const f = all.find((x) => x.flavour === flavour);
  if (!f)
    throw new UsageError(
      `stack ${config.id} has no run-image flavour "${flavour}" (flavours: ${all.map((x) => x.flavour).join(', ')})`,
    );
  return f;
}

/** parseStackConfig validates TOML text; errors name the file and the offending key. */
export function parseStackConfig(text: string, file: string): StackConfig {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    throw new UsageError(`invalid stack file ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = StackConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const key = issue.path.length ? issue.path.join('.') : '(document)';
    const msg =
      issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
    throw new UsageError(`invalid stack file ${file}: key "${key}": ${msg}`);
  }
  return r.data;
}

/** readStackConfig reads and validates a stack.toml file. */
export async function readStackConfig(file: string): Promise<StackConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read stack file ${file}: ${(e as Error).message}`);
  }
  return parseStackConfig(text, file);
}
