import { type Command, Option } from 'commander';
import { formatReport, OUTPUT_FORMATS, type OutputFormat } from '../../inspect/format.ts';
import { inspectImage } from '../../inspect/inspect.ts';
import { ImageStore } from '../../store/store.ts';
import type { CliContext } from '../context.ts';
import {
  describeLocation,
  type ImageLocation,
  imageIO,
  parseImageLocation,
  readImage,
} from '../image-ref.ts';
import { parsePlatform } from './image.ts';

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
        const io = imageIO(
          ctx.settings,
          ctx.log,
          opts.platform ? { platform: parsePlatform(opts.platform) } : {},
        );
        const loc = await preferLocal(parseImageLocation(arg), io.storeDir);
        const image = await readImage(loc, io);
        const report = await inspectImage(image, { reference: arg, sbom: opts.sbom, bom: opts.bom ?? false });
        ctx.stdout.write(formatReport(report, opts.output));
      },
    );
}

/**
 * preferLocal: a bare name the local store knows is the local image (what `kiln build NAME`
 * wrote), as `kiln run` resolves it; anything else stays a registry reference.
 */
export async function preferLocal(loc: ImageLocation, storeDir: string): Promise<ImageLocation> {
  if (loc.kind !== 'registry') return loc;
  try {
    const store = await ImageStore.open(storeDir);
    const name = describeLocation(loc);
    if (await store.find(name)) return { kind: 'local', name };
  } catch {
    // No store yet: a registry image.
  }
  return loc;
}
