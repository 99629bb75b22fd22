import { type Digest, sha256 } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer } from '../oci/memory.ts';
import type { ConfigFile, Descriptor, Manifest } from '../oci/schema.ts';
import { CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE } from './document.ts';

const EMPTY_CONFIG = new TextEncoder().encode('{}');

/**
 * artifactImage is an OCI 1.1 artifact manifest (the empty config, one blob per file, an
 * `artifactType` and a `subject`) presented as an Image so any image sink (layout, registry)
 * can write it. This is how SBOMs are attached to images as referrers.
 */
export function artifactImage(opts: {
  artifactType: string;
  subject: Descriptor;
  files: readonly { mediaType: string; data: Uint8Array; title: string }[];
  annotations?: Readonly<Record<string, string>>;
}): Image {
  // Artifact blobs are stored as they are: the blob is its own uncompressed form.
  const layers: Layer[] = opts.files.map((f) =>
    bytesLayer({
      blob: f.data,
      tar: f.data,
      mediaType: f.mediaType,
      annotations: { 'org.opencontainers.image.title': f.title },
    }),
  );
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: opts.artifactType,
    config: { mediaType: MediaType.OciEmpty, digest: sha256(EMPTY_CONFIG), size: EMPTY_CONFIG.length },
    layers: opts.files.map((f) => ({
      mediaType: f.mediaType,
      digest: sha256(f.data),
      size: f.data.length,
      annotations: { 'org.opencontainers.image.title': f.title },
    })),
    subject: {
      mediaType: opts.subject.mediaType,
      digest: opts.subject.digest,
      size: opts.subject.size,
    },
  };
  if (opts.annotations) manifest.annotations = { ...opts.annotations };
  const raw = new TextEncoder().encode(JSON.stringify(manifest));
  const digest: Digest = sha256(raw);
  return {
    mediaType: async () => MediaType.OciManifest,
    rawManifest: async () => raw,
    manifest: async () => manifest,
    digest: async () => digest,
    rawConfig: async () => EMPTY_CONFIG,
    configFile: async (): Promise<ConfigFile> => {
      throw new TypeError('an artifact manifest has no image config');
    },
    layers: async () => layers,
  };
}

/** The file name an SBOM document has inside its referrer artifact. */
const SBOM_TITLE = { [CYCLONEDX_MEDIA_TYPE]: 'sbom.cdx.json', [SPDX_MEDIA_TYPE]: 'sbom.spdx.json' } as const;

/** sbomArtifact is the referrer artifact of one SBOM document (CycloneDX or SPDX JSON) of `subject`. */
export function sbomArtifact(
  subject: Descriptor,
  mediaType: keyof typeof SBOM_TITLE,
  data: Uint8Array,
): Image {
  return artifactImage({
    artifactType: mediaType,
    subject,
    files: [{ mediaType, data, title: SBOM_TITLE[mediaType] }],
  });
}
