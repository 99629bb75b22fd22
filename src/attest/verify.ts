import { KilnError } from '../internal/errors.ts';
import type { Digest } from '../oci/digest.ts';
import type { Referrer } from '../transport/image-target.ts';
import { BUNDLE_V03_MEDIA_TYPE, parseBundle } from './bundle.ts';
import {
  COSIGN_SIGNATURE_TYPE,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
} from './cosign-signature.ts';
import { openEnvelope } from './dsse.ts';
import { CYCLONEDX_PREDICATE, DependencyName, SPDX_PREDICATE } from './names.ts';
import { matchesAny, type Policy } from './policy.ts';
import {
  KILN_BUILD_TYPE,
  KILN_REBASE_TYPE,
  type ProvenancePredicate,
  SLSA_PROVENANCE_V1,
} from './provenance.ts';
import type { SignatureCheck } from './signer.ts';
import {
  IN_TOTO_PAYLOAD_TYPE,
  type ResourceDescriptor,
  referenceOfUri,
  STATEMENT_TYPE,
} from './statement.ts';

// `kiln verify`: everything found about an image (its referrers, and cosign's `.sig` tag where the
// location has tags) is untrusted until a signature by one of the given keys says otherwise. The
// result is one line per violation; no line means every check held.

/** Signature payloads and bundles are small; a larger blob is refused before parsing. */
const MAX_EVIDENCE_BLOB = 16 << 20;

export interface VerifyRequest {
  readonly digest: Digest;
  /** Artifacts whose subject is the image, and manifests found under cosign's `.sig` tag. */
  readonly evidence: readonly Referrer[];
  readonly keys: readonly SignatureCheck[];
  readonly policy?: Policy;
}

export interface VerifiedStatement {
  readonly predicateType: string;
  readonly keyId: string;
  readonly predicate: unknown;
  readonly artifact: string;
}

export interface Verdict {
  readonly violations: readonly string[];
  /** Key ids whose image signature verified. */
  readonly signedBy: readonly string[];
  readonly statements: readonly VerifiedStatement[];
}

async function blobOf(r: Referrer, i: number): Promise<Uint8Array | undefined> {
  const d = r.manifest.layers[i];
  if (!d || d.size > MAX_EVIDENCE_BLOB) return undefined;
  // A blob that cannot be read is evidence of nothing (never a reason to trust the rest less).
  return r.blob(d).catch(() => undefined);
}

/** checkSignatures finds the cosign signatures over the image digest that verify with a key. */
async function checkSignatures(req: VerifyRequest, violations: string[]): Promise<string[]> {
  const signedBy = new Set<string>();
  let found = 0;
  let otherDigest: string | undefined;
  for (const r of req.evidence) {
    for (const [i, l] of r.manifest.layers.entries()) {
      if (l.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) continue;
      const sig = l.annotations?.[SIGNATURE_ANNOTATION];
      const payload = await blobOf(r, i);
      if (!sig || !payload) continue;
      found++;
      let claimed: unknown;
      try {
        const p = JSON.parse(new TextDecoder().decode(payload)) as {
          critical?: { type?: unknown; image?: { 'docker-manifest-digest'?: unknown } };
        };
        if (p.critical?.type !== COSIGN_SIGNATURE_TYPE) continue;
        claimed = p.critical.image?.['docker-manifest-digest'];
      } catch {
        continue;
      }
      const key = req.keys.find((k) => k.verify(payload, Buffer.from(sig, 'base64')));
      if (!key) continue;
      if (claimed !== req.digest) {
        otherDigest = String(claimed);
        continue;
      }
      signedBy.add(key.keyId);
    }
  }
  if (signedBy.size === 0) {
    if (found === 0) violations.push(`signature: ${req.digest} has no cosign signature`);
    else if (otherDigest)
      violations.push(`signature: the signature names ${otherDigest}, not the image ${req.digest}`);
    else
      violations.push(
        `signature: none of the ${found} signatures of ${req.digest} verifies with the given key(s)`,
      );
  }
  return [...signedBy];
}

/** checkBundles opens every sigstore bundle; a bad one is a violation, a good one a statement. */
async function checkBundles(req: VerifyRequest, violations: string[]): Promise<VerifiedStatement[]> {
  const out: VerifiedStatement[] = [];
  for (const r of req.evidence) {
    if (r.descriptor.artifactType !== BUNDLE_V03_MEDIA_TYPE) continue;
    const what = `attestation ${r.descriptor.digest}`;
    try {
      const bytes = await blobOf(r, 0);
      if (!bytes) throw new Error(`${what}: no bundle blob within ${MAX_EVIDENCE_BLOB} bytes`);
      const env = parseBundle(bytes, what).dsseEnvelope;
      // A bundle signed only by keys the verifier was not given (another signer's) is not
      // evidence either way; one that names a given key, or no key, must verify.
      const ids = env.signatures.map((x) => x.keyid);
      if (ids.every((k) => k !== '') && !ids.some((k) => req.keys.some((c) => c.keyId === k))) continue;
      if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE)
        throw new Error(`${what}: payload is ${env.payloadType}, not in-toto`);
      const { payload, keyId } = openEnvelope(env, req.keys, what);
      const s = JSON.parse(new TextDecoder().decode(payload)) as {
        _type?: unknown;
        subject?: { digest?: Record<string, unknown> }[];
        predicateType?: unknown;
        predicate?: unknown;
      };
      if (s._type !== STATEMENT_TYPE || typeof s.predicateType !== 'string')
        throw new Error(`${what}: not an in-toto Statement v1`);
      const [alg, hex] = req.digest.split(':') as [string, string];
      const subjects = Array.isArray(s.subject) ? s.subject : [];
      if (!subjects.some((x) => x?.digest?.[alg] === hex)) {
        const named = subjects.flatMap((x) => Object.entries(x?.digest ?? {}).map(([a, h]) => `${a}:${h}`));
        throw new Error(
          `${what} (${s.predicateType}): its subject is ${named.join(', ') || 'empty'}, not the image ${req.digest}`,
        );
      }
      out.push({
        predicateType: s.predicateType,
        keyId,
        predicate: s.predicate,
        artifact: r.descriptor.digest,
      });
    } catch (e) {
      violations.push((e as Error).message);
    }
  }
  return out;
}

