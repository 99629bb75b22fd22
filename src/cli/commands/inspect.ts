import { type Command, Option } from 'commander';
import { formatReport, OUTPUT_FORMATS, type OutputFormat } from '../../inspect/format.ts';
import { inspectImage } from '../../inspect/inspect.ts';
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
        const image = await target.read();
        const report = await inspectImage(image, { reference: arg, sbom: opts.sbom, bom: opts.bom ?? false });
        // The referrers (SBOMs, provenance, signatures) where the location keeps them.
        const { attachedTo } = await import('../supply-chain.ts');
        const referrers = await attachedTo(target, await image.digest(), (m) => ctx.log.debug(m));
        ctx.stdout.write(
          terminalSafe(formatReport(referrers ? { ...report, referrers } : report, opts.output)),
        );
      },
    );
}
