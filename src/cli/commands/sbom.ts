import type { Command } from 'commander';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../cnb/lifecycle-metadata.ts';
import { downloadSbom, SBOM_FORMATS, type SbomFormat } from '../../inspect/sbom-download.ts';
import { UsageError } from '../../internal/errors.ts';
import { type Digest, isDigest } from '../../oci/digest.ts';
import type { Image } from '../../oci/image.ts';
import { DEFAULT_EPOCH } from '../../oci/memory.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../sbom/cyclonedx.ts';
import { KILN_TOOL } from '../../stack/sbom.ts';
import type { Referrers } from '../../transport/image-target.ts';
import type { Transports } from '../../transport/transports.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { platformOption } from './image.ts';

/** register adds `kiln sbom download`. */
export function register(program: Command, ctx: CliContext): void {
  const sbom = program.command('sbom').description('software bills of materials of app images');
  sbom
    .command('download')
    .description('write the per-layer SBOM files and merged CycloneDX and SPDX documents of an image')
    .argument('<image>', 'app image (local store name, registry reference, oci:DIR[:TAG])')
    .option(
      '-o, --output-dir <dir>',
      "where to write (layers/sbom/... and sbom.cdx.json, sbom.spdx.json); pack's default: the current directory, so ./layers/sbom/...",
      '.',
    )
    .option('--remote', 'read the image from its registry, never a local copy (pack: not from the daemon)')
    .option(
      '--format <list>',
      `formats to write: ${SBOM_FORMATS.join(',')} (comma-separated)`,
      SBOM_FORMATS.join(','),
    )
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index')
    .action(
      async (
        arg: string,
        opts: { outputDir: string; format: string; platform?: string; remote?: boolean },
      ) => {
        const formats = opts.format.split(',').map((f) => f.trim()) as SbomFormat[];
        for (const f of formats)
          if (!SBOM_FORMATS.includes(f))
            throw new UsageError(`--format "${f}": expected one of ${SBOM_FORMATS.join(', ')}`);
        const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
        const target = opts.remote ? images.parse(arg) : await images.locate(arg);
        const image = await target.read();
        const baseSbom = await runImageSbom(image, images, (m) => ctx.log.debug(m));
        const r = await downloadSbom({
          image,
          name: target.name,
          outputDir: opts.outputDir,
          formats,
          ...(baseSbom ? { baseSbom } : {}),
          epoch: ctx.settings.sourceDateEpoch ?? DEFAULT_EPOCH,
          tool: KILN_TOOL,
        });
        if (r.staleRunImageSbom)
          ctx.log.warn(
            "the image was rebased and its new run image's SBOM was not found (local store or registry referrers): OS packages are not listed (the SBOM layer's run image document describes the previous run image)",
          );
        else if (!baseSbom && r.osPackages === 0)
          ctx.log.warn(
            'the run image SBOM was not found (local store or registry referrers): OS packages are not listed',
          );
        ctx.log.info(
          `Wrote ${r.files.length} SBOM files and ${r.merged.join(', ') || 'no merged document'} to ${opts.outputDir}: ${r.components} packages (${r.osPackages} from the run image)`,
        );
        // The merged documents attached to the image as referrers (kiln build --attest/--publish),
        // as attached: what scanners reading referrers see.
        const { writeAttachedSboms } = await import('../supply-chain.ts');
        const attached = await writeAttachedSboms(target, await image.digest(), opts.outputDir, formats);
        for (const f of [...r.files, ...r.merged, ...attached]) ctx.stdout.write(`${f}\n`);
      },
    );
}

/**
 * runImageSbom finds the CycloneDX SBOM of the run image an app image was built on (its
 * runImage.reference `name@digest`): a referrer in kiln's local store (where `kiln stack create`
 * attaches it), else a referrer of that digest where the reference points (its registry).
 */
export async function runImageSbom(
  image: Image,
  images: Transports,
  debug: (m: string) => void,
): Promise<Record<string, unknown> | undefined> {
  const raw = (await image.configFile()).config?.Labels?.[LIFECYCLE_METADATA_LABEL];
  if (!raw) return undefined;
  const ref = parseLifecycleMetadata(raw).runImage.reference;
  const at = ref.lastIndexOf('@');
  const digest = at >= 0 ? ref.slice(at + 1) : '';
  if (!isDigest(digest)) return undefined;
  const places: [string, () => Referrers][] = [
    ['local store', () => images.storeReferrers()],
    ['registry', () => images.parse(ref).referrers],
  ];
  for (const [where, referrers] of places) {
    try {
      const doc = await documentOf(referrers(), digest);
      if (doc) return doc;
    } catch (e) {
      debug(`run image SBOM: ${where}: ${(e as Error).message}`);
    }
  }
  return undefined;
}

// The first CycloneDX document attached to `digest`.
async function documentOf(
  referrers: Referrers,
  digest: Digest,
): Promise<Record<string, unknown> | undefined> {
  for (const r of await referrers.list(digest, CYCLONEDX_MEDIA_TYPE)) {
    const blob = r.manifest.layers.find((l) => l.mediaType === CYCLONEDX_MEDIA_TYPE);
    if (blob) return JSON.parse(new TextDecoder().decode(await r.blob(blob))) as Record<string, unknown>;
  }
  return undefined;
}
