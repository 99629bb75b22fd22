import {
  LIFECYCLE_METADATA_LABEL,
  type LifecycleMetadata,
  parseLifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { inStep, KilnError } from '../internal/errors.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { replaceBaseLayers, setConfig } from '../oci/mutate.ts';
import type { ConfigFile, History } from '../oci/schema.ts';
import { parseReference, repositoryString } from '../registry/reference.ts';

// Rebase (CNB platform spec, rebaser): put an app image on a new run image without rebuilding.
// The layers up to `runImage.topLayer` (from the io.buildpacks.lifecycle.metadata label) are the
// old run image's; they are swapped for the new run image's layers, and the app layers above stay
// byte for byte (same descriptors, so a registry push uploads nothing but a config and a
// manifest). The config is the app's, with the new base's platform fields and history, the
// io.buildpacks.base.* / io.buildpacks.stack.* labels synced from the new base, and runImage
// (topLayer, reference, and image when the user chose another run image) rewritten.
//
// The config's User stays the app's, as the reference lifecycle does (imgutil's Rebase keeps the
// config and copies only os/architecture from the new base): the user an app runs as is decided
// when it is built, and a rebase swaps OS layers without changing how the app behaves. An app built
// on a run image whose user was the build user keeps running as that uid on a run image with a
// separate run user (owning its layers, as before), and an app built with a separate run user keeps
// it on an older run image (its layers are group-readable); a rebuild adopts the run image's user.

/**
 * RebaseRefusedError is an image that cannot be rebased as asked: not a buildpacks app image, or a
 * safety check failed (marked not rebasable, another base, platform or distribution). A caller
 * with another way (the fleet rebuilds) tells it from a failure to read or write by its class.
 */
export class RebaseRefusedError extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'RebaseRefusedError';
  }
}

/** Inputs of rebase. */
export interface RebaseOptions {
  /** The app image to rebase (the previous image). */
  readonly image: Image;
  /** How to name it in messages. */
  readonly imageName: string;
  /** The new run image. */
  readonly runImage: Image;
  /** The run image's name as chosen (a reference with tag, or a location): recorded as runImage.image when explicit. */
  readonly runImageName: string;
  /** What to record as runImage.reference: a digest reference (`repo@sha256:...`) or an image ID. */
  readonly runImageReference: string;
  /** The user named the run image (--run-image) rather than kiln taking it from the label. */
  readonly explicitRunImage: boolean;
  /** Skip the safety checks that --force may override. */
  readonly force: boolean;
}

/** What rebase did. */
export interface RebaseResult {
  /** The rebased image (lazy: nothing is read until it is written). */
  readonly image: Image;
  readonly metadata: LifecycleMetadata;
  readonly previousTopLayer: string;
  readonly newTopLayer: Digest;
  /** Base layers removed (the old run image's). */
  readonly removedBaseLayers: number;
  /** Base layers added (the new run image's). */
  readonly addedBaseLayers: number;
  /** App layers kept as they were. */
  readonly appLayers: number;
  /** Checks --force skipped (empty without --force). */
  readonly overridden: readonly string[];
  /** The User the rebased image keeps (the app's) and the new run image's User ('' = root). */
  readonly user: { readonly kept: string; readonly runImage: string };
}

// io.kiln.stack.* (the run-image flavour above all) describe the base too: a rebase onto another
// flavour must not leave the old one's name on the app.
const BASE_LABEL_PREFIXES = ['io.buildpacks.base.', 'io.buildpacks.stack.', 'io.kiln.stack.'];

/**
 * repositoryOf drops a tag and a digest from an image name: `reg/repo:tag@sha256:..` -> `reg/repo`.
 * Registry references are normalised first (`alpine` -> `index.docker.io/library/alpine`), so two
 * spellings of one repository compare equal.
 */
