import type { Command } from 'commander';
import { readBuilderConfig } from '../../builder/builder-config.ts';
import { type BuilderInfo, createBuilder, readBuilder } from '../../builder/builder-image.ts';
import { DEFAULT_BUILDER_NAME } from '../../builder/default-builder.ts';
import { UsageError } from '../../internal/errors.ts';
import type { Image } from '../../oci/image.ts';
import type { ImageTarget } from '../../transport/image-target.ts';
import type { Transports } from '../../transport/transports.ts';
import { type CliContext, KILN_VERSION } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { terminalSafe } from '../terminal-text.ts';

/**
 * resolveImage opens an image named in a config or on the command line: an explicit transport
 * (oci:, local:, docker-archive:, docker://) is used as given; a bare name is looked up in the
 * local store first (where `kiln stack create` puts the stack images), then in its registry.
 */
async function resolveImage(ref: string, images: Transports): Promise<{ image: Image; where: string }> {
  const target = await images.locate(ref);
  return { image: await target.read(), where: target.name };
}

/** register adds `kiln builder create` and `kiln builder inspect`. */
export function register(program: Command, ctx: CliContext): void {
  const builder = program.command('builder').description('create and inspect builder images');

  builder
    .command('create')
    .description('create a builder image from a builder.toml (build image + buildpacks + order)')
    .argument('[name]', 'save the builder in the local store under this name')
    .requiredOption('-c, --config <file>', 'builder configuration (pack builder.toml format)')
    .option('--publish <ref>', 'push the builder to this registry reference')
    .option('--output <location>', 'write the builder to oci:DIR[:TAG] (or another image location)')
    .action(async (name: string | undefined, opts: { config: string; publish?: string; output?: string }) => {
      if (!name && !opts.publish && !opts.output) {
        throw new UsageError(
          'builder create: name a destination: NAME (local store), --publish REF or --output oci:DIR',
        );
      }
      const log = ctx.log;
      const config = await readBuilderConfig(opts.config);
      if (!config.buildImage)
        throw new UsageError(`${opts.config}: build image missing: expected [build] image`);
      const progress = log.progress();
      const images = imageTransports(ctx.settings, log, { progress });
      const dests: ImageTarget[] = [];
      if (name) dests.push(images.local(name));
      if (opts.publish) dests.push(images.parse(opts.publish));
      if (opts.output) dests.push(images.parse(opts.output));
      // [[buildpacks]] uri = docker://…, oci:…, a .cnb file (commands/buildpack.ts unpacks them)
      const unpacker = (await import('./buildpack.ts')).buildpackageUnpacker(images, ctx.settings.env.TMPDIR);
      try {
        const { image: buildImage, where } = await resolveImage(config.buildImage, images);
        log.info(`Creating builder from ${opts.config} on build image ${where}`);
        // New layers are written to the local store first; it doubles as the staging area for pushes.
        const store = await images.store();
        const epoch = ctx.settings.sourceDateEpoch;
        const created = await createBuilder(config, {
          buildImage,
          buildImageName: config.buildImage,
          store: store.blobs,
          kilnVersion: KILN_VERSION,
          ...(epoch === undefined ? {} : { epoch }),
          buildpackages: (uri) => unpacker.open(uri),
        });
        for (const b of created.buildpacks) log.info(`  buildpack ${b.id}@${b.version}`);
        for (const dest of dests) {
          const { digest } = await dest.write(created.image);
          log.info(`Wrote builder ${dest.name}@${digest}`);
          ctx.stdout.write(`${digest}\n`);
        }
      } finally {
        progress.end();
        await unpacker.dispose();
      }
    });

  builder
    .command('inspect')
    .description('show a builder: run images, buildpacks, detection order, lifecycle APIs')
    .argument(
      '[ref]',
      'builder image (local store name, registry reference, oci:DIR[:TAG])',
      DEFAULT_BUILDER_NAME,
    )
    .option('-o, --output <format>', 'human or json', 'human')
    .action(async (ref: string, opts: { output: string }) => {
      if (opts.output !== 'human' && opts.output !== 'json') {
        throw new UsageError(`invalid --output "${opts.output}": expected human or json`);
      }
      const { image, where } = await resolveImage(ref, imageTransports(ctx.settings, ctx.log));
      const info = await readBuilder(image, where);
      const digest = await image.digest();
      ctx.stdout.write(
        opts.output === 'json'
          ? `${JSON.stringify({ reference: where, digest, ...info }, null, 2)}\n`
          : terminalSafe(humanBuilder(where, digest, info)),
      );
    });
}

/** humanBuilder renders `kiln builder inspect` for people (pack's section layout). */
export function humanBuilder(where: string, digest: string, info: BuilderInfo): string {
  const lines = [
    `Builder: ${where}`,
    `Digest: ${digest}`,
    `Description: ${info.description || '(none)'}`,
    `Created By: ${info.createdBy.name} ${info.createdBy.version}`,
    `Stack: ${info.stackId ?? '(none)'}`,
    `Lifecycle: version ${info.lifecycle.version || '(unknown)'}; Buildpack APIs ${info.lifecycle.buildpackApis.join(', ')}; Platform APIs ${info.lifecycle.platformApis.join(', ')}`,
    '',
    'Run Images:',
    ...info.runImages.flatMap((r) => [`  ${r.image}`, ...r.mirrors.map((m) => `  ${m} (mirror)`)]),
    '',
    'Buildpacks:',
  ];
  const width = Math.max(2, ...info.buildpacks.map((b) => b.id.length));
  lines.push(`  ${'ID'.padEnd(width)}  VERSION  NAME`);
  for (const b of info.buildpacks)
    lines.push(`  ${b.id.padEnd(width)}  ${b.version.padEnd(7)}  ${b.name ?? ''}`.trimEnd());
  lines.push('', 'Detection Order:');
  info.order.forEach((g, i) => {
    lines.push(`  Group #${i + 1}:`);
    for (const e of g.group)
      lines.push(`    ${e.id}${e.version ? `@${e.version}` : ''}${e.optional ? '    (optional)' : ''}`);
  });
  return `${lines.join('\n')}\n`;
}
