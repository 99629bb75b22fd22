import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Order } from '../cnb/buildpack-toml.ts';
import { SystemToml } from '../cnb/system-toml.ts';
import { parseTomlText } from '../cnb/toml-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';

const ImageEntry = z.object({ image: z.string().min(1), mirrors: z.array(z.string()).optional() }).loose();

/** The schema of pack's builder.toml, as far as kiln reads it. */
export const BuilderToml = z
  .object({
    description: z.string().optional(),
    buildpacks: z
      .array(
        z
          .object({ id: z.string().optional(), version: z.string().optional(), uri: z.string().min(1) })
          .loose(),
      )
      .default([]),
    order: Order.default([]),
    // Image extensions: carried into the builder, never run by kiln (src/builder/extension-source.ts).
    extensions: z
      .array(
        z
          .object({ id: z.string().optional(), version: z.string().optional(), uri: z.string().min(1) })
          .loose(),
      )
      .default([]),
    'order-extensions': Order.default([]),
    // System buildpacks (pack 0.38+, Platform API 0.13+): written to /cnb/system.toml.
    system: SystemToml.shape.system,
    build: z
      .object({
        image: z.string().optional(),
        env: z
          .array(
            z
              .object({
                name: z.string().regex(/^[^=.\s/]+$/, 'name must be a plain variable name'),
                value: z.string(),
                suffix: z.enum(['default', 'override', 'append', 'prepend']).optional(),
                delim: z.string().optional(),
              })
              .loose(),
          )
          .optional(),
      })
      .loose()
      .optional(),
    run: z
      .object({ images: z.array(ImageEntry).default([]) })
      .loose()
      .optional(),
    stack: z
      .object({
        id: z.string().optional(),
        'build-image': z.string().optional(),
        'run-image': z.string().optional(),
        'run-image-mirrors': z.array(z.string()).optional(),
      })
      .loose()
      .optional(),
    lifecycle: z.object({ version: z.string().optional(), uri: z.string().optional() }).loose().optional(),
  })
  .loose();
export type BuilderToml = z.output<typeof BuilderToml>;

/** BuilderConfig is a parsed builder.toml with buildpack uris resolved to directories. */
export interface BuilderConfig {
  /** The file it was read from (for messages). */
  readonly file: string;
  readonly description: string;
  /**
   * Buildpack directories, absolute, with the id/version the file expects (if given). A
   * buildpackage uri (`docker://REF`, `oci:DIR[:TAG]`, a `.cnb` file) sets `image` (the uri, a
   * `.cnb` path made absolute) and `dir` to the same text; createBuilder's `buildpackages` opens it.
   */
  readonly buildpacks: readonly {
    readonly dir: string;
    readonly id?: string;
    readonly version?: string;
    readonly image?: string;
  }[];
  readonly order: Order;
  /** Image extension directories (`[[extensions]]`), absolute, with the id/version expected. */
  readonly extensions: readonly { readonly dir: string; readonly id?: string; readonly version?: string }[];
  /** `[[order-extensions]]`: written to /cnb/order.toml (builds with kiln refuse it). */
  readonly orderExtensions: Order;
  /** `[system.pre]` / `[system.post]` buildpacks: run before / after every group (/cnb/system.toml). */
  readonly system?: SystemToml;
  readonly buildImage: string | undefined;
  readonly buildEnv: NonNullable<NonNullable<BuilderToml['build']>['env']>;
  readonly runImages: readonly { readonly image: string; readonly mirrors: readonly string[] }[];
  readonly stackId: string | undefined;
  readonly lifecycleVersion: string | undefined;
  /** The raw text (part of the default builder's cache key). */
  readonly text: string;
}

/**
 * resolveUri turns a buildpack uri (relative path, absolute path or file://) into a directory, or
 * a buildpackage uri (docker://, oci:, a .cnb file) into `image`.
 */
function resolveUri(uri: string, base: string, file: string): { dir: string; image?: string } {
  if (uri.startsWith('docker://')) return { dir: uri, image: uri };
  if (uri.startsWith('oci:')) {
    const i = uri.indexOf(':', 4); // oci:DIR[:TAG], DIR relative to this file
    const dir = path.resolve(base, i < 0 ? uri.slice(4) : uri.slice(4, i));
    const ref = `oci:${dir}${i < 0 ? '' : uri.slice(i)}`;
    return { dir: ref, image: ref };
  }
  const local = uri.startsWith('file://') ? fileURLToPath(uri) : uri;
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(local);
  if (m || local.startsWith('docker:') || local.startsWith('urn:')) {
    throw new UsageError(
      `${file}: buildpack uri ${JSON.stringify(uri)}: expected a buildpack directory (relative, absolute or file://), a .cnb file, docker://REF or oci:DIR[:TAG]`,
    );
  }
  const abs = path.resolve(base, local);
  return /\.cnb$/i.test(abs) ? { dir: abs, image: abs } : { dir: abs };
}

/** parseBuilderConfig validates builder.toml text; `file` names it in errors and anchors relative uris. */
export function parseBuilderConfig(text: string, file: string): BuilderConfig {
  const doc = parseTomlText(text, BuilderToml, file);
  const base = path.dirname(path.resolve(file));
  const runImages = (doc.run?.images ?? []).map((i) => ({ image: i.image, mirrors: i.mirrors ?? [] }));
  if (runImages.length === 0 && doc.stack?.['run-image']) {
    runImages.push({ image: doc.stack['run-image'], mirrors: doc.stack['run-image-mirrors'] ?? [] });
  }
  if (runImages.length === 0) {
    throw new KilnError(`${file}: run image missing: expected [[run.images]] image (or [stack] run-image)`);
  }
  if (doc.order.length === 0)
    throw new KilnError(`${file}: order missing: expected at least one [[order]] group`);
  const extensions = doc.extensions.map((x) => {
    const r = resolveUri(x.uri, base, file);
    if (r.image)
      throw new UsageError(
        `${file}: extension uri ${JSON.stringify(x.uri)}: expected an extension directory (relative, absolute or file://)`,
      );
    return { dir: r.dir, ...(x.id ? { id: x.id } : {}), ...(x.version ? { version: x.version } : {}) };
  });
  return {
    file,
    description: doc.description ?? '',
    buildpacks: doc.buildpacks.map((b) => ({
      ...resolveUri(b.uri, base, file),
      ...(b.id ? { id: b.id } : {}),
      ...(b.version ? { version: b.version } : {}),
    })),
    order: doc.order,
    extensions,
    orderExtensions: doc['order-extensions'],
    ...(doc.system ? { system: { system: doc.system } } : {}),
    buildImage: doc.build?.image ?? doc.stack?.['build-image'],
    buildEnv: doc.build?.env ?? [],
    runImages,
    stackId: doc.stack?.id,
    lifecycleVersion: doc.lifecycle?.version,
    text,
  };
}

/** readBuilderConfig reads and validates a builder.toml file. */
export async function readBuilderConfig(file: string): Promise<BuilderConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new KilnError(
      `cannot read builder config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseBuilderConfig(text, file);
}
