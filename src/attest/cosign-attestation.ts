import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { cosignImage, SIGNATURE_ANNOTATION } from './cosign-signature.ts';

// cosign's classic attestations (https://github.com/sigstore/cosign/blob/main/specs/ATTESTATION_SPEC.md):
// a manifest tagged `sha256-<hex>.att` next to the image, one layer per attestation, each layer
// the DSSE envelope JSON itself (media type application/vnd.dsse.envelope.v1+json) with the
// annotation `predicateType` and an empty `dev.cosignproject.cosign/signature` (the signature is
// inside the envelope; cosign writes the annotation empty and its reader expects it). That is
// what `cosign verify-attestation --key` without --new-bundle-format, and the admission
// controllers built on cosign's libraries (policy-controller, Kyverno), read.

export const DSSE_ENVELOPE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
export const COSIGN_PREDICATE_TYPE_ANNOTATION = 'predicateType';
/** A cosign `.att` tag holds at most this many layers when kiln rewrites it (a hostile registry). */
export const MAX_ATTESTATION_LAYERS = 64;

/** One attestation of the `.att` manifest: the envelope's bytes and the layer's annotations. */
export interface AttestationLayer {
  readonly envelope: Uint8Array;
  readonly annotations: Readonly<Record<string, string>>;
}

/** cosignAttestationTag is the tag cosign looks for the attestations of `digest` under. */
export function cosignAttestationTag(digest: Digest): string {
  return `${digest.replace(':', '-')}.att`;
}

/** attestationLayer is one envelope as cosign stores it, with kiln's extra annotations. */
export function attestationLayer(
  envelope: Uint8Array,
  predicateType: string,
  extra: Readonly<Record<string, string>> = {},
): AttestationLayer {
  return {
    envelope,
    annotations: { [SIGNATURE_ANNOTATION]: '', [COSIGN_PREDICATE_TYPE_ANNOTATION]: predicateType, ...extra },
  };
}

/** attestationImage is the `.att` manifest holding `layers` in order (cosign's form: no subject). */
export function attestationImage(layers: readonly AttestationLayer[]): Image {
  return cosignImage(
    layers.map((l) => ({
      data: l.envelope,
      mediaType: DSSE_ENVELOPE_MEDIA_TYPE,
      annotations: l.annotations,
    })),
  );
}

/**
 * mergeAttestations is the `.att` layers after adding `added`: an earlier layer of the same
 * predicate type by the same signer (kiln's signer annotation) is replaced, every other layer
 * (other keys, cosign's own) stays, at most MAX_ATTESTATION_LAYERS, the newest kept.
 */
export function mergeAttestations(
  existing: readonly AttestationLayer[],
  added: readonly AttestationLayer[],
  signerAnnotation: string,
): AttestationLayer[] {
  const key = (l: AttestationLayer) =>
    `${l.annotations[signerAnnotation] ?? ''}\n${l.annotations[COSIGN_PREDICATE_TYPE_ANNOTATION] ?? ''}`;
  const replaced = new Set(added.map(key));
  const kept = existing.filter((l) => !(l.annotations[signerAnnotation] && replaced.has(key(l))));
  return [...kept, ...added].slice(-MAX_ATTESTATION_LAYERS);
}
