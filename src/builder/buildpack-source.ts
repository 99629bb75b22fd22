import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { type BuildpackToml, readBuildpackToml, targetsOf } from '../cnb/buildpack-toml.ts';
import { escapeId } from '../cnb/ids.ts';
import { isAbsent, KilnError, UsageError } from '../internal/errors.ts';
import { writeLayer } from '../layers/layer-writer.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { walk } from '../layers/walk.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Layer } from '../oci/image.ts';
import type { Compression } from '../oci/media-types.ts';

/** BuildpackSource is a buildpack directory on the host with its descriptor read. */
export interface BuildpackSource {
  readonly dir: string;
  readonly id: string;
  readonly version: string;
  readonly descriptor: BuildpackToml;
}

/**
 * readBuildpackSource reads `<dir>/buildpack.toml` and checks the buildpack is usable: a
 * component buildpack needs executable `bin/detect` and `bin/build`; a composite has an order.
 */
export async function readBuildpackSource(
  dir: string,
  expect: { id?: string; version?: string } = {},
): Promise<BuildpackSource> {
  let descriptor: BuildpackToml;
  try {
    descriptor = await readBuildpackToml(path.join(dir, 'buildpack.toml'));
  } catch (e) {
    if (isAbsent(e)) {
      throw new KilnError(
        `buildpack ${expect.id ?? dir}: ${path.join(dir, 'buildpack.toml')} not found` +
          (dir.includes(`${path.sep}dist${path.sep}`)
            ? " (run scripts/build.sh to bundle kiln's buildpacks)"
            : ''),
      );
    }
    throw e;
  }
  const { id, version } = descriptor.buildpack;
  if (expect.id && expect.id !== id) {
    throw new UsageError(`buildpack at ${dir}: id is "${id}", builder config expects "${expect.id}"`);
  }
  if (expect.version && expect.version !== version) {
    throw new UsageError(
      `buildpack ${id} at ${dir}: version is ${version}, builder config expects ${expect.version}`,
    );
  }
  if (!descriptor.order?.length) {
    for (const bin of ['detect', 'build']) {
      try {
        await access(path.join(dir, 'bin', bin), constants.X_OK);
      } catch {
        throw new KilnError(`buildpack ${id}@${version}: bin/${bin} missing or not executable in ${dir}`);
      }
    }
  }
  return { dir, id, version, descriptor };
}

/** buildpackPath is where a buildpack lives in a builder: `cnb/buildpacks/<escaped id>/<version>`. */
export function buildpackPath(id: string, version: string): string {
  return `cnb/buildpacks/${escapeId(id)}/${version}`;
}

/**
 * buildpackEntries lists the tar entries of a buildpack's layer: its directory under
 * /cnb/buildpacks with parents, everything root-owned, modes normalized (dirs 0755, files 0755
 * when any exec bit is set, else 0644) so the layer does not depend on the host's umask.
 */
export async function buildpackEntries(src: BuildpackSource): Promise<TarEntry[]> {
  const entries = await walk(src.dir, { prefix: buildpackPath(src.id, src.version), uid: 0, gid: 0 });
  return entries.map((e): TarEntry => {
    if (e.type === 'dir') return { ...e, mode: 0o755 };
    if (e.type === 'symlink') return { ...e, mode: 0o777 };
    return { ...e, mode: e.mode & 0o111 ? 0o755 : 0o644 };
  });
}

/** buildpackLayer writes a buildpack's layer into `store`. */
export async function buildpackLayer(
  src: BuildpackSource,
  opts: { store: BlobStore; epoch?: number; compression?: Compression },
): Promise<Layer> {
  return writeLayer(await buildpackEntries(src), {
    store: opts.store,
    compression: opts.compression ?? 'gzip',
    ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
  });
}

/**
 * contentDigest hashes what the buildpack layer would hold (paths, types, normalized modes,
 * link targets, file bytes) without writing a layer: the default builder's cache key uses it.
 */
export async function contentDigest(src: BuildpackSource): Promise<string> {
  const hash = createHash('sha256');
  for (const e of await buildpackEntries(src)) {
    hash.update(`${e.type}\0${e.path}\0${e.mode.toString(8)}\0${e.linkname ?? ''}\0`);
    if (e.type === 'file') {
      for await (const chunk of createReadStream(
        path.join(src.dir, path.relative(buildpackPath(src.id, src.version), e.path)),
      )) {
        hash.update(chunk as Buffer);
      }
    }
  }
  return `sha256:${hash.digest('hex')}`;
}

/** layerLabelEntry is a buildpack's entry in `io.buildpacks.buildpack.layers`. */
export function layerLabelEntry(
  src: BuildpackSource,
  diffID: string,
  hasBinBuild: boolean,
): Record<string, unknown> {
  const d = src.descriptor;
  const targets = d.targets?.length ? targetsOf(d, hasBinBuild) : undefined;
  return {
    api: d.api,
    ...(d.stacks?.length ? { stacks: d.stacks } : {}),
    ...(targets ? { targets } : {}),
    ...(d.order?.length ? { order: d.order } : {}),
    layerDiffID: diffID,
    ...(d.buildpack.homepage ? { homepage: d.buildpack.homepage } : {}),
    ...(d.buildpack.name ? { name: d.buildpack.name } : {}),
  };
}
