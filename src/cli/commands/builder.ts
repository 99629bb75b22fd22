import { type Command, Option } from 'commander';
import { readBuilderConfig } from '../../builder/builder-config.ts';
import { type BuilderInfo, createBuilder, readBuilder } from '../../builder/builder-image.ts';
import { DEFAULT_BUILDER_NAME } from '../../builder/default-builder.ts';
import { UsageError } from '../../internal/errors.ts';
import type { Image } from '../../oci/image.ts';
import { indexFrom } from '../../oci/index.ts';
import { parsePlatforms, platformString } from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import type { ImageTarget } from '../../transport/image-target.ts';
import type { PullPolicy, Transports } from '../../transport/transports.ts';
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
    .argument(
      '[name]',
      'the builder image: saved in the local store, or with --publish pushed to its registry',
    )
    .requiredOption('-c, --config <file>', 'builder configuration (pack builder.toml format)')
    .option('--publish', "push the builder to NAME's registry instead of the local store (pack's switch)")
    .option('--output <location>', 'write the builder to oci:DIR[:TAG] (or another image location)')
    .addOption(
      new Option(
        '--pull-policy <policy>',
        'reading the build image and buildpackages (as kiln build)',
      ).choices(['always', 'if-not-present', 'never']),
    )
    .option(
      '--platform <os/arch,...>',
      'make a builder per platform (e.g. linux/amd64,linux/arm64) from the build image index, buildpacks chosen by their [[targets]], and write an image index of them (default: the build image as it is)',
    )
    .action(
      async (
        name: string | undefined,
        opts: {
          config: string;
          publish?: boolean;
          output?: string;
          pullPolicy?: PullPolicy;
          platform?: string;
        },
      ) => {
        if (!name && !opts.output) {
          throw new UsageError(
            'builder create: name a destination: NAME (local store; with --publish its registry) or --output oci:DIR',
          );
        }
        if (opts.publish && !name)
          throw new UsageError('builder create --publish: name the registry image (NAME)');
        const log = ctx.log;
        const config = await readBuilderConfig(opts.config);
        if (!config.buildImage)
          throw new UsageError(`${opts.config}: build image missing: expected [build] image`);
        const platforms = opts.platform ? parsePlatforms(opts.platform) : undefined;
        const progress = log.progress();
        const images = imageTransports(ctx.settings, log, {
          progress,
          ...(opts.pullPolicy ? { pullPolicy: opts.pullPolicy } : {}),
        });
        const dests: ImageTarget[] = [];
        if (name) dests.push(images.destination(name, Boolean(opts.publish)));
        if (opts.output) dests.push(images.parse(opts.output));
        // [[buildpacks]] uri = docker://…, oci:…, a .cnb file (commands/buildpack.ts unpacks them)
        const { buildpackageUnpacker } = await import('./buildpack.ts');
        const unpackers: ReturnType<typeof buildpackageUnpacker>[] = [];
        try {
          // New layers are written to the local store first; it doubles as the staging area for pushes.
          const store = await images.store();
          const epoch = ctx.settings.sourceDateEpoch;
          const made: { image: Image; platform?: Platform }[] = [];
          // Each platform reads its own build image and buildpackages (from their indexes).
          for (const platform of platforms ?? [undefined]) {
            const ip = platform ? images.with({ platform }) : images;
            const unpacker = buildpackageUnpacker(ip, ctx.settings.env.TMPDIR);
            unpackers.push(unpacker);
            const { image: buildImage, where } = await resolveImage(config.buildImage, ip);
            const on = platform ? ` (${platformString(platform)})` : '';
            log.info(`Creating builder from ${opts.config} on build image ${where}${on}`);
            const created = await createBuilder(config, {
              buildImage,
              buildImageName: config.buildImage,
              store: store.blobs,
              kilnVersion: KILN_VERSION,
              ...(epoch === undefined ? {} : { epoch }),
              buildpackages: (uri) => unpacker.open(uri),
              ...(platform ? { platform } : {}),
            });
            for (const b of created.buildpacks) log.info(`  buildpack ${b.id}@${b.version}${on}`);
            made.push({ image: created.image, ...(platform ? { platform } : {}) });
          }
          const value = platforms
            ? indexFrom(made.map((m) => ({ image: m.image, platform: m.platform! })))
            : made[0]!.image;
          for (const dest of dests) {
            const { digest } = await dest.write(value);
            log.info(`Wrote builder ${dest.name}@${digest}`);
            ctx.stdout.write(`${digest}\n`);
          }
        } finally {
          progress.end();
          for (const u of unpackers) await u.dispose();
        }
      },
    );

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
    info.lifecycle.platformApis.length || info.lifecycle.version
      ? `Lifecycle: version ${info.lifecycle.version || '(unknown)'}; Buildpack APIs ${info.lifecycle.buildpackApis.join(', ')}; Platform APIs ${info.lifecycle.platformApis.join(', ')}`
      : 'Lifecycle: none in the image (kiln runs the lifecycle itself; other platforms cannot use this builder)',
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
