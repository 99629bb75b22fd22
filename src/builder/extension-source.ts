import { access, constants, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { escapeId } from '../cnb/ids.ts';
import { parseTomlText } from '../cnb/toml-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { writeLayer } from '../layers/layer-writer.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { walk } from '../layers/walk.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Layer } from '../oci/image.ts';
import type { Compression } from '../oci/media-types.ts';

// Image extensions (Buildpack API 0.9+ `extension.toml`, bin/detect and bin/generate) as a
// builder carries them: one layer each at /cnb/extensions/<escaped id>/<version>, listed in the
// builder's [[order-extensions]]. kiln puts them into builders it creates (as pack does, so the
// builder works with platforms that run them) but does not run them: a build with such a builder
// fails detection unless --skip-extensions (src/platform/builder-facts.ts).

/** The schema of extension.toml, as far as a builder needs it. */
export const ExtensionToml = z
  .object({
    api: z.string().min(1),
    extension: z
      .object({
        id: z.string().min(1),
        version: z.string().min(1),
        name: z.string().optional(),
        homepage: z.string().optional(),
      })
      .loose(),
  })
  .loose();
export type ExtensionToml = z.output<typeof ExtensionToml>;

/** ExtensionSource is an extension directory on the host with its descriptor read. */
export interface ExtensionSource {
  readonly dir: string;
  readonly id: string;
  readonly version: string;
  readonly descriptor: ExtensionToml;
}

/** readExtensionSource reads `<dir>/extension.toml` and checks bin/generate is executable. */
export async function readExtensionSource(
  dir: string,
  expect: { id?: string; version?: string } = {},
): Promise<ExtensionSource> {
  const file = path.join(dir, 'extension.toml');
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`extension ${expect.id ?? dir}: cannot read ${file} (${e.code})`);
  });
  const descriptor = parseTomlText(text, ExtensionToml, file);
  const { id, version } = descriptor.extension;
  if ((expect.id && expect.id !== id) || (expect.version && expect.version !== version))
    throw new UsageError(
      `extension at ${dir} is ${id}@${version}, builder config expects ${expect.id}${expect.version ? `@${expect.version}` : ''}`,
    );
  try {
    await access(path.join(dir, 'bin', 'generate'), constants.X_OK);
  } catch {
    throw new KilnError(`extension ${id}@${version}: bin/generate missing or not executable in ${dir}`);
  }
  return { dir, id, version, descriptor };
}

/** extensionPath is where an extension lives in a builder: `cnb/extensions/<escaped id>/<version>`. */
export function extensionPath(id: string, version: string): string {
  return `cnb/extensions/${escapeId(id)}/${version}`;
}

/** extensionLayer writes an extension's layer (root-owned, modes normalized as buildpacks' are). */
export async function extensionLayer(
  src: ExtensionSource,
  opts: { store: BlobStore; epoch?: number; compression?: Compression },
): Promise<Layer> {
  const entries = await walk(src.dir, { prefix: extensionPath(src.id, src.version), uid: 0, gid: 0 });
  const normalized = entries.map((e): TarEntry => {
    if (e.type === 'dir') return { ...e, mode: 0o755 };
    if (e.type === 'symlink') return { ...e, mode: 0o777 };
    return { ...e, mode: e.mode & 0o111 ? 0o755 : 0o644 };
  });
  return writeLayer(normalized, {
    store: opts.store,
    compression: opts.compression ?? 'gzip',
    ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
  });
}