function candidates(d: ResourceDescriptor | undefined): string[] {
  if (!d) return [];
  const digests = Object.entries(d.digest ?? {}).map(([a, h]) => `${a}:${h}`);
  const ref = typeof d.uri === 'string' ? referenceOfUri(d.uri) : undefined;
  const names = [ref, ...(ref ? [ref.replace(/@sha256:[0-9a-f]+$/, '')] : [])].filter(
    (x): x is string => typeof x === 'string' && x !== '',
  );
  return [...names, ...digests, ...names.flatMap((n) => digests.map((g) => `${n}@${g}`))];
}

const describe = (d: ResourceDescriptor | undefined) =>
  d
    ? `${typeof d.uri === 'string' ? referenceOfUri(d.uri).replace(/@sha256:[0-9a-f]+$/, '') : '(unnamed)'}${d.digest?.sha256 ? `@sha256:${d.digest.sha256}` : ''}`
    : '(none)';

/** checkPolicy applies the policy to the verified statements. */
function checkPolicy(p: Policy, statements: readonly VerifiedStatement[], violations: string[]): void {
  const provs = statements
    .filter((s) => s.predicateType === SLSA_PROVENANCE_V1)
    .map((s) => s.predicate as ProvenancePredicate)
    .filter((x) => [KILN_BUILD_TYPE, KILN_REBASE_TYPE].includes(x?.buildDefinition?.buildType));
  if (
    p.requireSbom &&
    !statements.some((s) => s.predicateType === CYCLONEDX_PREDICATE || s.predicateType === SPDX_PREDICATE)
  )
    violations.push('policy: no signed SBOM attestation (CycloneDX or SPDX) of the image');
  if (!p.requireProvenance) return;
  // A rebase names the build it started from only by digest: the build's provenance is the one
  // that says which builder and source; the newest run image is the rebase's.
  const build = provs.find((x) => x.buildDefinition.buildType === KILN_BUILD_TYPE);
  const prov = provs[0];
  if (!prov) {
    violations.push('policy: no signed SLSA v1 provenance from kiln of the image');
    return;
  }
  // Signed by a given key, yet still only JSON: shapes are checked where they are read.
  const deps = (x: ProvenancePredicate | undefined) => {
    const d = x?.buildDefinition.resolvedDependencies;
    return Array.isArray(d) ? d.filter((e) => e && typeof e === 'object') : [];
  };
  const dep = (x: ProvenancePredicate | undefined, name: string) => deps(x).find((d) => d.name === name);
  if (p.builders) {
    const b = dep(build, DependencyName.Builder);
    if (!build) violations.push('policy: builder: no build provenance names the builder');
    else if (!matchesAny(p.builders, candidates(b)))
      violations.push(`policy: builder ${describe(b)} is not allowed (allowed: ${p.builders.join(', ')})`);
  }
  if (p.runImages) {
    const r = dep(prov, DependencyName.RunImage);
    if (!matchesAny(p.runImages, candidates(r)))
      violations.push(`policy: run image ${describe(r)} is not allowed (allowed: ${p.runImages.join(', ')})`);
  }
  if (p.sourceRepositories) {
    const git = (
      build?.buildDefinition.externalParameters?.source as { git?: { repository?: string } } | undefined
    )?.git;
    if (typeof git?.repository !== 'string')
      violations.push('policy: source: the provenance names no git repository');
    else if (!matchesAny(p.sourceRepositories, [git.repository]))
      violations.push(
        `policy: source repository ${git.repository} is not allowed (allowed: ${p.sourceRepositories.join(', ')})`,
      );
  }
}

/** verifyImage checks the image's signature, its attestations and the policy. */
export async function verifyImage(req: VerifyRequest): Promise<Verdict> {
  // Every blob read once, all at once (a registry round trip each); the checks then read memory.
  // Only signatures and bundles are evidence; plain SBOMs and statements are not read at all.
  const relevant = req.evidence.filter(
    (r) =>
      r.descriptor.artifactType === BUNDLE_V03_MEDIA_TYPE ||
      r.manifest.layers.some((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE),
  );
  const cached = await Promise.all(
    relevant.map(async (r) => {
      const blobs = await Promise.all(
        r.manifest.layers.map((l) =>
          l.size <= MAX_EVIDENCE_BLOB ? r.blob(l).catch(() => undefined) : undefined,
        ),
      );
      const blob = async (d: { digest: string }) => {
        const i = r.manifest.layers.findIndex((l) => l.digest === d.digest);
        const b = i >= 0 ? blobs[i] : undefined;
        if (!b) throw new KilnError(`referrer ${r.descriptor.digest}: blob ${d.digest} could not be read`);
        return b;
      };
      return { ...r, blob };
    }),
  );
  req = { ...req, evidence: cached };
  const violations: string[] = [];
  const signedBy = await checkSignatures(req, violations);
  const statements = await checkBundles(req, violations);
  if (req.policy) checkPolicy(req.policy, statements, violations);
  return { violations, signedBy, statements };
}

/** VerificationFailed ends `kiln verify` when a check failed (the lines say which). */
export class VerificationFailed extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'VerificationFailed';
  }
}
