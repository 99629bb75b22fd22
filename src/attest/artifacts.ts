import type { Image } from '../oci/image.ts';
import type { Descriptor } from '../oci/schema.ts';
import { artifactImage, sbomArtifact } from '../sbom/artifact.ts';
import { CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE } from '../sbom/document.ts';
import {
  BUNDLE_CONTENT_ANNOTATION,
  BUNDLE_V03_MEDIA_TYPE,
  bundleOf,
  PREDICATE_TYPE_ANNOTATION,
} from './bundle.ts';
import { type AttestationLayer, attestationLayer } from './cosign-attestation.ts';
import { signatureImage, simpleSigningPayload } from './cosign-signature.ts';
import { type Envelope, signEnvelope } from './dsse.ts';
import type { Signer } from './signer.ts';
import {
  IN_TOTO_PAYLOAD_TYPE,
  imageSubject,
  type Statement,
  statement,
  statementBytes,
} from './statement.ts';

// The artifacts kiln attaches to an image as OCI referrers (each manifest's `subject` is the
// image): the merged SBOM documents as they are (what `kiln sbom download`, Trivy and Grype read),
// the provenance as an in-toto statement, and, with a signer, a cosign signature and every
// statement as a DSSE envelope in a sigstore bundle v0.3.

import { CYCLONEDX_PREDICATE, SPDX_PREDICATE } from './names.ts';

export { CYCLONEDX_PREDICATE, SPDX_PREDICATE };
/** artifactType of an unsigned in-toto statement referrer. */
export const IN_TOTO_ARTIFACT_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_PREDICATE_ANNOTATION = 'in-toto.io/predicate-type';
/**
 * Who made an attestation (a key id, or `none` unsigned): a newer attestation of the same kind by
 * the same signer replaces the older one in a registry's referrers index, so rebuilds of one
 * image do not pile up provenance and signatures.
 */
export const SIGNER_ANNOTATION = 'dev.kiln.attestation.signer';

/** What is attested about one image. */
export interface AttestationInputs {
  /** The image manifest's descriptor (the subject of every artifact). */
  readonly subject: Descriptor;
  /** The image's name in statements, e.g. `registry/repo`. */
  readonly name: string;
  /** The repository cosign's simple-signing payload names. */
  readonly repository: string;
  readonly provenance?: Statement;
  readonly cyclonedx?: Uint8Array;
  readonly spdx?: Uint8Array;
  /** Signs the image and the statements when given. */
  readonly signer?: Signer;
}

/**
 * The referrer artifacts of one image; `signature` also goes under cosign's `.sig` tag, and
 * `cosignAttestations` (the same signed statements as DSSE envelopes) under its `.att` tag.
 */
export interface Attestations {
  readonly referrers: readonly Image[];
  readonly signature?: Image;
  readonly cosignAttestations?: readonly AttestationLayer[];
}

async function bundleArtifact(
  subject: Descriptor,
  signer: Signer,
  env: Envelope,
  s: Statement,
): Promise<Image> {
  const bundle = new TextEncoder().encode(JSON.stringify(bundleOf(env, signer.material)));
  return artifactImage({
    artifactType: BUNDLE_V03_MEDIA_TYPE,
    subject,
    files: [{ mediaType: BUNDLE_V03_MEDIA_TYPE, data: bundle, title: 'attestation.sigstore.json' }],
    annotations: {
      [PREDICATE_TYPE_ANNOTATION]: s.predicateType,
      [BUNDLE_CONTENT_ANNOTATION]: 'dsse-envelope',
      [SIGNER_ANNOTATION]: signer.keyId,
    },
  });
}

function jsonOf(bytes: Uint8Array): unknown {
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** attestations builds the artifacts for `a` (signing happens here, in kiln's own process). */
export async function attestations(a: AttestationInputs): Promise<Attestations> {
  const out: Image[] = [];
  const subject = a.subject;
  if (a.cyclonedx) out.push(sbomArtifact(subject, CYCLONEDX_MEDIA_TYPE, a.cyclonedx));
  if (a.spdx) out.push(sbomArtifact(subject, SPDX_MEDIA_TYPE, a.spdx));
  if (!a.signer) {
    if (a.provenance)
      out.push(
        artifactImage({
          artifactType: IN_TOTO_ARTIFACT_TYPE,
          subject,
          files: [
            {
              mediaType: IN_TOTO_ARTIFACT_TYPE,
              data: statementBytes(a.provenance),
              title: 'provenance.intoto.json',
            },
          ],
          annotations: {
            [IN_TOTO_PREDICATE_ANNOTATION]: a.provenance.predicateType,
            [SIGNER_ANNOTATION]: 'none',
          },
        }),
      );
    return { referrers: out };
  }
  const statements: Statement[] = [];
  if (a.provenance) statements.push(a.provenance);
  const who = imageSubject(a.name, subject.digest as `sha256:${string}`);
  if (a.cyclonedx) statements.push(statement(who, CYCLONEDX_PREDICATE, jsonOf(a.cyclonedx)));
  if (a.spdx) statements.push(statement(who, SPDX_PREDICATE, jsonOf(a.spdx)));
  const cosignAttestations: AttestationLayer[] = [];
  for (const s of statements) {
    const env = await signEnvelope(a.signer, IN_TOTO_PAYLOAD_TYPE, statementBytes(s));
    out.push(await bundleArtifact(subject, a.signer, env, s));
    cosignAttestations.push(
      attestationLayer(new TextEncoder().encode(JSON.stringify(env)), s.predicateType, {
        [SIGNER_ANNOTATION]: a.signer.keyId,
      }),
    );
  }
  const payload = simpleSigningPayload(a.repository, subject.digest as `sha256:${string}`);
  const signature = signatureImage(subject, payload, await a.signer.sign(payload), {
    [SIGNER_ANNOTATION]: a.signer.keyId,
  });
  return { referrers: [...out, signature], signature, cosignAttestations };
}
