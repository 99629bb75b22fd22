import { KilnError } from '../internal/errors.ts';
import type { Layout } from '../layout/layout.ts';
import { mayReferTo, REF_NAME } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import type { Descriptor } from '../oci/schema.ts';
import { type Referrer, type Referrers, referrerOf } from './image-target.ts';

// Referrers in an OCI layout (the local store is one): untagged manifests in index.json whose
// `subject` is the image, the layout form of `oras attach` that `kiln stack create` writes.

/** layoutReferrers lists and attaches referrers in `layout` (opened when first needed). */
export function layoutReferrers(open: () => Promise<Layout>): Referrers {
  async function list(subject: Digest, artifactType?: string): Promise<Referrer[]> {
    const layout = await open();
    const out: Referrer[] = [];
    for (const d of (await layout.index()).manifests) {
      if (!mayReferTo(d, subject)) continue;
      let r: Referrer | undefined;
      try {
        r = referrerOf(d, await layout.blobs.readBytes(d.digest as Digest), subject, artifactType, (b) =>
          layout.blobs.readBytes(b.digest as Digest),
        );
      } catch {
        continue; // not a manifest of ours to judge: it is no referrer of this subject either
      }
      if (r) out.push(r);
    }
    return out;
  }
  async function attach(artifact: Image): Promise<Digest> {
    const layout = await open();
    const digest = await artifact.digest();
    // Already attached (same artifact): nothing to add, index.json unchanged.
    if ((await layout.index()).manifests.some((m) => m.digest === digest && !m.annotations?.[REF_NAME]))
      return digest;
    return (await layout.writeImage(artifact)).digest as Digest;
  }
  return {
    list,
    attach,
    // As in a registry's referrers index: an older referrer that `replaces` says an added one
    // supersedes (the same signer's earlier signature or attestation of the same kind) leaves
    // index.json once the new ones are written; its blobs stay until gc.
    async attachAll(subject, artifacts, replaces) {
      const before = replaces ? await list(subject) : [];
      const added: Descriptor[] = [];
      for (const a of artifacts) {
        const m = await a.manifest();
        if (m.subject?.digest !== subject)
          throw new KilnError(`artifact ${await a.digest()} is not a referrer of ${subject}`);
        const digest = await attach(a);
        added.push({
          mediaType: await a.mediaType(),
          digest,
          size: (await a.rawManifest()).length,
          artifactType: m.artifactType ?? m.config.mediaType,
          ...(m.annotations ? { annotations: m.annotations } : {}),
        });
      }
      if (!replaces) return;
      const kept = new Set(added.map((d) => d.digest));
      const drop = new Set<string>();
      for (const r of before) {
        if (kept.has(r.descriptor.digest)) continue;
        const old: Descriptor = {
          ...r.descriptor,
          ...(r.manifest.annotations ? { annotations: r.manifest.annotations } : {}),
        };
        if (added.some((d) => replaces(old, d))) drop.add(r.descriptor.digest);
      }
      if (drop.size > 0) await (await open()).dropUntagged(drop);
    },
  };
}