export function repositoryOf(name: string): string {
  if (!/^(oci|local|docker-archive):/.test(name)) {
    try {
      const r = parseReference(name);
      return repositoryString(r);
    } catch {
      // Not a registry reference: fall back to cutting the tag and digest off the string.
    }
  }
  const at = name.indexOf('@');
  const noDigest = at >= 0 ? name.slice(0, at) : name;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

function labelsOf(cfg: ConfigFile): Record<string, string> {
  return cfg.config?.Labels ?? {};
}

/**
 * rebase validates and builds the rebased image. Errors (in the `rebase` phase) say what does not
 * match; those marked overridable are skipped with `force`.
 */
export const rebase: (o: RebaseOptions) => Promise<RebaseResult> = inStep('rebase', rebaseImage);

async function rebaseImage(o: RebaseOptions): Promise<RebaseResult> {
  const fail = (msg: string) => new RebaseRefusedError(`cannot rebase ${o.imageName}: ${msg}`);
  const appCfg = await o.image.configFile();
  const runCfg = await o.runImage.configFile();
  const appLabels = labelsOf(appCfg);
  const runLabels = labelsOf(runCfg);
  const raw = appLabels[LIFECYCLE_METADATA_LABEL];
  if (raw === undefined) throw fail(`not a buildpacks app image (no ${LIFECYCLE_METADATA_LABEL} label)`);
  let md: LifecycleMetadata;
  try {
    md = parseLifecycleMetadata(raw);
  } catch (e) {
    throw fail((e as Error).message);
  }
  const top = md.runImage.topLayer;
  if (!top) throw fail(`${LIFECYCLE_METADATA_LABEL} has no runImage.topLayer`);
  const diffIDs = appCfg.rootfs.diff_ids;
  const cut = diffIDs.indexOf(top as Digest);
  if (cut < 0) throw fail(`runImage.topLayer ${top} is not one of the image's layers`);
  const newDiffIDs = runCfg.rootfs.diff_ids;
  if (newDiffIDs.length === 0) throw fail(`the run image ${o.runImageName} has no layers`);

  // Safety checks: each one --force may override.
  const problems: string[] = [];
  if (appLabels['io.buildpacks.rebasable'] === 'false')
    problems.push('the image is marked not rebasable (io.buildpacks.rebasable=false)');
  const platformOf = (c: ConfigFile) => [c.os, c.architecture, c.variant].filter(Boolean).join('/');
  if (platformOf(appCfg) !== platformOf(runCfg))
    problems.push(`the run image is ${platformOf(runCfg)}, the image is ${platformOf(appCfg)}`);
  const distro = (l: Record<string, string>) =>
    l['io.buildpacks.base.distro.name'] === undefined
      ? undefined
      : `${l['io.buildpacks.base.distro.name']} ${l['io.buildpacks.base.distro.version'] ?? ''}`.trim();
  const appDistro = distro(appLabels);
  const runDistro = distro(runLabels);
  if (appDistro !== undefined && runDistro !== undefined && appDistro !== runDistro)
    problems.push(`the run image's distribution is ${runDistro}, the image's is ${appDistro}`);
  const baseId = (l: Record<string, string>) => l['io.buildpacks.base.id'] ?? l['io.buildpacks.stack.id'];
  const appBase = baseId(appLabels);
  const runBase = baseId(runLabels);
  if (appBase !== undefined && runBase !== undefined && appBase !== runBase)
    problems.push(`the run image's base id is ${runBase}, the image's is ${appBase}`);
  // A newer image of the run image the app was built on (or of one of its mirrors) is a routine
  // patch; any other repository is a different base and needs --force.
  const recorded = [md.runImage.image, ...(md.runImage.mirrors ?? []), md.stack?.runImage?.image]
    .filter((x): x is string => Boolean(x))
    .map(repositoryOf);
  const chosen = repositoryOf(o.runImageName);
  if (o.explicitRunImage && recorded.length > 0 && !recorded.includes(chosen))
    problems.push(`the run image ${chosen} is not the one the image was built on (${recorded[0]})`);
  if (problems.length > 0 && !o.force) throw fail(`${problems.join('; ')} (use --force to rebase anyway)`);

  const newTop = newDiffIDs.at(-1)!;
  const metadata: LifecycleMetadata = structuredClone(md);
  metadata.runImage = { ...metadata.runImage, topLayer: newTop, reference: o.runImageReference };
  if (o.explicitRunImage && !recorded.includes(chosen)) {
    metadata.runImage.image = o.runImageName;
    delete metadata.runImage.mirrors;
    if (metadata.stack?.runImage) metadata.stack = { ...metadata.stack, runImage: { image: o.runImageName } };
  }

  const swapped = replaceBaseLayers(o.image, cut + 1, await o.runImage.layers());
  const image = setConfig(swapped, (cfg) => {
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(labelsOf(cfg)))
      if (!BASE_LABEL_PREFIXES.some((p) => k.startsWith(p))) labels[k] = v;
    for (const [k, v] of Object.entries(runLabels))
      if (BASE_LABEL_PREFIXES.some((p) => k.startsWith(p))) labels[k] = v;
    labels[LIFECYCLE_METADATA_LABEL] = JSON.stringify(metadata);
    const next: ConfigFile = { ...cfg, config: { ...cfg.config, Labels: sortKeys(labels) } };
    // Platform fields come from the new base (ggcr's mutate.Rebase does the same).
    next.os = runCfg.os;
    next.architecture = runCfg.architecture;
    if (runCfg.variant !== undefined) next.variant = runCfg.variant;
    else delete next.variant;
    if (runCfg['os.version'] !== undefined) next['os.version'] = runCfg['os.version'];
    else delete next['os.version'];
    const history = rebasedHistory(cfg.history, cut + 1, diffIDs.length, runCfg.history, newDiffIDs.length);
    if (history) next.history = history;
    else delete next.history;
    return next;
  });
  return {
    image,
    metadata,
    previousTopLayer: top,
    newTopLayer: newTop,
    removedBaseLayers: cut + 1,
    addedBaseLayers: newDiffIDs.length,
    appLayers: diffIDs.length - cut - 1,
    overridden: o.force ? problems : [],
    user: { kept: appCfg.config?.User ?? '', runImage: runCfg.config?.User ?? '' },
  };
}

function sortKeys(r: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(r).sort()) out[k] = r[k]!;
  return out;
}

// The new base's history followed by the app's entries above the old base. History entries
// with empty_layer do not count as layers; when a history does not match its layers it is
// dropped rather than guessed (it is informational).
function rebasedHistory(
  app: readonly History[] | undefined,
  oldBaseLayers: number,
  appLayers: number,
  base: readonly History[] | undefined,
  baseLayers: number,
): History[] | undefined {
  const nonEmpty = (h: readonly History[]) => h.filter((e) => !e.empty_layer).length;
  if (!app || nonEmpty(app) !== appLayers) return undefined;
  let seen = 0;
  let i = 0;
  while (i < app.length && seen < oldBaseLayers) {
    if (!app[i]!.empty_layer) seen++;
    i++;
  }
  const baseHistory = base && nonEmpty(base) === baseLayers ? base.map((h) => ({ ...h })) : undefined;
  if (!baseHistory) return undefined;
  return [...baseHistory, ...app.slice(i).map((h) => ({ ...h }))];
}
