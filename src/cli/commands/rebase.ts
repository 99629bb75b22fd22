import path from 'node:path';
import { type Command, Option } from 'commander';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../cnb/lifecycle-metadata.ts';
import { writeReportToml } from '../../cnb/report-toml.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import type { Image } from '../../oci/image.ts';
import { rebase } from '../../rebase/rebase.ts';
import type { ImageTarget } from '../../transport/image-target.ts';
import type { PullPolicy, Transports } from '../../transport/transports.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';

/** register adds `kiln rebase IMAGE`. */
/** The whole command is the platform spec's rebase step: whatever fails in it ends with 72. */
export const step = 'rebase';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rebase')
    .description('put an app image on a newer run image without rebuilding (app layers untouched)')
    .argument(
      '<image>',
      'app image to rebase and write (local store name, registry reference, oci:DIR[:TAG])',
    )
    .option('--run-image <ref>', 'run image to rebase onto (default: the one recorded in the image, newest)')
    .option('--previous-image <ref>', 'read the app image from here instead of IMAGE')
    .option('--publish', 'IMAGE is a registry reference (never the local store)')
    .option('-t, --tag <ref>', 'also write the result here (repeatable)', (v: string, p: string[] = []) => [
      ...p,
      v,
    ])
    .option('--force', 'rebase even when the safety checks fail (another base, platform, distribution)')
    .option('--report-output-dir <dir>', 'write report.toml here')
    .addOption(
      new Option(
        '--pull-policy <policy>',
        'reading the app and run images (as kiln build): always, if-not-present (default) or never',
      ).choices(['always', 'if-not-present', 'never']),
    )
    .action(
      async (
        arg: string,
        opts: {
          runImage?: string;
          previousImage?: string;
          publish?: boolean;
          tag?: string[];
          force?: boolean;
          reportOutputDir?: string;
          pullPolicy?: PullPolicy;
        },
      ) => {
        const log = ctx.log;
        const started = Date.now();
        // Uploads show progress; reading needs none (rebase touches manifests only).
        const progress = log.progress();
        // --publish reads and writes the registry itself: refusing registries cannot go with it.
        if (opts.publish && opts.pullPolicy === 'never')
          throw new UsageError('--publish reads the registry, which --pull-policy never forbids: drop one');
        const images0 = imageTransports(ctx.settings, log, {
          progress,
          ...(opts.pullPolicy ? { pullPolicy: opts.pullPolicy } : {}),
        });
        try {
          // A bare name is the local store's image when it holds it (pack's rule), unless --publish;
          // a failure to read a bare name from its registry then says the local store was searched too.
          const locate = (s: string) => (opts.publish ? images0.parse(s) : images0.locate(s));
          const target = await locate(arg);
          if (opts.publish && target.registry === undefined)
            throw new UsageError(`--publish needs a registry reference, not ${target.name}`);
          const source = opts.previousImage ? await locate(opts.previousImage) : target;
          const app = await source.read();
          const appCfg = await app.configFile();
          const platform = {
            os: appCfg.os,
            architecture: appCfg.architecture,
            ...(appCfg.variant ? { variant: appCfg.variant } : {}),
          };
          // The same client (its token cache) and store, now choosing the app's platform in indexes.
          const images = images0.with({ platform });

          const chosen = opts.runImage ?? (await recordedRunImage(app, target, source.name, images));
          // Registry mirrors (kiln config registry-mirrors) apply when reading; the name recorded
          // in the image stays the real one.
          const runTarget = await (opts.publish ? images.parse(chosen) : images.locate(chosen));
          log.info(`Rebasing ${source.name} onto ${chosen}`);
          const run = await runTarget.read();
          const runDigest = await run.digest();
          const result = await rebase({
            image: app,
            imageName: source.name,
            runImage: run,
            runImageName: chosen,
            // The repository as the user names it (never a pull-through mirror) at the digest.
            runImageReference: runTarget.digestReference(runDigest),
            explicitRunImage: opts.runImage !== undefined,
            force: opts.force ?? false,
          });
          for (const o of result.overridden) log.warn(`--force: ${o}`);
          if (result.user.kept !== result.user.runImage)
            log.info(
              `The image keeps running as user ${result.user.kept || 'root'} (chosen when it was built); the run image's user is ${result.user.runImage || 'root'}: rebuild to adopt it`,
            );
          // --tag: the same image under more names, blobs written once.
          const tags = await Promise.all((opts.tag ?? []).map((t) => locate(t)));
          const digest = (await images.fanOut([target, ...tags]).write(result.image)).digest;
          progress.end();
          log.info(
            `Rebased ${target.name}: ${result.removedBaseLayers} base layers replaced by ${result.addedBaseLayers}, ${result.appLayers} app layers kept, in ${((Date.now() - started) / 1000).toFixed(2)} s`,
          );
          if (opts.reportOutputDir) {
            const raw = await result.image.rawManifest();
            await writeReportToml(path.join(path.resolve(opts.reportOutputDir), 'report.toml'), {
              image: {
                tags: [target.name, ...(opts.tag ?? [])],
                digest,
                'manifest-size': raw.length,
              },
            });
          }
          ctx.stdout.write(`${digest}\n`);
        } finally {
          progress.end();
        }
      },
    );
}

// The run image the app was built on: runImage.image (or the deprecated stack.runImage), with a
// mirror on the app image's own registry preferred, as the platform spec resolves run images.
async function recordedRunImage(
  app: Image,
  target: ImageTarget,
  what: string,
  images: Transports,
): Promise<string> {
  const raw = (await app.configFile()).config?.Labels?.[LIFECYCLE_METADATA_LABEL];
  if (raw === undefined)
    throw new KilnError(
      `cannot rebase ${what}: not a buildpacks app image (no ${LIFECYCLE_METADATA_LABEL} label)`,
    ).inPhase('rebase');
  const md = parseLifecycleMetadata(raw);
  const image = md.runImage.image ?? md.stack?.runImage?.image;
  if (!image) throw new UsageError(`cannot rebase ${what}: it records no run image name; pass --run-image`);
  const candidates = [image, ...(md.runImage.mirrors ?? md.stack?.runImage?.mirrors ?? [])];
  if (target.registry !== undefined) {
    const same = candidates.find((c) => {
      try {
        return images.parse(c).registry === target.registry;
      } catch {
        // An unparsable candidate is simply not on the same registry.
        return false;
      }
    });
    if (same) return same;
  }
  return image;
}
