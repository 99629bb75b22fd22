import { type Command, Option } from 'commander';
import { BUILD_METADATA_LABEL, parseBuildMetadata } from '../../cnb/lifecycle-metadata.ts';
import { formatIndexReport, formatReport, OUTPUT_FORMATS, type OutputFormat } from '../../inspect/format.ts';
import { inspectImage } from '../../inspect/inspect.ts';
import { packBom } from '../../inspect/pack-bom.ts';
import type { Digest } from '../../oci/digest.ts';
import { isImageMediaType } from '../../oci/media-types.ts';
import { isIndex } from '../../transport/image-target.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { terminalSafe } from '../terminal-text.ts';
import { platformOption } from './image.ts';

/** register adds `kiln inspect IMAGE`. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description('show what a buildpacks app image is made of: base, run images, buildpacks, processes, SBOM')
    .argument(
      '<image>',
      'app image (local store name, registry reference, oci:DIR[:TAG], docker-archive:FILE)',
    )
    .addOption(
      new Option('-o, --output <format>', 'output format').choices([...OUTPUT_FORMATS]).default('human'),
    )
    .option(
      '--bom',
      'print the bill of materials as pack does: JSON {remote, local} of {name, version, metadata, buildpacks}',
    )
    .option('--sbom-packages', "list the packages of each SBOM file (kiln's own view)")
    .option('--no-sbom', 'do not read the SBOM layer (no download)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index')
    .action(
      async (
        arg: string,
        opts: {
          output: OutputFormat;
          bom?: boolean;
          sbomPackages?: boolean;
          sbom: boolean;
          platform?: string;
        },
      ) => {
        const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
        const target = await images.locate(arg);
        const packages = Boolean(opts.bom || opts.sbomPackages);
        const o = { reference: arg, sbom: opts.sbom, bom: packages };
        // An index without --platform: every platform's image, in the index's order.
        const top = opts.platform || opts.bom ? undefined : await target.readAny();
        if (top && isIndex(top)) {
          const m = await top.indexManifest();
          const reports = [];
          for (const d of m.manifests) {
            if (!d.platform || !isImageMediaType(d.mediaType)) continue;
            reports.push(await inspectImage(await top.image(d.digest as Digest), o));
          }
          const index = { reference: arg, digest: await top.digest(), mediaType: await top.mediaType() };
          ctx.stdout.write(terminalSafe(formatIndexReport(index, reports, opts.output)));
          return;
        }
        const image = await target.read();
        const report = await inspectImage(image, o);
        if (opts.bom) {
          const raw = (await image.configFile()).config?.Labels?.[BUILD_METADATA_LABEL];
          const build = parseBuildMetadata(raw ?? '{}');
          const side = target.registry !== undefined ? 'remote' : 'local';
          ctx.stdout.write(`${terminalSafe(JSON.stringify(packBom(build, report.sbom, side), null, 2))}\n`);
          return;
        }
        // The referrers (SBOMs, provenance, signatures) where the location keeps them.
        const { attachedTo } = await import('../supply-chain.ts');
        const referrers = await attachedTo(target, await image.digest(), (m) => ctx.log.debug(m));
        ctx.stdout.write(
          terminalSafe(formatReport(referrers ? { ...report, referrers } : report, opts.output)),
        );
      },
    );
}
