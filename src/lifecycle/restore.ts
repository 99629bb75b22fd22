import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { escapeId } from '../cnb/ids.ts';
import { writeLayerToml } from '../cnb/layer-toml.ts';
import {
  type BuildpackLayerMetadata,
  buildpackMetadataFor,
  type LifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { writeStoreToml } from '../cnb/store-toml.ts';
import { extract } from '../layers/extract.ts';
import { walk } from '../layers/walk.ts';
import type { CachedLayer, CacheSnapshot } from './cache.ts';
import { LAYERS_DIR, type PhaseLog } from './export.ts';
import { fingerprintEntries, type TarSettings } from './layer-reuse.ts';

// The restore phase: before build, give each buildpack back what the spec says survives a build
// (the "restore matrix" of the buildpack spec):
//
//   build cache launch | metadata (<layer>.toml, no [types])   | contents
//     T     T     *    | from the cache                         | from the cache
//     T     F     *    | -                                      | -
//     F     T     *    | from the cache (launch: or the image)  | from the cache
//     F     F     T    | from the previous image's label        | - (launch=true + no dir = reuse)
//     F     F     F    | -                                      | -
//
// plus store.toml from the image label. Contents are extracted only when the cache holds exactly
// the diffID the metadata names; otherwise the layer is left out entirely. A read error skips the
// layer (the buildpack rebuilds it), it never fails the build.

/** A group element as restore needs it. */
export interface RestoreBuildpack {
  readonly id: string;
  readonly version: string;
}

/** Inputs of restore. */
export interface RestoreOptions {
  /** Host path of `<layers>`. */
  readonly layersDir: string;
  readonly group: readonly RestoreBuildpack[];
  /** The previous image's lifecycle label (empty on a first build). */
  readonly previousMetadata: LifecycleMetadata;
  /** The cache's committed state, or undefined without a cache. */
  readonly cache?: CacheSnapshot;
  /** Walk settings the exporter will use, so restored layers are fingerprinted exactly as it will. */
  readonly uid: number;
  readonly gid: number;
  readonly settings: TarSettings;
  /** Filled with fingerprints of restored layer dirs -> their cached layer. */
  readonly fingerprints: Map<string, CachedLayer>;
  readonly log: PhaseLog;
}

/** What restore did, for the log and tests. */
export interface RestoreResult {
  /** `<bp>:<layer>` whose contents came from the cache. */
  readonly restored: string[];
  /** `<bp>:<layer>` whose metadata only came back. */
  readonly metadataOnly: string[];
}

/** restore writes layer metadata, store.toml and cached layer contents into `<layers>`. */
export async function restore(o: RestoreOptions): Promise<RestoreResult> {
  const restored: string[] = [];
  const metadataOnly: string[] = [];
  const scratch = path.join(o.layersDir, `.kiln-restore-${randomBytes(4).toString('hex')}`);
  try {
    for (const bp of o.group) {
      const bpDir = path.join(o.layersDir, escapeId(bp.id));
      const fromImage = buildpackMetadataFor(o.previousMetadata, bp.id);
      const fromCache = o.cache ? buildpackMetadataFor(o.cache.metadata, bp.id) : undefined;
      await fs.mkdir(bpDir, { recursive: true, mode: 0o755 });
      if (fromImage?.store)
        await writeStoreToml(path.join(bpDir, 'store.toml'), { metadata: fromImage.store.metadata ?? {} });

      const plan = new Map<string, { md: BuildpackLayerMetadata; contents: boolean }>();
      for (const [name, md] of Object.entries(fromImage?.layers ?? {})) {
        if (md.cache) {
          // Launch+cache: restorable only if the cache holds the very same layer.
          if (o.cache?.layer(md.sha)) plan.set(name, { md, contents: true });
        } else if (md.launch && !md.build) plan.set(name, { md, contents: false });
      }
      for (const [name, md] of Object.entries(fromCache?.layers ?? {})) {
        if (!md.cache || plan.get(name)?.contents) continue;
        if (o.cache?.layer(md.sha)) plan.set(name, { md, contents: true });
        else o.log.debug?.(`Cached layer '${bp.id}:${name}' is missing from the cache; not restoring it`);
      }

      for (const [name, { md, contents }] of [...plan].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        const id = `${bp.id}:${name}`;
        const data = (md.data ?? {}) as Record<string, unknown>;
        if (!contents) {
          await writeLayerToml(path.join(bpDir, `${name}.toml`), data);
          metadataOnly.push(id);
          continue;
        }
        try {
          await restoreContents(o, bp, name, md.sha, scratch);
          await writeLayerToml(path.join(bpDir, `${name}.toml`), data);
          restored.push(id);
          o.log.info(`Restoring data for '${id}' from cache`);
        } catch (e) {
          await fs.rm(path.join(bpDir, name), { recursive: true, force: true });
          o.log.warn?.(`Skipping restore of '${id}': ${(e as Error).message}`);
        }
      }
    }
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
  return { restored, metadataOnly };
}

async function restoreContents(
  o: RestoreOptions,
  bp: RestoreBuildpack,
  name: string,
  diffID: string,
  scratch: string,
): Promise<void> {
  const cached = o.cache!.layer(diffID)!;
  // The cached tar holds `layers/<bp>/<name>/...` (the exporter's paths): unpack it aside and move
  // the layer directory into place, so nothing half-extracted is ever seen at the real path.
  const tmp = path.join(scratch, `${escapeId(bp.id)}-${name}`);
  await fs.rm(tmp, { recursive: true, force: true });
  await extract(await o.cache!.open(diffID), tmp);
  const rel = `${LAYERS_DIR.slice(1)}/${escapeId(bp.id)}/${name}`;
  const src = path.join(tmp, ...rel.split('/'));
  const dst = path.join(o.layersDir, escapeId(bp.id), name);
  await fs.rm(dst, { recursive: true, force: true });
  await fs.mkdir(src, { recursive: true });
  await fs.rename(src, dst);
  // Remember what this directory is, so export and cache recognise it untouched without tarring.
  const entries = await walk(dst, { prefix: rel, uid: o.uid, gid: o.gid });
  const fp = await fingerprintEntries(entries, dst, rel, o.settings);
  o.fingerprints.set(fp, cached);
}
