import path from 'node:path';
import type { Command } from 'commander';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../cnb/lifecycle-metadata.ts';
import { writeReportToml } from '../../cnb/report-toml.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import type { Image } from '../../oci/image.ts';
import { rebase } from '../../rebase/rebase.ts';
import type { CliContext } from '../context.ts';
import {
  describeLocation,
  digestReference,
  explainUnreachable,
  type ImageIO,
  type ImageLocation,
  imageIO,
  locateImage,
  parseImageLocation,
  readImage,
  writeImageTo,
} from '../image-ref.ts';

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
        },
      ) => {
        const log = ctx.log;
        const started = Date.now();
        const io0 = imageIO(ctx.settings, log);
        const locate = async (s: string) =>
          opts.publish ? parseImageLocation(s) : locateImage(s, io0.storeDir);
        // A bare name locateImage sent to its registry: a failure says the local store was searched too.
        const read = (s: string, loc: ImageLocation, io: ImageIO) =>
          readImage(loc, io).catch((e: unknown) => {
            throw opts.publish ? e : explainUnreachable(s, loc, io.storeDir, e);
          });
        const target = await locate(arg);
        if (opts.publish && target.kind !== 'registry')
          throw new UsageError(`--publish needs a registry reference, not ${describeLocation(target)}`);
        const source = opts.previousImage ? await locate(opts.previousImage) : target;
        const app = await read(opts.previousImage ?? arg, source, io0);
        const appCfg = await app.configFile();
        const platform = {
          os: appCfg.os,
          architecture: appCfg.architecture,
          ...(appCfg.variant ? { variant: appCfg.variant } : {}),
        };
        // The same client (its token cache) and config, now choosing the app's platform in indexes.
        const io: ImageIO = { ...io0, platform };

        const chosen = opts.runImage ?? (await recordedRunImage(app, target, describeLocation(source)));
        // Registry mirrors (kiln config registry-mirrors) apply in readImage; the name recorded
        // in the image stays the real one.
        const runLoc = await locate(chosen);
        log.info(`Rebasing ${describeLocation(source)} onto ${chosen}`);
        const run = await read(chosen, runLoc, io);
        const runDigest = await run.digest();
        const result = await rebase({
          image: app,
          imageName: describeLocation(source),
          runImage: run,
          runImageName: chosen,
          // The repository as the user names it (never a pull-through mirror) at the digest.
          runImageReference: digestReference(runLoc, runDigest),
          explicitRunImage: opts.runImage !== undefined,
          force: opts.force ?? false,
        });
        for (const o of result.overridden) log.warn(`--force: ${o}`);
        if (result.user.kept !== result.user.runImage)
          log.info(
            `The image keeps running as user ${result.user.kept || 'root'} (chosen when it was built); the run image's user is ${result.user.runImage || 'root'}: rebuild to adopt it`,
          );
        const progress = log.progress();
        let digest: string;
        try {
          const wio: ImageIO = { ...io, progress };
          digest = await writeImageTo(target, result.image, wio);
          for (const t of opts.tag ?? []) await writeImageTo(await locate(t), result.image, wio);
        } finally {
          progress.end();
        }
        log.info(
          `Rebased ${describeLocation(target)}: ${result.removedBaseLayers} base layers replaced by ${result.addedBaseLayers}, ${result.appLayers} app layers kept, in ${((Date.now() - started) / 1000).toFixed(2)} s`,
        );
        if (opts.reportOutputDir) {
          const raw = await result.image.rawManifest();
          await writeReportToml(path.join(path.resolve(opts.reportOutputDir), 'report.toml'), {
            image: {
              tags: [describeLocation(target), ...(opts.tag ?? [])],
              digest,
              'manifest-size': raw.length,
            },
          });
        }
        ctx.stdout.write(`${digest}\n`);
      },
    );
}

// The run image the app was built on: runImage.image (or the deprecated stack.runImage), with a
// mirror on the app image's own registry preferred, as the platform spec resolves run images.
async function recordedRunImage(app: Image, target: ImageLocation, what: string): Promise<string> {
  const raw = (await app.configFile()).config?.Labels?.[LIFECYCLE_METADATA_LABEL];
  if (raw === undefined)
    throw new KilnError(
      `cannot rebase ${what}: not a buildpacks app image (no ${LIFECYCLE_METADATA_LABEL} label)`,
    );
  const md = parseLifecycleMetadata(raw);
  const image = md.runImage.image ?? md.stack?.runImage?.image;
  if (!image) throw new UsageError(`cannot rebase ${what}: it records no run image name; pass --run-image`);
  const candidates = [image, ...(md.runImage.mirrors ?? md.stack?.runImage?.mirrors ?? [])];
  if (target.kind === 'registry') {
    const same = candidates.find((c) => {
      try {
        const l = parseImageLocation(c);
        return l.kind === 'registry' && l.ref.registry === target.ref.registry;
      } catch {
        return false;
      }
    });
    if (same) return same;
  }
  return image;
}
