import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CnbFileError, parseTomlText } from '../cnb/toml-file.ts';
import { UsageError } from '../internal/errors.ts';

// pack's package.toml: `[buildpack] uri`, `[[dependencies]] uri | image`, `[platform] os`.
// A uri is a buildpack directory, a .tgz of one, a .cnb buildpackage file, or an image
// (`docker://REF`, `oci:DIR[:TAG]`); an `image` is an image reference. Relative paths are
// anchored at the package.toml's directory, as pack does.

const Uri = z
  .string({
    error: (iss) =>
      iss.input === undefined
        ? 'missing: expected a buildpack directory, a .tgz or .cnb file, docker://REF or oci:DIR[:TAG]'
        : 'expected a string',
  })
  .min(1, 'must not be empty');

/** The schema of package.toml (pack's buildpackage config). */
export const PackageToml = z
  .object({
    buildpack: z
      .object(
        { uri: Uri },
        { error: (iss) => (iss.input === undefined ? 'missing: expected [buildpack] uri = "…"' : undefined) },
      )
      .loose(),
    dependencies: z
      .array(
        z
          .object({ uri: Uri.optional(), image: Uri.optional() })
          .loose()
          .refine((d) => (d.uri === undefined) !== (d.image === undefined), {
            message: 'exactly one of uri or image is required',
          }),
      )
      .default([]),
    platform: z
      .object({ os: z.enum(['linux'], { message: 'only "linux" is supported' }).default('linux') })
      .loose()
      .default({ os: 'linux' }),
  })
  .loose();
export type PackageToml = z.output<typeof PackageToml>;

/** Where a buildpack (or a set of them) comes from. */
export type BuildpackUri =
  | { readonly kind: 'dir'; readonly dir: string }
  | { readonly kind: 'tgz'; readonly file: string }
  | { readonly kind: 'cnb'; readonly file: string }
  /** An image reference as the user wrote it (`docker://…`, `oci:…`, a registry or store name). */
  | { readonly kind: 'image'; readonly ref: string };

/** PackageConfig is a validated package.toml with its uris resolved. */
export interface PackageConfig {
  readonly file: string;
  readonly buildpack: BuildpackUri;
  readonly dependencies: readonly BuildpackUri[];
  readonly os: 'linux';
}

/**
 * parseBuildpackUri classifies a uri; `base` anchors relative paths and `where` names the key in
 * errors. Registry urns (`urn:cnb:registry:…`) and http(s) downloads are not supported.
 */
export function parseBuildpackUri(uri: string, base: string, where: string): BuildpackUri {
  if (uri.startsWith('docker://') || uri.startsWith('oci:')) return { kind: 'image', ref: uri };
  if (uri.startsWith('urn:cnb:registry:'))
    throw new UsageError(`${where}: ${JSON.stringify(uri)}: buildpack registry urns are not supported`);
  let p = uri;
  if (uri.startsWith('file://')) p = fileURLToPath(uri);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri))
    throw new UsageError(
      `${where}: ${JSON.stringify(uri)}: expected a directory, a .tgz or .cnb file, docker://REF or oci:DIR[:TAG]`,
    );
  const abs = path.resolve(base, p);
  if (/\.(tgz|tar\.gz)$/i.test(abs)) return { kind: 'tgz', file: abs };
  if (/\.cnb$/i.test(abs)) return { kind: 'cnb', file: abs };
  return { kind: 'dir', dir: abs };
}

/** parsePackageConfig validates package.toml text; `file` names it in errors and anchors paths. */
export function parsePackageConfig(text: string, file: string): PackageConfig {
  const doc = parseTomlText(text, PackageToml, file);
  const base = path.dirname(path.resolve(file));
  const deps = doc.dependencies.map((d, i) =>
    d.image !== undefined
      ? ({ kind: 'image', ref: d.image } as const)
      : parseBuildpackUri(d.uri!, base, `${file}: dependencies[${i}].uri`),
  );
  return {
    file,
    buildpack: parseBuildpackUri(doc.buildpack.uri, base, `${file}: buildpack.uri`),
    dependencies: deps,
    os: doc.platform.os,
  };
}

/** readPackageConfig reads and validates a package.toml file. */
export async function readPackageConfig(file: string): Promise<PackageConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CnbFileError(
      file,
      `cannot read package config (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { userInput: true },
    );
  }
  return parsePackageConfig(text, file);
}
