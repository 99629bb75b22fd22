import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { createBuildpackage } from '../../buildpackage/buildpackage.ts';
import { readOciArchive } from '../../buildpackage/oci-archive.ts';
import {
  type BuildpackUri,
  type PackageConfig,
  parseBuildpackUri,
  readPackageConfig,
} from '../../buildpackage/package-config.ts';
import { parseTarget, scaffoldBuildpack } from '../../buildpackage/scaffold.ts';
import { UsageError } from '../../internal/errors.ts';
import { statIfExists } from '../../internal/fs.ts';
import { BlobStore } from '../../layout/blob-store.ts';
import type { Image } from '../../oci/image.ts';
import { indexFrom } from '../../oci/index.ts';
import { hostPlatform, parsePlatforms } from '../../oci/platform.ts';
import { isBareName, type PullPolicy, type Transports } from '../../transport/transports.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { registerInspect } from './buildpack-inspect.ts';

// `kiln buildpack package` and `kiln buildpack new`, plus the one place where a buildpackage
// named by a user (`--buildpack`, builder.toml `uri`, package.toml dependencies) is opened.

/**
 * openBuildpackageImage opens a buildpackage an argument names, or returns undefined when it
 * names no image (then it is a buildpack id): an existing file is a `.cnb` (OCI layout tar);
 * `oci:`, `docker://`, `docker-archive:` and `local:` are read as given; a bare name is the local
 * store's image, else a registry image when its first part is a registry host (has a dot or a
 * port, or is localhost) — pack's rule for telling images from ids.
 */
export async function openBuildpackageImage(ref: string, images: Transports): Promise<Image | undefined> {
  const st = await statIfExists(ref);
  const platform = images.options.platform;
  if (st?.isFile()) return readOciArchive(path.resolve(ref), platform ? { platform } : {});
  if (st?.isDirectory()) return undefined;
  if (/^(oci|docker-archive|docker-daemon|local):/.test(ref) || ref.startsWith('docker://'))
    return (await images.locate(ref)).read();
  if (/^[A-Za-z0-9./-]+@[^@/]+$/.test(ref) && !ref.includes(':')) return undefined; // id@version
  let held: Awaited<ReturnType<Transports['held']>>;
  try {
    held = await images.held(ref);
    if (!held && isBareName(ref)) return undefined;
    if (!held) images.parse(ref);
  } catch {
    // Neither held nor parsable as an image reference: the argument is a buildpack id.
    return undefined;
  }
  // locate applies --pull-policy (a held copy first unless `always` asks the registry).
  return (await images.locate(ref)).read();
}

/** openPackageUri opens a `[[dependencies]]`/`[buildpack]` image or `.cnb` uri of package.toml. */
async function openPackageUri(
  uri: BuildpackUri & { kind: 'image' | 'cnb' },
  images: Transports,
): Promise<Image> {
  const platform = images.options.platform;
  if (uri.kind === 'cnb') return readOciArchive(uri.file, platform ? { platform } : {});
  const img = await openBuildpackageImage(uri.ref, images);
  if (img) return img;
  return images.parse(uri.ref).read(); // names its failure
}

interface PackageFlags {
  config?: string;
  path?: string;
  publish?: boolean;
  format: 'image' | 'file';
  pathToOutput?: string;
  target?: string;
  platform?: string;
  pullPolicy?: PullPolicy;
}

/** hostArch is this machine's OCI architecture. */
function hostArch(): string {
  return hostPlatform(process.arch).architecture;
}

