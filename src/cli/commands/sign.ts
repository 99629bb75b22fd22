import type { Command } from 'commander';
import { attestations, IN_TOTO_ARTIFACT_TYPE } from '../../attest/artifacts.ts';
import { type Provenance, SLSA_PROVENANCE_V1 } from '../../attest/provenance.ts';
import type { Digest } from '../../oci/digest.ts';
import { CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE } from '../../sbom/document.ts';
import type { Referrer } from '../../transport/image-target.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { attachAll, loadSigner, mergedSboms, repositoryOf } from '../supply-chain.ts';
import { platformOption } from './image.ts';

/** firstBlob is the first layer of the first referrer, if any. */
async function firstBlob(rs: readonly Referrer[]): Promise<Uint8Array | undefined> {
  const r = rs[0];
  const l = r?.manifest.layers[0];
  return r && l && l.size <= 64 << 20 ? r.blob(l) : undefined;
}

/** The image's unsigned provenance (kiln build --attest without a key), when it names the image. */
async function unsignedProvenance(rs: readonly Referrer[], digest: Digest): Promise<Provenance | undefined> {
  for (const r of rs) {
    const bytes = await firstBlob([r]);
    if (!bytes) continue;
    try {
      const s = JSON.parse(new TextDecoder().decode(bytes)) as Provenance;
      const [alg, hex] = digest.split(':') as [string, string];
      if (s.predicateType === SLSA_PROVENANCE_V1 && s.subject?.some((x) => x.digest?.[alg] === hex)) return s;
    } catch {}
  }
  return undefined;
}

/** register adds `kiln sign`. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('sign')
    .description(
      'sign an image (cosign-compatible signature) and its SBOM and provenance (DSSE in sigstore bundles), attached as OCI referrers',
    )
    .argument('<image>', 'image (registry reference, oci:DIR[:TAG], local store name)')
    .requiredOption(
      '--key <file>',
      'ECDSA P-256 private key (passphrase: KILN_PASSWORD or COSIGN_PASSWORD, else asked)',
    )
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index')
    .action(async (arg: string, opts: { key: string; platform?: string }) => {
      const signer = await loadSigner(ctx, opts.key);
      const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
      const target = await images.locate(arg);
      const image = await target.read();
      const digest = (await image.digest()) as Digest;
      const subject = {
        mediaType: await image.mediaType(),
        digest,
        size: (await image.rawManifest()).length,
      };
      const [cdx, spdx, prov] = await Promise.all([
        target.referrers.list(digest, CYCLONEDX_MEDIA_TYPE),
        target.referrers.list(digest, SPDX_MEDIA_TYPE),
        target.referrers.list(digest, IN_TOTO_ARTIFACT_TYPE),
      ]);
      let sboms: { cyclonedx?: Uint8Array | undefined; spdx?: Uint8Array | undefined } = {
        cyclonedx: await firstBlob(cdx),
        spdx: await firstBlob(spdx),
      };
      if (!sboms.cyclonedx && !sboms.spdx) sboms = await mergedSboms(ctx, image, target.imageName, images);
      const provenance = await unsignedProvenance(prov, digest);
      const a = await attestations({
        subject,
        name: target.imageName,
        repository: repositoryOf(target, images),
        ...(provenance ? { provenance } : {}),
        ...(sboms.cyclonedx ? { cyclonedx: sboms.cyclonedx } : {}),
        ...(sboms.spdx ? { spdx: sboms.spdx } : {}),
        signer,
      });
      await attachAll([target], a, digest, images);
      ctx.log.info(
        `Signed ${target.name}@${digest} with key ${signer.keyId.slice(0, 12)}: ${a.referrers.length} artifacts attached${provenance ? '' : ' (no provenance found to sign)'}`,
      );
      ctx.stdout.write(`${digest}\n`);
    });
}
