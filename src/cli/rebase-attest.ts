import { rebaseProvenance } from '../attest/provenance.ts';
import type { Signer } from '../attest/signer.ts';
import { imageUri } from '../attest/statement.ts';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../cnb/lifecycle-metadata.ts';
import type { Digest } from '../oci/digest.ts';
import { isDigest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import type { ImageTarget } from '../transport/image-target.ts';
import type { Transports } from '../transport/transports.ts';
import { type CliContext, KILN_VERSION } from './context.ts';
import { attestImage, runStart } from './supply-chain.ts';
import { attestationWanted, type SupplyChainFlags } from './supply-chain-options.ts';

/** What `kiln rebase` knows for its provenance. */
export interface RebaseInputs {
  /** The app image as read (before the rebase) and where from. */
  readonly app: Image;
  readonly appName: string;
  readonly runImage: { readonly reference: string; readonly digest: Digest };
  readonly force: boolean;
}

/**
 * startRebaseAttestation is `kiln rebase`'s supply-chain step: a rebase provenance (the input
 * image by digest, the old and the new run image), the merged SBOM of the result (its OS part is
 * the new run image's SBOM) and, with a key, new signatures. undefined when nothing is asked for.
 */
export function startRebaseAttestation(
  ctx: CliContext,
  flags: SupplyChainFlags,
  inputs: RebaseInputs,
  signer: Signer | undefined,
): { finish(targets: readonly ImageTarget[], result: Image, images: Transports): Promise<void> } | undefined {
  // Only on request: a rebase is a manifest-only operation (what registries and tests expect of
  // `kiln rebase --publish`); --attest, --sign-key or --provenance-output ask for more.
  if (!attestationWanted(flags, false, signer !== undefined)) return undefined;
  const run = runStart();
  return {
    async finish(targets, result, images) {
      const raw = (await inputs.app.configFile()).config?.Labels?.[LIFECYCLE_METADATA_LABEL];
      const old = raw ? parseLifecycleMetadata(raw).runImage.reference : '';
      const at = old.lastIndexOf('@');
      const oldDigest = at >= 0 ? old.slice(at + 1) : '';
      const provenance = rebaseProvenance({
        image: { name: targets[0]!.imageName, digest: await result.digest() },
        input: { reference: inputs.appName, digest: await inputs.app.digest() },
        oldRunImage: {
          uri: imageUri(old || 'unknown'),
          ...(isDigest(oldDigest) ? { digest: { sha256: oldDigest.slice('sha256:'.length) } } : {}),
        },
        newRunImage: inputs.runImage,
        force: inputs.force,
        run: { ...run, finishedOn: new Date(), kilnVersion: KILN_VERSION },
      });
      await attestImage({
        ctx,
        images,
        targets,
        image: result,
        provenance,
        flags,
        signer,
        attachByDefault: false,
      });
    },
  };
}
