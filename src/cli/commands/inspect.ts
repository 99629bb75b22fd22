import { type Command, Option } from 'commander';
import { formatIndexReport, formatReport, OUTPUT_FORMATS, type OutputFormat } from '../../inspect/format.ts';
import { inspectImage } from '../../inspect/inspect.ts';
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
    .option('--bom', 'list the packages of each SBOM file')
    .option('--no-sbom', 'do not read the SBOM layer (no download)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index')
    .action(
      async (
        arg: string,
        opts: { output: OutputFormat; bom?: boolean; sbom: boolean; platform?: string },
      ) => {
        const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
        const target = await images.locate(arg);
        const o = { reference: arg, sbom: opts.sbom, bom: opts.bom ?? false };
        // An index without --platform: every platform's image, in the index's order.
        const top = opts.platform ? undefined : await target.readAny();
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
        ctx.stdout.write(terminalSafe(formatReport(report, opts.output)));
      },
    );
}
