import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { buildDependencies, reportedDependencies } from '../attest/dependencies.ts';
import { buildProvenance } from '../attest/provenance.ts';
import type { Signer } from '../attest/signer.ts';
import { sourceFacts, type TreeFilter } from '../attest/source.ts';
import type { ResourceDescriptor } from '../attest/statement.ts';
import { PLATFORM_API } from '../cnb/api.ts';
import { sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { LIFECYCLE_SBOM_DIR, type LifecycleFacts, lifecycleSbom } from '../platform/lifecycle-sbom.ts';
import type { ImageTarget } from '../transport/image-target.ts';
import type { Transports } from '../transport/transports.ts';
import { type CliContext, KILN_VERSION } from './context.ts';
import { lifecycleFacts } from './lifecycle-facts.ts';
import { attestImage, mergedSboms, runStart } from './supply-chain.ts';
import { attestationWanted, type SupplyChainFlags } from './supply-chain-options.ts';

/** What `kiln build` knows of its inputs, for the provenance. */
export interface BuildInputs {
  readonly appDir: string;
  readonly filter?: TreeFilter;
  readonly descriptorFile?: string;
  readonly builder: { readonly name: string; readonly reference: string; readonly image: Image };
  readonly runImage?: string;
  readonly buildpacks: readonly string[];
  readonly envNames: readonly string[];
  readonly options: Readonly<Record<string, string | boolean | number>>;
}

/**
 * startBuildAttestation is `kiln build`'s supply-chain step: it starts before the build (the app
 * tree is hashed as the build copies it) and finishes after the image is written. undefined when
 * no supply-chain output is asked for and the build does not publish.
 */
export function startBuildAttestation(
  ctx: CliContext,
  flags: SupplyChainFlags,
  publish: boolean,
  inputs: BuildInputs,
  signer: Signer | undefined,
): { finish(targets: readonly ImageTarget[], images: Transports): Promise<void> } | undefined {
  if (!attestationWanted(flags, publish, signer !== undefined)) return undefined;
  const run = runStart();
  // The source digest is taken from the app dir now, before anything of the build runs.
  const source = sourceFacts(inputs.appDir, inputs.filter);
  source.catch(() => {}); // awaited in finish; an early failure must not be unhandled
  return {
    async finish(targets, images) {
      // Asked for (a key, --attest, --provenance-output): a failure fails the build. Only the
      // default of --publish: the image is pushed already; a registry that refuses artifacts
      // gets a warning, not a failed build.
      const asked = flags.provenanceOutput !== undefined || flags.attest === true || signer !== undefined;
      try {
        await finishWith(targets, images);
      } catch (e) {
        if (asked) throw e;
        ctx.log.warn(`SBOM and provenance not attached (--no-attest skips them): ${(e as Error).message}`);
      }
    },
  };
  async function finishWith(targets: readonly ImageTarget[], images: Transports): Promise<void> {
    const target = targets[0]!;
    const t0 = performance.now();
    const image = await target.read();
    const digest = await image.digest();
    const descriptor = inputs.descriptorFile
      ? {
          path: path.relative(inputs.appDir, inputs.descriptorFile) || path.basename(inputs.descriptorFile),
          digest: sha256(await readFile(inputs.descriptorFile)),
        }
      : undefined;
    // The merged SBOM: attached below, and what buildpacks downloaded goes into the provenance.
    const sboms = await mergedSboms(ctx, image, target.imageName, images);
    const provenance = buildProvenance({
      image: { name: target.imageName, digest },
      source: await source,
      ...(descriptor ? { projectDescriptor: descriptor } : {}),
      builder: inputs.builder.name,
      ...(inputs.runImage ? { runImage: inputs.runImage } : {}),
      buildpacks: inputs.buildpacks,
      envNames: inputs.envNames,
      options: inputs.options,
      platformApi: PLATFORM_API.toString(),
      dependencies: [
        ...(await buildDependencies(image, inputs.builder, KILN_VERSION)),
        ...reportedDependencies(sboms.layers),
      ],
      byproducts: lifecycleByproducts(await lifecycleFacts()),
      run: { ...run, finishedOn: new Date(), kilnVersion: KILN_VERSION },
    });
    ctx.log.debug(`Provenance: ${(performance.now() - t0).toFixed(0)} ms`);
    await attestImage({
      ctx,
      images,
      targets,
      image,
      provenance,
      flags,
      signer,
      attachByDefault: publish,
      sboms,
    });
  }
}

/** The lifecycle's own SBOM documents as provenance byproducts (name = path under <layers>). */
function lifecycleByproducts(f: LifecycleFacts): ResourceDescriptor[] {
  const docs = lifecycleSbom(f);
  const types = {
    cdx: 'application/vnd.cyclonedx+json',
    spdx: 'application/spdx+json',
    syft: 'application/vnd.syft+json',
  };
  return (Object.keys(types) as (keyof typeof types)[]).map((ext) => ({
    name: `${LIFECYCLE_SBOM_DIR}/sbom.${ext}.json`,
    digest: { sha256: sha256(docs[ext]).slice('sha256:'.length) },
    mediaType: types[ext],
  }));
}
