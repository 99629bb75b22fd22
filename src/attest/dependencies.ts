import {
  BUILD_METADATA_LABEL,
  LIFECYCLE_METADATA_LABEL,
  parseBuildMetadata,
  parseLifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { type Digest, isDigest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import type { ConfigFile } from '../oci/schema.ts';
import { DependencyName } from './names.ts';
import { digestSet, imageUri, type ResourceDescriptor } from './statement.ts';

// The resolvedDependencies of a build, read from what the build recorded: the app image's labels
// (run image, buildpacks, launcher) and the builder's buildpack layers label (each buildpack's
// layer diffID, the digest pack records for a buildpack in a builder).

/** The label of a builder that maps buildpack id -> version -> { layerDiffID }. */
const BUILDPACK_LAYERS_LABEL = 'io.buildpacks.buildpack.layers';

/** The OCI pre-defined labels a kiln-made builder names its base (the build image) with. */
const BASE_NAME_LABEL = 'org.opencontainers.image.base.name';
const BASE_DIGEST_LABEL = 'org.opencontainers.image.base.digest';
const BUILDER_METADATA_LABEL = 'io.buildpacks.builder.metadata';

export { DependencyName };

/** buildpackUri names a buildpack in resolvedDependencies. */
export function buildpackUri(id: string, version: string): string {
  return `urn:cnb:buildpack:${id}@${version}`;
}

function layerDiffIds(labels: Readonly<Record<string, string>>): Map<string, string> {
  const out = new Map<string, string>();
  const raw = labels[BUILDPACK_LAYERS_LABEL];
  if (!raw) return out;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return out; // a broken label names no digest: the buildpack is listed without one
  }
  if (!v || typeof v !== 'object') return out;
  for (const [id, versions] of Object.entries(v as Record<string, unknown>)) {
    if (!versions || typeof versions !== 'object') continue;
    for (const [version, info] of Object.entries(versions as Record<string, unknown>)) {
      const d = (info as { layerDiffID?: unknown } | null)?.layerDiffID;
      if (typeof d === 'string' && isDigest(d)) out.set(`${id}@${version}`, d);
    }
  }
  return out;
}

/**
 * buildDependencies lists what the build of `app` resolved: the builder (`builderRef` at its
 * digest), the run image, every buildpack of the group with its layer digest, the launcher.
 */
export async function buildDependencies(
  app: Image,
  builder: { readonly reference: string; readonly image: Image },
  kilnVersion: string,
): Promise<ResourceDescriptor[]> {
  const [appCfg, builderCfg, builderDigest] = await Promise.all([
    app.configFile(),
    builder.image.configFile(),
    builder.image.digest(),
  ]);
  const labels = appCfg.config?.Labels ?? {};
  const lc = labels[LIFECYCLE_METADATA_LABEL];
  const bm = labels[BUILD_METADATA_LABEL];
  if (!lc || !bm)
    throw new KilnError('provenance: the image has no buildpacks labels to read its inputs from');
  const life = parseLifecycleMetadata(lc);
  const build = parseBuildMetadata(bm);
  const out: ResourceDescriptor[] = [
    { name: DependencyName.Builder, uri: imageUri(builder.reference), digest: digestSet(builderDigest) },
  ];
  const buildImage = buildImageOf(builderCfg);
  if (buildImage) out.push(buildImage);
  const runRef = life.runImage.reference;
  const at = runRef.lastIndexOf('@');
  const runDigest = at >= 0 ? runRef.slice(at + 1) : '';
  out.push({
    name: DependencyName.RunImage,
    uri: imageUri(runRef || life.runImage.image || ''),
    ...(isDigest(runDigest) ? { digest: digestSet(runDigest) } : {}),
    ...(life.runImage.topLayer ? { annotations: { topLayer: life.runImage.topLayer } } : {}),
  });
  const diffIds = layerDiffIds(builderCfg.config?.Labels ?? {});
  for (const bp of build.buildpacks ?? []) {
    const d = diffIds.get(`${bp.id}@${bp.version}`);
    out.push({
      name: `buildpack:${bp.id}`,
      uri: buildpackUri(bp.id, bp.version),
      ...(d ? { digest: digestSet(d) } : {}),
      annotations: { id: bp.id, version: bp.version },
    });
  }
  const launcherSha = life.launcher.sha;
  out.push({
    name: DependencyName.Launcher,
    uri: `urn:kiln:launcher@${build.launcher?.version ?? ''}`,
    ...(isDigest(launcherSha) ? { digest: digestSet(launcherSha) } : {}),
  });
  out.push({ name: DependencyName.Lifecycle, uri: `urn:kiln:lifecycle@${kilnVersion}` });
  return out;
}

function madeByKiln(labels: Readonly<Record<string, string>>): boolean {
  try {
    const m = JSON.parse(labels[BUILDER_METADATA_LABEL] ?? '') as { createdBy?: { name?: unknown } } | null;
    return m?.createdBy?.name === 'kiln';
  } catch {
    return false;
  }
}

/**
 * buildImageOf names the build image a builder was made from. Only a kiln-made builder says so
 * (it records the build image's name and digest as its OCI base labels, and appends one layer
 * per buildpack and extension plus one config layer, so the build image's top layer is known
 * too); other tools record no build image, so for their builders only the builder's digest
 * (which covers the build image's layers) is known, and no entry is made. The labels are part
 * of the builder's config, so the builder digest pins them.
 */
export function buildImageOf(builderCfg: ConfigFile): ResourceDescriptor | undefined {
  const labels = builderCfg.config?.Labels ?? {};
  const digest = labels[BASE_DIGEST_LABEL];
  if (!madeByKiln(labels) || !digest || !isDigest(digest)) return undefined;
  const name = labels[BASE_NAME_LABEL];
  const diffIds = builderCfg.rootfs?.diff_ids ?? [];
  const appended = layerDiffIds(labels).size + countVersions(labels[EXTENSION_LAYERS_LABEL]) + 1;
  const top = diffIds[diffIds.length - appended - 1];
  return {
    name: DependencyName.BuildImage,
    ...(name ? { uri: imageUri(name.includes('@') ? name : `${name}@${digest}`) } : {}),
    digest: digestSet(digest as Digest),
    ...(top && isDigest(top) ? { annotations: { topLayer: top } } : {}),
  };
}

/** The extension layers label of a builder (id -> version -> { layerDiffID }). */
const EXTENSION_LAYERS_LABEL = 'io.buildpacks.extension.layers';

function countVersions(raw: string | undefined): number {
  if (!raw) return 0;
  try {
    const v = JSON.parse(raw) as unknown;
    if (!v || typeof v !== 'object') return 0;
    let n = 0;
    for (const versions of Object.values(v as Record<string, unknown>))
      if (versions && typeof versions === 'object') n += Object.keys(versions).length;
    return n;
  } catch {
    return 0;
  }
}

/** CycloneDX hash algorithm names as in-toto DigestSet keys. */
const HASH_ALGS: Readonly<Record<string, string>> = {
  'SHA-1': 'sha1',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};
/** A provenance lists at most this many reported packages (the SBOM has them all). */
const MAX_REPORTED = 10_000;

/**
 * reportedDependencies are the packages with digests in the image's per-layer CycloneDX SBOMs:
 * what buildpacks report having downloaded (the Node.js build with its integrity, npm packages
 * from the lock file), and the Debian packages they installed (`pkg:deb` purls with a version,
 * digest or not), as resolvedDependencies named `package:<name>` with the purl; one entry per
 * name, purl and digest.
 */
export function reportedDependencies(cyclonedx: readonly Uint8Array[]): ResourceDescriptor[] {
  const out: ResourceDescriptor[] = [];
  const seen = new Set<string>();
  for (const bytes of cyclonedx) {
    for (const d of reportedIn(bytes)) {
      const key = `${d.name} ${d.uri ?? ''} ${JSON.stringify(d.digest ?? {})}`;
      if (seen.has(key) || out.length >= MAX_REPORTED) continue;
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

function reportedIn(cyclonedx: Uint8Array): ResourceDescriptor[] {
  let doc: { components?: unknown };
  try {
    doc = JSON.parse(new TextDecoder().decode(cyclonedx)) as { components?: unknown };
  } catch {
    return []; // a buildpack's broken document names nothing
  }
  const out: ResourceDescriptor[] = [];
  for (const c of Array.isArray(doc.components) ? doc.components : []) {
    if (!c || typeof c !== 'object') continue;
    const comp = c as { name?: unknown; purl?: unknown; hashes?: unknown };
    if (typeof comp.name !== 'string') continue;
    const digest: Record<string, string> = {};
    for (const h of (Array.isArray(comp.hashes) ? comp.hashes : []) as ({
      alg?: unknown;
      content?: unknown;
    } | null)[]) {
      if (!h || typeof h !== 'object') continue;
      const alg = typeof h.alg === 'string' ? HASH_ALGS[h.alg] : undefined;
      if (alg && typeof h.content === 'string' && /^[0-9a-f]+$/.test(h.content)) digest[alg] = h.content;
    }
    // A Debian package is pinned by its purl's version (the archive's signed index holds its
    // hash; buildpacks report name, version and arch): listed with or without a digest.
    const deb = typeof comp.purl === 'string' && /^pkg:deb\/[^@\s]+@[^@\s]+$/.test(comp.purl);
    if (Object.keys(digest).length === 0 && !deb) continue;
    out.push({
      name: `package:${comp.name}`,
      ...(typeof comp.purl === 'string' ? { uri: comp.purl } : {}),
      ...(Object.keys(digest).length ? { digest } : {}),
    });
  }
  return out;
}
