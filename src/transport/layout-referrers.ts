import type { Layout } from '../layout/layout.ts';
import { REF_NAME } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { type Referrer, type Referrers, referrerOf } from './image-target.ts';

// Referrers in an OCI layout (the local store is one): untagged manifests in index.json whose
// `subject` is the image, the layout form of `oras attach` that `kiln stack create` writes.

/** layoutReferrers lists and attaches referrers in `layout` (opened when first needed). */
export function layoutReferrers(open: () => Promise<Layout>): Referrers {
  return {
    async list(subject: Digest, artifactType?: string): Promise<Referrer[]> {
      const layout = await open();
      const out: Referrer[] = [];
      for (const d of (await layout.index()).manifests) {
        if (d.annotations?.[REF_NAME]) continue;
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
    },
    async attach(artifact: Image): Promise<Digest> {
      const layout = await open();
      const digest = await artifact.digest();
      // Already attached (same artifact): nothing to add, index.json unchanged.
      if ((await layout.index()).manifests.some((m) => m.digest === digest && !m.annotations?.[REF_NAME]))
        return digest;
      return (await layout.writeImage(artifact)).digest as Digest;
    },
  };
}
