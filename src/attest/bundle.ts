import { z } from 'zod';
import { KilnError } from '../internal/errors.ts';
import type { Envelope } from './dsse.ts';
import type { VerificationMaterial } from './signer.ts';

// The sigstore bundle v0.3 (protobuf-specs, JSON form) around one DSSE envelope: what
// `cosign verify-attestation --new-bundle-format`, sigstore-js and GitHub's attestations read.
// A key-pair bundle carries a public key hint and no transparency-log entry.

export const BUNDLE_V03_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** The referrer annotation naming the attested predicate type (as sigstore-js/oci writes it). */
export const PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
/** The referrer annotation naming the bundle's content kind. */
export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';

export interface Bundle {
  readonly mediaType: typeof BUNDLE_V03_MEDIA_TYPE;
  readonly verificationMaterial: Readonly<Record<string, unknown>>;
  readonly dsseEnvelope: Envelope;
}

/** bundleOf wraps a signed envelope with what a verifier needs to know about the signer. */
export function bundleOf(envelope: Envelope, material: VerificationMaterial): Bundle {
  const vm =
    material.kind === 'publicKey'
      ? { publicKey: { hint: material.hint } }
      : { x509CertificateChain: { certificates: material.certificates.map((rawBytes) => ({ rawBytes })) } };
  return {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: { ...vm, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: envelope,
  };
}

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
const BundleSchema = z.looseObject({
  mediaType: z.literal(BUNDLE_V03_MEDIA_TYPE),
  verificationMaterial: z.looseObject({}),
  dsseEnvelope: z.looseObject({
    payload: b64,
    payloadType: z.string(),
    signatures: z
      .array(z.looseObject({ sig: b64, keyid: z.string().default('') }))
      .min(1)
      .max(16),
  }),
});

/** parseBundle reads a bundle a registry handed over (untrusted: shape checked, nothing else). */
export function parseBundle(bytes: Uint8Array, what: string): Bundle {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new KilnError(`${what}: not JSON`);
  }
  const r = BundleSchema.safeParse(v);
  if (!r.success) throw new KilnError(`${what}: not a sigstore bundle v0.3 with a DSSE envelope`);
  return r.data as unknown as Bundle;
}
