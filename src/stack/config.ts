import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';

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
  run: ImageSpecSchema,
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

/** parseStackConfig validates TOML text; errors name the file and the offending key. */
export function parseStackConfig(text: string, file: string): StackConfig {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    throw new KilnError(
      `invalid stack file ${file}: ${(e as Error).message.split('\n')[0]}`,
      ExitCode.InvalidArgs,
    );
  }
  const r = StackConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const key = issue.path.length ? issue.path.join('.') : '(document)';
    const msg =
      issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
    throw new KilnError(`invalid stack file ${file}: key "${key}": ${msg}`, ExitCode.InvalidArgs);
  }
  return r.data;
}

/** readStackConfig reads and validates a stack.toml file. */
export async function readStackConfig(file: string): Promise<StackConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new KilnError(`cannot read stack file ${file}: ${(e as Error).message}`, ExitCode.InvalidArgs);
  }
  return parseStackConfig(text, file);
}
