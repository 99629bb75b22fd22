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
  const payloadDigest = sha256(payload);
  const annotations = { [SIGNATURE_ANNOTATION]: Buffer.from(signature).toString('base64') };
  // The config ggcr's empty image gets for one layer: what cosign itself writes.
  const config: ConfigFile = {
    architecture: '',
    os: '',
    created: '0001-01-01T00:00:00Z',
    config: {},
    rootfs: { type: 'layers', diff_ids: [payloadDigest] },
    history: [{ created: '0001-01-01T00:00:00Z' }],
  } as ConfigFile;
  const rawConfig = new TextEncoder().encode(JSON.stringify(config));
  const layer = bytesLayer({
    blob: payload,
    tar: payload,
    mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
    annotations,
  });
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: COSIGN_SIG_ARTIFACT_TYPE,
    config: { mediaType: MediaType.OciConfig, digest: sha256(rawConfig), size: rawConfig.length },
    layers: [
      { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest: payloadDigest, size: payload.length, annotations },
    ],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    ...(manifestAnnotations ? { annotations: { ...manifestAnnotations } } : {}),
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
    layers: async () => [layer],
  };
}
