import { z } from 'zod';
import {
  BUILDPACK_ID_EXPECTED,
  BUILDPACK_ID_PATTERN,
  BUILDPACK_VERSION_EXPECTED,
  BUILDPACK_VERSION_PATTERN,
  RESERVED_BUILDPACK_IDS,
} from './ids.ts';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

const Distro = z.object({ name: z.string().optional(), version: z.string().optional() }).loose();

/**
 * A `[[targets]]` entry. The spec and pack spell the variant `variant`, the reference lifecycle
 * reads `arch-variant`: both are accepted. `distributions` is the pre-0.11 name of `distros`.
 */
const TargetEntry = z
  .object({
    os: z.string().optional(),
    arch: z.string().optional(),
    variant: z.string().optional(),
    'arch-variant': z.string().optional(),
    distros: z.array(Distro).optional(),
    distributions: z.array(Distro).optional(),
  })
  .loose();

/** An element of a composite buildpack's `[[order.group]]` (also used by order.toml). */
export const OrderElement = z
  .object({
    id: z.string().regex(BUILDPACK_ID_PATTERN, `expected ${BUILDPACK_ID_EXPECTED}`),
    version: z.string().regex(BUILDPACK_VERSION_PATTERN, `expected ${BUILDPACK_VERSION_EXPECTED}`).optional(),
    optional: z.boolean().optional(),
    'exec-env': z.array(z.string()).optional(),
  })
  .loose();
export type OrderElement = z.output<typeof OrderElement>;

/** An order: a list of groups tried in turn. */
export const Order = z.array(z.object({ group: z.array(OrderElement) }).loose());
export type Order = z.output<typeof Order>;

// exec-env: the spec shows `[[buildpack.exec-env]] name=`, lifecycle and pack read a string array.
const ExecEnv = z
  .array(z.union([z.string(), z.object({ name: z.string() }).loose()]))
  .transform((list) => list.map((e) => (typeof e === 'string' ? e : e.name)));

const BuildpackInfo = z
  .object({
    id: z
      .string()
      .regex(BUILDPACK_ID_PATTERN, `expected ${BUILDPACK_ID_EXPECTED}`)
      .refine((id) => !RESERVED_BUILDPACK_IDS.includes(id.toLowerCase()), {
        message: `id must not be one of ${RESERVED_BUILDPACK_IDS.join(', ')}`,
      }),
    version: z.string().regex(BUILDPACK_VERSION_PATTERN, `expected ${BUILDPACK_VERSION_EXPECTED}`),
    name: z.string().optional(),
    homepage: z.string().optional(),
    description: z.string().optional(),
    keywords: z.array(z.string()).optional(),
    'clear-env': z.boolean().optional(),
    'sbom-formats': z.array(z.string()).optional(),
    'exec-env': ExecEnv.optional(),
    licenses: z
      .array(z.object({ type: z.string().optional(), uri: z.string().optional() }).loose())
      .optional(),
  })
  .loose();

/** The schema of `buildpack.toml` (Buildpack API 0.7–0.12). */
export const BuildpackToml = z
  .object({
    api: z.string().min(1, 'api is required'),
    buildpack: BuildpackInfo,
    targets: z.array(TargetEntry).optional(),
    stacks: z.array(z.object({ id: z.string(), mixins: z.array(z.string()).optional() }).loose()).optional(),
    order: Order.optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .loose()
  .refine((d) => !(d.order?.length && d.stacks?.length), {
    message: 'stacks must not be declared together with order',
    path: ['stacks'],
  });
export type BuildpackToml = z.output<typeof BuildpackToml>;

/** Target is a normalized target: empty fields match anything. */
export interface Target {
  readonly os?: string;
  readonly arch?: string;
  readonly variant?: string;
  readonly distros?: readonly { readonly name?: string; readonly version?: string }[];
}

/** readBuildpackToml reads and validates a buildpack descriptor. */
export function readBuildpackToml(path: TomlSource): Promise<BuildpackToml> {
  return readTomlFile(path, BuildpackToml);
}

/** writeBuildpackToml writes a buildpack descriptor atomically. */
export function writeBuildpackToml(path: string, value: BuildpackToml): Promise<void> {
  return writeTomlFile(path, value);
}

/**
 * declaredTargets normalizes `[[targets]]`, then falls back as the reference lifecycle does:
 * deprecated `[[stacks]]` (`*` = any, bionic = linux/amd64 ubuntu 18.04), then a `bin/build`
 * executable (linux, any arch). `hasBinBuild` tells whether `bin/build` exists.
 */
export function targetsOf(d: BuildpackToml, hasBinBuild: boolean): Target[] {
  if (d.targets && d.targets.length > 0) {
    return d.targets.map((t) => ({
      os: t.os || undefined,
      arch: t.arch || undefined,
      variant: t.variant || t['arch-variant'] || undefined,
      distros: t.distros ?? t.distributions,
    }));
  }
  const out: Target[] = [];
  for (const s of d.stacks ?? []) {
    if (s.id === 'io.buildpacks.stacks.bionic') {
      out.push({ os: 'linux', arch: 'amd64', distros: [{ name: 'ubuntu', version: '18.04' }] });
    } else if (s.id === '*') {
      out.push({});
    }
  }
  if (out.length === 0 && hasBinBuild) out.push({ os: 'linux' });
  return out;
}
