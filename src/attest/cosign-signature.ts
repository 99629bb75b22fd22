import { type Digest, sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer } from '../oci/memory.ts';
import type { ConfigFile, Descriptor, Manifest } from '../oci/schema.ts';

// The classic cosign signature (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md):
// a "simple signing" JSON payload naming the image digest, signed with ECDSA-SHA256, stored as a
// layer of a manifest tagged `sha256-<hex>.sig` with the signature in the layer's
// `dev.cosignproject.cosign/signature` annotation. That is what `cosign verify --key` reads.
// kiln also gives that manifest a `subject` and an artifactType (cosign's OCI 1.1 form), so the
// same manifest is a referrer in layouts and the local store, and copies with the image.

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** artifactType of cosign signature manifests as OCI 1.1 referrers. */
export const COSIGN_SIG_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';

/** simpleSigningPayload is the payload cosign signs for `repository@digest`. */
export function simpleSigningPayload(repository: string, digest: Digest): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': repository },
        image: { 'docker-manifest-digest': digest },
        type: COSIGN_SIGNATURE_TYPE,
      },
      optional: null,
    }),
  );
}

/** cosignSignatureTag is the tag cosign looks for the signatures of `digest` under. */
export function cosignSignatureTag(digest: Digest): string {
  return `${digest.replace(':', '-')}.sig`;
}

/** signatureImage is the manifest carrying one signature over `payload` for `subject`. */
export function signatureImage(
  subject: Descriptor,
  payload: Uint8Array,
  signature: Uint8Array,
  manifestAnnotations?: Readonly<Record<string, string>>,
): Image {
  const annotations = { [SIGNATURE_ANNOTATION]: Buffer.from(signature).toString('base64') };
  return cosignImage([{ data: payload, mediaType: SIMPLE_SIGNING_MEDIA_TYPE, annotations }], {
    artifactType: COSIGN_SIG_ARTIFACT_TYPE,
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    ...(manifestAnnotations ? { annotations: manifestAnnotations } : {}),
  });
}

/**
 * cosignImage is a manifest as cosign writes its `.sig` and `.att` images: the config ggcr's empty
 * image gets for these layers, and each blob stored as it is (its own uncompressed form).
 */
export function cosignImage(
  blobs: readonly { data: Uint8Array; mediaType: string; annotations: Readonly<Record<string, string>> }[],
  extra: {
    artifactType?: string;
    subject?: Descriptor;
    annotations?: Readonly<Record<string, string>>;
  } = {},
): Image {
  const created = '0001-01-01T00:00:00Z';
  const diffIds = blobs.map((b) => sha256(b.data));
  const config = {
    architecture: '',
    os: '',
    created,
    config: {},
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: blobs.map(() => ({ created })),
  } as unknown as ConfigFile;
  const rawConfig = new TextEncoder().encode(JSON.stringify(config));
  const layers = blobs.map((b) =>
    bytesLayer({ blob: b.data, tar: b.data, mediaType: b.mediaType, annotations: b.annotations }),
  );
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    ...(extra.artifactType ? { artifactType: extra.artifactType } : {}),
    config: { mediaType: MediaType.OciConfig, digest: sha256(rawConfig), size: rawConfig.length },
    layers: blobs.map((b, i) => ({
      mediaType: b.mediaType,
      digest: diffIds[i]!,
      size: b.data.length,
      annotations: { ...b.annotations },
    })),
    ...(extra.subject ? { subject: extra.subject } : {}),
    ...(extra.annotations ? { annotations: { ...extra.annotations } } : {}),
  };
  const raw = new TextEncoder().encode(JSON.stringify(manifest));
  const digest = sha256(raw);
  return {
    mediaType: async () => MediaType.OciManifest,
    rawManifest: async () => raw,
    manifest: async () => manifest,
    digest: async () => digest,
    rawConfig: async () => rawConfig,
    configFile: async () => config,
    layers: async () => layers,
  };
}
