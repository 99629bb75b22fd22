import path from 'node:path';
import { type AnalyzedToml, type TargetMetadata, writeAnalyzedToml } from '../cnb/analyzed-toml.ts';
import {
  emptyLifecycleMetadata,
  LIFECYCLE_METADATA_LABEL,
  type LifecycleMetadata,
  parseLifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { KilnError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import type { Image, Layer } from '../oci/image.ts';

// The analyze phase: what the previous image left (its lifecycle label, for layer reuse and
// restore) and which run image this build targets (its digest reference and its target:
// os/arch/variant from the config, distro from the io.buildpacks.base.distro.* labels).
// A missing previous image is a first build, not an error; a previous image with a broken label
// is treated the same way (with a warning), as the reference analyzer does.

/** The previous image, when one exists. */
export interface PreviousImage {
  readonly image: Image;
  /** How the image was identified (digest reference, or the store's name@digest). */
  readonly reference: string;
}

/** The run image the app will sit on. */
export interface RunImageInput {
  readonly image: Image;
  /** Digest reference (`repo@sha256:...`) recorded as `runImage.reference`. */
  readonly reference: string;
  /** The name as the user or builder gave it (`runImage.image`). */
  readonly name: string;
}

/** Inputs of analyze. */
export interface AnalyzeOptions {
  readonly previous?: PreviousImage;
  readonly runImage: RunImageInput;
  /** Where to write analyzed.toml (default `<layersDir>/analyzed.toml` when layersDir is set). */
  readonly analyzedPath?: string;
  readonly log: Logger;
}

/** What analyze found. */
export interface Analysis {
  readonly analyzed: AnalyzedToml;
  /** The previous image's lifecycle label (empty metadata on a first build). */
  readonly previousMetadata: LifecycleMetadata;
  /** Layers of the previous image by diffID (what export may reuse). */
  readonly previousLayers: ReadonlyMap<string, Layer>;
  readonly target: TargetMetadata;
}

/** targetOf reads a run image's target from its config and labels. */
export async function targetOf(image: Image): Promise<TargetMetadata> {
  const cfg = await image.configFile();
  const labels = cfg.config?.Labels ?? {};
  const t: TargetMetadata = { os: cfg.os, arch: cfg.architecture };
  if (cfg.variant) t['arch-variant'] = cfg.variant;
  const name = labels['io.buildpacks.base.distro.name'];
  const version = labels['io.buildpacks.base.distro.version'];
  if (name || version) t.distro = { ...(name ? { name } : {}), ...(version ? { version } : {}) };
  const id = labels['io.buildpacks.base.id'] ?? labels['io.buildpacks.stack.id'];
  if (id) t.id = id;
  return t;
}

/** toTomlKeys renders the lifecycle label the way analyzed.toml's [metadata] spells it. */
function toTomlKeys(md: LifecycleMetadata): Record<string, unknown> {
  // TOML has no null; JSON round trip drops undefined and keeps the rest.
  const plain = JSON.parse(JSON.stringify(md, (_k, v) => (v === null ? undefined : v))) as Record<
    string,
    unknown
  >;
  const run = plain.runImage as Record<string, unknown> | undefined;
  delete plain.runImage;
  if (run) {
    const { topLayer, ...rest } = run;
    plain['run-image'] = { 'top-layer': topLayer, ...rest };
  }
  return plain;
}

/** analyze reads the previous image and the run image, and writes analyzed.toml. */
export async function analyze(o: AnalyzeOptions): Promise<Analysis> {
  let previousMetadata = emptyLifecycleMetadata();
  const previousLayers = new Map<string, Layer>();
  if (o.previous) {
    try {
      const cfg = await o.previous.image.configFile();
      const label = cfg.config?.Labels?.[LIFECYCLE_METADATA_LABEL];
      if (label) previousMetadata = parseLifecycleMetadata(label);
      else
        o.log.warn?.(
          `Previous image ${o.previous.reference} has no ${LIFECYCLE_METADATA_LABEL} label: nothing to reuse`,
        );
      const layers = await o.previous.image.layers();
      const ids = cfg.rootfs.diff_ids;
      layers.forEach((l, i) => {
        if (ids[i]) previousLayers.set(ids[i], l);
      });
    } catch (e) {
      o.log.warn?.(`Ignoring previous image ${o.previous.reference}: ${(e as Error).message}`);
      previousMetadata = emptyLifecycleMetadata();
      previousLayers.clear();
    }
  } else {
    o.log.info('Previous image not found: first build');
  }
  let target: TargetMetadata;
  try {
    target = await targetOf(o.runImage.image);
  } catch (e) {
    throw new KilnError(`analyze: cannot read run image ${o.runImage.name}: ${(e as Error).message}`);
  }
  const analyzed: AnalyzedToml = {
    'run-image': { image: o.runImage.name, reference: o.runImage.reference, target },
  };
  if (o.previous) {
    analyzed.image = { reference: o.previous.reference };
    analyzed.metadata = toTomlKeys(previousMetadata);
  }
  if (o.analyzedPath) await writeAnalyzedToml(o.analyzedPath, analyzed);
  return { analyzed, previousMetadata, previousLayers, target };
}

/** analyzedPathIn is the conventional place of analyzed.toml. */
export function analyzedPathIn(layersDir: string): string {
  return path.join(layersDir, 'analyzed.toml');
}