/** register adds `kiln buildpack package` and `kiln buildpack new`. */
export function register(program: Command, ctx: CliContext): void {
  const bp = program.command('buildpack').description('package, inspect and scaffold buildpacks');

  bp.command('package')
    .description('package a buildpack (and a composite with its components) as a buildpackage')
    .argument(
      '<name>',
      'image name (local store; with --publish a registry), oci:DIR[:TAG], or with --format file a .cnb file',
    )
    .option(
      '-c, --config <file>',
      'package.toml ([buildpack] uri, [[dependencies]] uri|image, [platform] os)',
    )
    .option('-p, --path <dir>', 'package the buildpack in this directory (instead of --config)')
    .option('--publish', 'push the buildpackage to its registry')
    .addOption(
      new Option('-f, --format <format>', 'image or file (an OCI layout tar, .cnb)')
        .choices(['image', 'file'])
        .default('image'),
    )
    .option('--path-to-output <file>', 'with --format file: where to write the .cnb (default: NAME)')
    .option('--target <os/arch>', 'architecture of the package config when the buildpack does not pin one')
    .addOption(
      new Option(
        '--pull-policy <policy>',
        'reading dependency buildpackages given as images (as kiln build): always, if-not-present (default) or never',
      ).choices(['always', 'if-not-present', 'never']),
    )
    .option(
      '--platform <os/arch,...>',
      "one package per platform (e.g. linux/amd64,linux/arm64) as an image index; each must be one of the buildpack's [[targets]]",
    )
    .action(async (name: string, flags: PackageFlags) => {
      const { settings, log } = ctx;
      if (flags.config && flags.path)
        throw new UsageError('--config and --path exclude each other: pick one');
      if (flags.publish && flags.format === 'file')
        throw new UsageError('--publish and --format file exclude each other');
      if (flags.pathToOutput && flags.format !== 'file')
        throw new UsageError('--path-to-output needs --format file');
      const config: PackageConfig = flags.config
        ? await readPackageConfig(path.resolve(flags.config))
        : {
            file: '--path',
            buildpack: parseBuildpackUri(path.resolve(flags.path ?? '.'), process.cwd(), '--path'),
            dependencies: [],
            os: 'linux',
          };
      const arch = flags.target ? (parseTarget(flags.target).arch ?? hostArch()) : hostArch();
      const platforms = flags.platform ? parsePlatforms(flags.platform) : undefined;
      if (platforms && flags.target) throw new UsageError('--platform and --target exclude each other');
      if (platforms && platforms.length > 1 && flags.format === 'file')
        throw new UsageError('--format file holds one platform: give one --platform, or write an image');
      const progress = log.progress();
      // Dependencies are read for the package's own platform.
      const platform = { os: config.os, architecture: arch };
      const images = imageTransports(settings, log, {
        progress,
        platform,
        ...(flags.pullPolicy ? { pullPolicy: flags.pullPolicy } : {}),
      });
      const tmp = await mkdtemp(path.join(settings.env.TMPDIR ?? tmpdir(), 'kiln-package-'));
      try {
        // Where new layers are written: straight into the destination's blobs when it has some.
        // --format file writes a .cnb (an OCI layout tar), which is a file, not an image location.
        const file =
          flags.format === 'file'
            ? path.resolve(flags.pathToOutput ?? (path.extname(name) ? name : `${name}.cnb`))
            : undefined;
        const dest = file === undefined ? images.destination(name, Boolean(flags.publish)) : undefined;
        const blobs = (await dest?.stagingBlobs()) ?? new BlobStore(path.join(tmp, 'blobs-root'));
        // --platform: one package per platform (its dependencies read for it), in an index.
        const made: Awaited<ReturnType<typeof createBuildpackage>>[] = [];
        for (const p of platforms ?? [undefined]) {
          const ip = p ? images.with({ platform: p }) : images;
          made.push(
            await createBuildpackage(config, {
              store: blobs,
              openImage: (uri) => openPackageUri(uri, ip),
              tmpDir: tmp,
              arch: p?.architecture ?? arch,
              ...(p ? { platform: p } : {}),
              ...(settings.sourceDateEpoch !== undefined ? { epoch: settings.sourceDateEpoch } : {}),
            }),
          );
        }
        const pkg = made[0]!;
        const value = platforms
          ? indexFrom(made.map((m, i) => ({ image: m.image, platform: platforms[i]! })))
          : pkg.image;
        let digest: string;
        let where: string;
        if (dest) {
          const written = await dest.write(value);
          digest = written.digest;
          where = written.names[0]!;
        } else {
          const { writeOciArchive } = await import('../../buildpackage/oci-archive.ts');
          digest = await writeOciArchive(file!, pkg.image);
          where = file!;
        }
        progress.end();
        log.info(
          `Successfully created buildpackage ${where}: ${pkg.metadata.id}@${pkg.metadata.version} (${pkg.buildpacks
            .map((b) => `${b.id}@${b.version}`)
            .join(', ')})`,
        );
        ctx.stdout.write(`${digest}\n`);
      } finally {
        progress.end();
        await rm(tmp, { recursive: true, force: true });
      }
    });

  registerInspect(bp, ctx);

  bp.command('new')
    .description('scaffold a bash buildpack (buildpack.toml, bin/detect, bin/build, README.md, package.toml)')
    .argument('<id>', 'buildpack id, e.g. example/hello')
    .option('--path <dir>', 'directory to create (default: ./<id with / replaced by _>)')
    .option('-a, --api <version>', 'Buildpack API', '0.12')
    .option('-V, --buildpack-version <version>', "buildpack version (--version is kiln's own)", '0.0.1')
    .option(
      '-t, --targets <os/arch>',
      'target the buildpack supports (repeatable; default linux/amd64)',
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .action(
      async (
        id: string,
        flags: { path?: string; api: string; buildpackVersion: string; targets: string[] },
      ) => {
        const dir = path.resolve(flags.path ?? id.replaceAll('/', '_'));
        const targets = (flags.targets.length ? flags.targets : ['linux/amd64']).map(parseTarget);
        const files = await scaffoldBuildpack({
          id,
          dir,
          api: flags.api,
          version: flags.buildpackVersion,
          targets,
        });
        ctx.log.info(`Created buildpack ${id} in ${dir}: ${files.join(', ')}`);
      },
    );
}

/**
 * buildpackageUnpacker opens buildpackage uris of a builder config (`docker://`, `oci:`, `.cnb`)
 * and unpacks their buildpacks into a private temp directory for createBuilder's `buildpackages`;
 * `dispose` removes it (after the builder's layers are written).
 */
export function buildpackageUnpacker(
  images: Transports,
  tmpParent: string = tmpdir(),
): { open(uri: string): Promise<readonly string[]>; dispose(): Promise<void> } {
  let root: string | undefined;
  let n = 0;
  return {
    async open(uri) {
      root ??= await mkdtemp(path.join(tmpParent, 'kiln-buildpackages-'));
      const image = await openBuildpackageImage(uri, images);
      if (!image) throw new UsageError(`buildpack uri ${uri}: not a buildpackage image or .cnb file`);
      const { extractBuildpackage } = await import('../../buildpackage/buildpackage.ts');
      return (await extractBuildpackage(image, path.join(root, String(n++)), uri)).dirs;
    },
    async dispose() {
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}
