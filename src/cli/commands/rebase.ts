import path from 'node:path';
import { type Command, Option } from 'commander';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../cnb/lifecycle-metadata.ts';
import { writeReportToml } from '../../cnb/report-toml.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import type { Digest } from '../../oci/digest.ts';
import type { Image, ImageIndex } from '../../oci/image.ts';
import { indexFrom } from '../../oci/index.ts';
import { isImageMediaType } from '../../oci/media-types.ts';
import { configPlatform, platformString } from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import { rebase } from '../../rebase/rebase.ts';
import { type ImageTarget, isIndex } from '../../transport/image-target.ts';
import type { PullPolicy, Transports } from '../../transport/transports.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { addSupplyChainOptions, attestationWanted, type SupplyChainFlags } from '../supply-chain-options.ts';

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
        } & SupplyChainFlags,
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
          // One image, or an index: each platform rebased onto the same run image's entry for it.
          const top = await source.readAny();
          const apps: { app: Image; platform?: Platform }[] = isIndex(top)
            ? await platformImages(top, source.name)
            : [{ app: top }];
          const rebased: {
            image: Image;
            platform?: Platform;
            appLayers: number;
            removed: number;
            added: number;
          }[] = [];
          // Provenance, SBOM, signature of the rebased image (one platform; the key read here).
          const signer = opts.signKey
            ? await (await import('../supply-chain.ts')).loadSigner(ctx, opts.signKey)
            : undefined;
          // A rebase attaches only when asked (publishing alone does not: it uploads just a config).
          const attests = attestationWanted(opts, false, signer !== undefined);
          if (isIndex(top) && attests)
            throw new UsageError(
              `${source.name} is an index: --sign-key, --provenance-output and --attest apply to one platform image`,
            );
          let attestation: Awaited<ReturnType<typeof import('../rebase-attest.ts').startRebaseAttestation>>;
          let attestImages: Transports = images0;
          for (const { app, platform: listed } of apps) {
            const appCfg = await app.configFile();
            const platform = listed ?? configPlatform(appCfg);
            // The same client (its token cache) and store, now choosing the app's platform in indexes.
            const images = images0.with({ platform });
            const on = listed ? ` (${platformString(platform)})` : '';
            const chosen = opts.runImage ?? (await recordedRunImage(app, target, source.name, images));
            // Registry mirrors (kiln config registry-mirrors) apply when reading; the name recorded
            // in the image stays the real one.
            const runTarget = await (opts.publish ? images.parse(chosen) : images.locate(chosen));
            log.info(`Rebasing ${source.name}${on} onto ${chosen}`);
            // An index of run images without this platform fails here, naming it; a single run
            // image of another platform is the rebase's own safety check (--force overrides it).
            const runAny = await runTarget.readAny();
            const run = isIndex(runAny) ? await runTarget.read() : runAny;
            const runDigest = await run.digest();
            const result = await rebase({
              image: app,
              imageName: `${source.name}${on}`,
              runImage: run,
              runImageName: chosen,
              // The repository as the user names it (never a pull-through mirror) at the digest.
              runImageReference: runTarget.digestReference(runDigest),
              explicitRunImage: opts.runImage !== undefined,
              force: opts.force ?? false,
            });
            for (const o of result.overridden) log.warn(`--force: ${o}`);
            if (!isIndex(top) && attests) {
              attestImages = images;
              attestation = (await import('../rebase-attest.ts')).startRebaseAttestation(
                ctx,
                opts,
                {
                  app,
                  appName: source.digestReference(await app.digest()),
                  runImage: { reference: runTarget.digestReference(runDigest), digest: runDigest },
                  force: opts.force ?? false,
                },
                signer,
              );
            }
            if (result.user.kept !== result.user.runImage)
              log.info(
                `The image keeps running as user ${result.user.kept || 'root'} (chosen when it was built); the run image's user is ${result.user.runImage || 'root'}: rebuild to adopt it`,
              );
            rebased.push({
              image: result.image,
              ...(listed ? { platform: listed } : {}),
              appLayers: result.appLayers,
              removed: result.removedBaseLayers,
              added: result.addedBaseLayers,
            });
          }
          const value = isIndex(top)
            ? indexFrom(rebased.map((r) => ({ image: r.image, platform: r.platform! })))
            : rebased[0]!.image;
          // --tag: the same image under more names, blobs written once.
          const tags = await Promise.all((opts.tag ?? []).map((t) => locate(t)));
          const digest = (await images0.fanOut([target, ...tags]).write(value)).digest;
          if (!isIndex(top)) await attestation?.finish([target, ...tags], value as Image, attestImages);
          const result = {
            removedBaseLayers: rebased.reduce((n, r) => n + r.removed, 0),
            addedBaseLayers: rebased.reduce((n, r) => n + r.added, 0),
            appLayers: rebased.reduce((n, r) => n + r.appLayers, 0),
            image: value,
          };
          progress.end();
          log.info(
            `Rebased ${target.name}${isIndex(top) ? ` (${rebased.length} platforms)` : ''}: ${result.removedBaseLayers} base layers replaced by ${result.addedBaseLayers}, ${result.appLayers} app layers kept, in ${((Date.now() - started) / 1000).toFixed(2)} s`,
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
  // --provenance-output, --sign-key, --attest (the command just registered is the last one).
  addSupplyChainOptions(program.commands.at(-1)!);
}

/** platformImages are the single-platform images of an index with their listed platforms. */
async function platformImages(
  index: ImageIndex,
  what: string,
): Promise<{ app: Image; platform: Platform }[]> {
  const out: { app: Image; platform: Platform }[] = [];
  for (const d of (await index.indexManifest()).manifests) {
    // Referrers and attestations listed in an index carry no platform: they are not rebased.
    if (!d.platform || !isImageMediaType(d.mediaType)) continue;
    out.push({ app: await index.image(d.digest as Digest), platform: d.platform });
  }
  if (out.length === 0) throw new KilnError(`cannot rebase ${what}: the index lists no platform image`);
  return out;
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
