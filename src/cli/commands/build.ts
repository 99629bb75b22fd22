import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { isFlavourName, type RunImageChoice, resolveRunImageChoice } from '../../builder/run-flavour.ts';
import { platformApi } from '../../cnb/api.ts';
import { loadConfig } from '../../config/config-file.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import { launcherDirFor, loadLauncher } from '../../launcher/index.ts';
import { keptByInclude } from '../../lifecycle/app-export-filter.ts';
import { ImageCache } from '../../lifecycle/cache-image.ts';
import { Deadline } from '../../lifecycle/deadline.ts';
import type { Image } from '../../oci/image.ts';
import { indexFrom } from '../../oci/index.ts';
import { DEFAULT_EPOCH } from '../../oci/memory.ts';
import {
  hostPlatform,
  parsePlatforms,
  platformMatches,
  platformString,
  platformTag,
} from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import { extractAppZip, isAppArchive } from '../../platform/app-zip.ts';
import { type ImageAccess, runBuild } from '../../platform/build.ts';
import { writeInlineBuildpack } from '../../platform/inline-buildpack.ts';
import { type GroupEntry, readProjectDescriptor } from '../../platform/project-descriptor.ts';
import { projectMetadata } from '../../platform/project-metadata.ts';
import { TlsFailureDetector } from '../../platform/tls-hint.ts';
import { type Reference, referenceString } from '../../registry/reference.ts';
import { BubblewrapExecutor } from '../../sandbox/bubblewrap.ts';
import { checkEmulation } from '../../sandbox/emulation.ts';
import type { Executor } from '../../sandbox/executor.ts';
import { HostExecutor } from '../../sandbox/host.ts';
import {
  HOST_NETWORK_WARNING,
  NETWORK_MODES,
  type NetworkMode,
  parseAllowHost,
} from '../../sandbox/network.ts';
import { sandboxCacheDir } from '../../sandbox/rootfs-cache.ts';
import { type ImageTarget, isIndex } from '../../transport/image-target.ts';
import type { PullPolicy, Transports } from '../../transport/transports.ts';
import { type BuildLimitFlags, resolveBuildLimits } from '../build-limits.ts';
import { localBuildpackRef } from '../buildpack-fetch.ts';
import { type CliContext, KILN_VERSION } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { lifecycleFacts } from '../lifecycle-facts.ts';
import { parseCacheFlag, resolvePackBuildFlags } from '../pack-build-flags.ts';
import { addPlatformOptions, type PlatformFlags, platformSetup } from '../platform-options.ts';
import { addSupplyChainOptions, attestationWanted, type SupplyChainFlags } from '../supply-chain-options.ts';
import { rootfsBound, rootfsLimits } from './cache.ts';

/** Flags of `kiln build`, as commander parses them. */
export interface BuildFlags extends PlatformFlags, BuildLimitFlags, SupplyChainFlags {
  path: string;
  builder?: string;
  buildpack: string[];
  runImage?: string;
  env: string[];
  envFile: string[];
  cacheDir?: string;
  cacheImage?: string;
  clearCache?: boolean;
  skipExtensions?: boolean;
  publish?: boolean;
  daemon?: boolean;
  previousImage?: string;
  tag: string[];
  defaultProcess?: string;
  execEnv?: string;
  /** Undefined: `isolated`, or `host` with `--executor host` (which cannot isolate). */
  network?: NetworkMode;
  allowHost: string[];
  sbomOutputDir?: string;
  reportOutputDir?: string;
  /** false with `--no-launch-check`. */
  launchCheck?: boolean;
  executor: 'bwrap' | 'host';
  descriptor?: string;
  compression: 'gzip' | 'zstd';
  /** pack's build flags (src/cli/pack-build-flags.ts). */
  volume: string[];
  pullPolicy?: PullPolicy;
  creationTime?: string;
  uid?: string;
  gid?: string;
  workspace?: string;
  preBuildpack: string[];
  postBuildpack: string[];
  buildpackRegistry?: string;
  cache?: string;
  extension: string[];
  disableSystemBuildpacks?: boolean;
  /** `os/arch[/variant]`, comma-separated; default: this machine's. */
  platform?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/**
 * parseEnvFlags turns `--env K=V` / `--env K` (value from kiln's environment, as pack does) and
 * `--env-file` contents (one K=V per line, # comments) into a map; --env wins over files.
 */
export async function parseEnvFlags(
  env: readonly string[],
  envFiles: readonly string[],
  kilnEnv: Readonly<Record<string, string | undefined>>,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const put = (item: string, where: string) => {
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name))
      throw new UsageError(`${where}: "${item}" is not NAME=VALUE`);
    if (eq >= 0) out[name] = item.slice(eq + 1);
    else if (kilnEnv[name] !== undefined) out[name] = kilnEnv[name]!;
  };
  for (const f of envFiles) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      throw new UsageError(`--env-file ${f}: ${(e as Error).message}`);
    }
    for (const line of text.split(/\r?\n/)) {
      const l = line.trim();
      if (l === '' || l.startsWith('#')) continue;
      put(l, `--env-file ${f}`);
    }
  }
  for (const e of env) put(e, '--env');
  return out;
}

/** defaultCacheDir is the per-image volume cache under kiln's cache directory. */
export function defaultCacheDir(cacheDir: string, image: string): string {
  const name = image.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  const h = createHash('sha256').update(image).digest('hex').slice(0, 12);
  return path.join(cacheDir, 'build-cache', `${name}-${h}`);
}

/**
 * openNamed reads a run image or builder named by the user or a builder: an explicit transport is
 * used as given; a bare name is looked up in the local store first (where `kiln stack create` and
 * `kiln builder create` put images), then in its registry. Returns the image and a digest reference.
 */
async function openNamed(ref: string, images: Transports): Promise<{ image: Image; reference: string }> {
  const target = await images.locate(ref);
  const image = await target.read();
  return { image, reference: target.digestReference(await image.digest()) };
}

/**
 * imageAccess is how a build reads and writes images: the previous image at `previous` (absent
 * is a first build), run images by name (store first, then registry), and the result to
 * `destination` (a fan-out when there are extra tags).
 */
export function imageAccess(
  destination: ImageTarget,
  previous: ImageTarget,
  images: Transports,
): ImageAccess {
  return { previous, destination, locate: (name) => images.locate(name) };
}

/**
 * collectInto is where one platform's image of a multi-platform build goes: kept in `into` (as
 * that platform's entry of the index written at the end), not written anywhere yet.
 */
export function collectInto(
  into: { image: Image; platform: Platform }[],
  p: Platform,
  name: string,
): ImageTarget {
  const only = (): never => {
    throw new KilnError(`${name} (${platformString(p)}): one platform's image of an index is only written`);
  };
  return {
    name,
    imageName: name,
    read: async () => only(),
    readAny: async () => only(),
    find: async () => undefined,
    describe: async () => only(),
    referrers: { list: async () => [], attach: async () => only() },
    async write(value) {
      if (isIndex(value)) only();
      const image = value as Image;
      into.push({ image, platform: p });
      return { digest: await image.digest(), names: [`${name} (${platformString(p)})`] };
    },
    digestReference: (d) => `${name}@${d}`,
    stagingBlobs: async () => undefined,
  };
}

/** platformCacheRef is the --cache-image of another platform: its tag with the platform appended. */
function platformCacheRef(ref: Reference, suffix: string): Reference {
  if (!suffix) return ref;
  if (ref.digest)
    throw new UsageError(`--cache-image ${referenceString(ref)}: a cache image is named by a tag`);
  return { ...ref, tag: `${ref.tag ?? 'latest'}${suffix}` };
}

/** register adds `kiln build`. */
export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('build')
    .description('build an app image from source with Cloud Native Buildpacks')
    .argument(
      '<image>',
      'image name (local store; with --publish a registry, with --daemon the daemon), oci:DIR[:TAG], docker-archive:FILE or docker-daemon:NAME',
    )
    .option('-p, --path <dir>', 'app directory, or a zip or jar file of it', '.')
    .option(
      '-B, --builder <image>',
      'builder image (default: kiln config default-builder, else the embedded bookworm builder)',
    )
    .option(
      '-b, --buildpack <ref>',
      'buildpack to run instead of the builder order (repeatable): id[@version], a directory, a .cnb file or a buildpackage image',
      collect,
      [],
    )
    .option(
      '--run-image <image>',
      "run image, or a run-image flavour of the builder (e.g. shell: the run image with a POSIX shell, bash and coreutils); default: project.toml [io.kiln] run-image, else the builder's first",
    )
    .option(
      '-r, --buildpack-registry <name>',
      "pack's buildpack registry for urn:cnb:registry buildpacks (kiln has none: refused; use an image, a .cnb, a directory or a URL)",
    )
    .option(
      '--volume <host:target[:ro|rw]>',
      'mount a host file or directory into detect and build, read-only unless rw; never part of the image (repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option(
        '--pull-policy <policy>',
        'reading builder, run image and buildpackages: always (names with a registry host come from the registry), if-not-present (a local copy first; the default) or never (no registry)',
      ).choices(['always', 'if-not-present', 'never']),
    )
    .option(
      '--creation-time <time>',
      "the image's creation time: now or seconds since 1970 (default: the reproducible epoch)",
    )
    .option('--uid <uid>', "the build user's uid (default: the builder's CNB_USER_ID; never 0)")
    .option('--gid <gid>', "the build user's gid (default: the builder's CNB_GROUP_ID)")
    .option(
      '--workspace <dir>',
      "where the app sits in the build and the image (its working dir and CNB_APP_DIR): an absolute path outside the platform's and the system's directories (default /workspace)",
    )
    .option(
      '--extension <ref>',
      "image extension to run (repeatable): refused like a builder's extensions (kiln runs no Dockerfile extensions); with --skip-extensions left out with a warning",
      collect,
      [],
    )
    .option('--disable-system-buildpacks', "do not run the builder's system buildpacks (/cnb/system.toml)")
    .option('--pre-buildpack <ref>', 'buildpack to run before every group (repeatable)', collect, [])
    .option('--post-buildpack <ref>', 'buildpack to run after every group (repeatable)', collect, [])
    .option('-e, --env <NAME=VALUE>', 'build-time environment variable (repeatable)', collect, [])
    .option('--env-file <file>', 'file of NAME=VALUE lines (repeatable)', collect, [])
    .option('--cache-dir <dir>', 'layer cache directory (default: per image under the kiln cache dir)')
    .option('--cache-image <ref>', 'keep the layer cache as an image in a registry instead of a directory')
    .option(
      '--cache <spec>',
      "pack's cache option: 'type=build;format=image;name=REF' (like --cache-image), 'type=build;format=volume;name=NAME' (a named cache directory) or 'type=build;format=bind;source=DIR'",
    )
    .option('--clear-cache', 'ignore the cache for this build (it is replaced afterwards)')
    .option(
      '--skip-extensions',
      "build without the builder's image extensions ([[order-extensions]]: Dockerfiles kiln does not run); without it such a builder fails detection",
    )
    .option('--publish', 'push the image to its registry instead of the local store')
    .option(
      '--daemon',
      'write the image to the Docker or Podman daemon (DOCKER_HOST, else its default socket) and read builder, run and previous images from it when the local store lacks them',
    )
    .option('--previous-image <image>', 'image to reuse layers from (default: the image itself)')
    .option('-t, --tag <image>', 'additional name for the image (repeatable)', collect, [])
    .option('-D, --default-process <type>', 'process type the image runs by default')
    .option('--exec-env <name>', 'execution environment (CNB_EXEC_ENV) to build for (default production)')
    .addOption(
      new Option(
        '--network <mode>',
        "network of buildpacks: isolated (default: own network namespace, outbound through slirp4netns, nothing of this host reachable), none, or host (this machine's network; only when needed)",
      ).choices([...NETWORK_MODES]),
    )
    .option(
      '--allow-host <host:port>',
      'with --network isolated: let buildpacks reach this port of this host, e.g. a local mirror at 127.0.0.1:4873 (repeatable)',
      collect,
      [],
    )
    .option('--sbom-output-dir <dir>', "copy the build's SBOM files here")
    .option('--report-output-dir <dir>', 'write report.toml here')
    .option(
      '--no-launch-check',
      'skip checking that every process can load its libraries and interpreters on the run image',
    )
    .addOption(
      new Option(
        '--executor <name>',
        'sandbox for buildpacks (host: kiln already runs inside the build image, e.g. a CI job; builds in CNB_APP_DIR, CNB_LAYERS_DIR, CNB_PLATFORM_DIR with CNB_BUILDPACKS_DIR, default /workspace, /layers, /platform, /cnb/buildpacks)',
      )
        .choices(['bwrap', 'host'])
        .default('bwrap'),
    )
    .option(
      '--platform <os/arch[/variant]>',
      "platform to build for, e.g. linux/arm64; the builder, run image, previous image and buildpackages are read for it (default: this machine's)",
    )
    .option('-d, --descriptor <file>', 'project descriptor (default: <path>/project.toml)')
    .addOption(new Option('--compression <c>', 'layer compression').choices(['gzip', 'zstd']).default('gzip'))
    .option(
      '--timeout <duration>',
      'time limit of the whole build, e.g. 90s, 30m, 1h (0 or none: no limit); default: none on a terminal, 1h in CI or when output is not a terminal',
    )
    .option('--memory-limit <size>', 'memory of each buildpack process tree, e.g. 2GiB (default 4GiB)')
    .option(
      '--disk-budget <size>',
      'bytes /layers and /workspace may hold together, e.g. 20GiB (default 10GiB)',
    )
    .option('--disk-reserve <size>', 'free space kept on the host filesystem of the build (default 2GiB)')
    .option('--file-size-limit <size>', 'largest single file a buildpack may write (default 4GiB)')
    .option('--process-limit <n>', 'processes of each buildpack process tree (default 4096)');
  addPlatformOptions(cmd);
  addSupplyChainOptions(cmd);
  cmd.action(async (imageArg: string, flags: BuildFlags) => {
    const { settings, log } = ctx;
    // A platform that asks for a Platform API kiln does not speak is refused before anything runs.
    const api = settings.env.CNB_PLATFORM_API;
    if (api !== undefined && api !== '') platformApi(api);
    if ([flags.cacheImage, flags.cacheDir, flags.cache].filter(Boolean).length > 1)
      throw new UsageError('--cache, --cache-image and --cache-dir exclude each other: pick one');
    const cacheChoice = flags.cache
      ? parseCacheFlag(flags.cache, path.join(settings.cacheDir, 'volumes'), process.cwd())
      : undefined;
    if (cacheChoice && 'image' in cacheChoice) flags.cacheImage = cacheChoice.image;
    if (cacheChoice && 'dir' in cacheChoice) flags.cacheDir = cacheChoice.dir;
    // Limits first: a bad value fails before anything is pulled. The deadline starts now.
    const bounds = resolveBuildLimits(flags, await loadConfig(settings.configFile), settings);
    const deadline = bounds.timeoutMs !== undefined ? Deadline.after(bounds.timeoutMs) : undefined;
    // In place (--executor host) kiln already runs inside the build's container: its network is
    // the container's, nothing kiln can isolate further.
    const network: NetworkMode = flags.network ?? (flags.executor === 'host' ? 'host' : 'isolated');
    const allowHosts = flags.allowHost.map((h) => parseAllowHost(h));
    if (allowHosts.length > 0 && network !== 'isolated')
      throw new UsageError(`--allow-host applies to --network isolated only (the network is "${network}")`);
    if (flags.network === 'host') log.warn(HOST_NETWORK_WARNING);
    if (flags.launchCheck === false)
      log.warn(
        'Launch check skipped (--no-launch-check): nothing checks that the processes can load their libraries and interpreters on the run image; the image may fail to start',
      );
    // The platforms, resolved once: every image a platform's build reads is read for it.
    const host = hostPlatform(process.arch);
    const platforms = flags.platform ? parsePlatforms(flags.platform) : [host];
    const multi = platforms.length > 1;
    // Another architecture's build steps run under qemu-user: checked before anything is pulled.
    if (flags.executor !== 'host')
      for (const p of platforms) checkEmulation(p.architecture, host.architecture);
    else if (platforms.some((p) => p.architecture !== host.architecture))
      throw new UsageError(`--executor host builds this machine's platform (${platformString(host)}) only`);
    const progress = log.progress();
    const pack = resolvePackBuildFlags(flags, { cwd: process.cwd(), now: Date.now() });
    // --extension: the same answer as a builder's [[order-extensions]] (builder-facts.ts).
    if (flags.extension.length) {
      const what = `image extensions ${flags.extension.join(', ')} (--extension)`;
      if (!flags.skipExtensions)
        throw new KilnError(
          `${what}: kiln does not run Dockerfile extensions; pass --skip-extensions to build without them`,
        ).inPhase('detect');
      log.warn(`skipping ${what}: kiln does not run Dockerfile extensions (--skip-extensions)`);
    }
    if (flags.daemon && flags.publish)
      throw new UsageError('--daemon and --publish exclude each other: pick one');
    const images = imageTransports(settings, log, {
      progress,
      platform: platforms[0]!,
      ...(flags.daemon ? { preferDaemon: true } : {}),
      ...(flags.pullPolicy ? { pullPolicy: flags.pullPolicy } : {}),
    });
    const started = performance.now();
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const dest = images.destination(imageArg, Boolean(flags.publish));
      const tags = flags.tag.map((t) => images.destination(t, Boolean(flags.publish)));
      if (multi)
        for (const t of [dest, ...tags])
          if (t.name.startsWith('docker-archive:'))
            throw new UsageError(`${t.name}: a docker-archive holds one platform: give one --platform`);
      // Inline buildpacks (project.toml scripts) and an unpacked --path archive are written to a
      // private dir removed at the end.
      let scratchDir: string | undefined;
      const scratch = () => {
        scratchDir ??= mkdtempSync(path.join(tmpdir(), 'kiln-inline-'));
        return scratchDir;
      };
      cleanups.push(async () => {
        if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
      });
      // Buildpacks by http(s) URL or .tgz (pack's): downloaded / unpacked into the scratch dir.
      const fetched = (refs: readonly string[]) =>
        Promise.all(refs.map((r) => localBuildpackRef(r, { http: images.client.http, scratch })));
      // --path may name a zip or jar file (pack's): its files are the app.
      const appPath = path.resolve(flags.path);
      const appDir = (await isAppArchive(appPath))
        ? await extractAppZip(appPath, path.join(scratch(), 'app'))
        : appPath;
      const descriptor = await readProjectDescriptor(appDir, flags.descriptor);
      for (const w of descriptor.warnings) log.warn(w);
      const userEnv = await parseEnvFlags(flags.env, flags.envFile, settings.env);
      const env = { ...descriptor.env, ...userEnv };
      // Bindings, extra CA certificates, proxies and the npm registry: resolved and
      // checked before any phase runs.
      const platform = await platformSetup({ flags, settings, log, appDir, env, userEnv });

      const builderRef = flags.builder ?? descriptor.builder ?? (await configuredBuilder(settings));
      // Provenance, SBOM referrers, signature: the key is read here, in kiln's process, never later.
      const signer = flags.signKey
        ? await (await import('../supply-chain.ts')).loadSigner(ctx, flags.signKey, appDir)
        : undefined;
      if (multi && (signer || flags.provenanceOutput !== undefined || flags.attest === true))
        throw new UsageError(
          '--sign-key, --provenance-output and --attest apply to one platform: build and sign each --platform on its own',
        );
      // The one open of the local store in this build: layer blobs, the cache image, reads, writes.
      const store = await images.store();
      const hostUid = process.getuid?.() ?? 0;
      const executor: Executor =
        flags.executor === 'host' ? new HostExecutor({ hostUid }) : new BubblewrapExecutor({ hostUid });
      const name = dest.imageName;
      // Every line the phases log (buildpack output included) is watched for a
      // certificate-verification failure; a failed build then says how to trust the CA.
      const tls = new TlsFailureDetector();
      const buildLog = (p: Platform) => {
        const tag = multi ? (m: string) => `[${platformString(p)}] ${m}` : (m: string) => m;
        return {
          phase: (n: string) => log.phase(multi ? `${n} (${platformString(p)})` : n),
          debug: (m: string) => log.debug(tag(m)),
          info: tls.tee((m) => log.info(tag(m))),
          warn: tls.tee((m) => log.warn(tag(m))),
          error: tls.tee((m) => log.error(tag(m))),
        };
      };
      const built: { image: Image; platform: Platform }[] = [];
      let outcome: Awaited<ReturnType<typeof runBuild>> | undefined;
      let attestation: { finish(t: readonly ImageTarget[], i: Transports): Promise<void> } | undefined;
      for (const p of platforms) {
        const ip = images.with({ platform: p, progress });
        const builder = builderRef
          ? { ...(await openNamed(builderRef, ip)), name: builderRef }
          : await embeddedBuilder(ctx, ip, p, platforms);

        // --run-image, else project.toml's: an image, or a flavour name of the builder's run images.
        const runChoice = flags.runImage ?? descriptor.runImage;
        const runImage =
          runChoice === undefined
            ? undefined
            : await chooseRunImage(
                runChoice,
                flags.runImage !== undefined ? '--run-image' : `${descriptor.file}: run-image`,
                builder,
                ip,
              );
        if (runImage?.flavour) log.info(`Run image ${runImage.image} (flavour ${runImage.flavour})`);
        const previous = ip.destination(flags.previousImage ?? imageArg, Boolean(flags.publish));
        // Caches are per platform: this machine's keeps the name it always had.
        const native = platformMatches(p, host);
        const suffix = native ? '' : `-${p.os}-${p.architecture}${p.variant ? `-${p.variant}` : ''}`;
        log.info(
          `Building ${name}${multi || !native ? ` for ${platformString(p)}` : ''} from ${appDir} with builder ${builder.name}`,
        );
        // The attestation code loads only for a build that attests.
        attestation =
          multi || !attestationWanted(flags, Boolean(flags.publish), signer !== undefined)
            ? undefined
            : (await import('../build-attest.ts')).startBuildAttestation(
                ctx,
                flags,
                Boolean(flags.publish),
                {
                  appDir,
                  filter: descriptor.filter,
                  ...(descriptor.file ? { descriptorFile: descriptor.file } : {}),
                  builder,
                  ...(runImage ? { runImage: runImage.image } : {}),
                  buildpacks: flags.buildpack.length
                    ? flags.buildpack
                    : descriptor.group.map((g) =>
                        g.id ? `${g.id}${g.version ? `@${g.version}` : ''}` : (g.uri ?? 'inline'),
                      ),
                  envNames: Object.keys(env),
                  options: {
                    compression: flags.compression,
                    sourceDateEpoch: settings.sourceDateEpoch ?? DEFAULT_EPOCH,
                    ...(flags.defaultProcess ? { defaultProcess: flags.defaultProcess } : {}),
                    ...(flags.execEnv ? { execEnv: flags.execEnv } : {}),
                    ...(flags.skipExtensions ? { skipExtensions: true } : {}),
                  },
                },
                signer,
              );
        // Several platforms: each image is kept here and the index of them written at the end.
        const sink: ImageTarget = multi ? collectInto(built, p, name) : images.fanOut([dest, ...tags]);
        outcome = await runBuild({
          imageName: name,
          appDir,
          filter: descriptor.filter,
          builder: { image: builder.image, name: builder.name },
          // --buildpack wins over project.toml's group; pre/post groups apply either way.
          ...(flags.buildpack.length
            ? { buildpacks: await fetched(flags.buildpack) }
            : descriptor.group.length
              ? { buildpacks: await fetched(await projectRefs(descriptor.group, scratch())) }
              : {}),
          ...(descriptor.pre.length || flags.preBuildpack.length
            ? {
                preBuildpacks: await fetched([
                  ...(await projectRefs(descriptor.pre, scratch())),
                  ...flags.preBuildpack,
                ]),
              }
            : {}),
          ...(descriptor.post.length || flags.postBuildpack.length
            ? {
                postBuildpacks: await fetched([
                  ...(await projectRefs(descriptor.post, scratch())),
                  ...flags.postBuildpack,
                ]),
              }
            : {}),
          ...(pack.volumes.length ? { extraMounts: pack.volumes } : {}),
          ...(pack.createdAt !== undefined ? { createdAt: pack.createdAt } : {}),
          ...(flags.disableSystemBuildpacks ? { disableSystemBuildpacks: true } : {}),
          ...(pack.buildUser ? { buildUser: pack.buildUser } : {}),
          ...(pack.workspace ? { workspace: pack.workspace } : {}),
          // buildpackages by reference or .cnb path (src/cli/commands/buildpack.ts)
          openBuildpackage: async (ref) => (await import('./buildpack.ts')).openBuildpackageImage(ref, ip),
          ...(runImage ? { runImage: runImage.image } : {}),
          env,
          preparePlatform: (dir, uid, gid, rootfs, stage) => platform.prepare(dir, uid, gid, rootfs, stage),
          launchCheck:
            flags.launchCheck === false ? false : { cacheDir: path.join(settings.cacheDir, 'launch-check') },
          launchLayer: async (layersDir) =>
            (await platform.launchLayer(layersDir)) ? { id: 'kiln/ca-certificates' } : undefined,
          cacheDir: flags.cacheDir
            ? path.join(path.resolve(flags.cacheDir), suffix.slice(1))
            : defaultCacheDir(settings.cacheDir, `${name}${suffix}`),
          ...(flags.cacheImage
            ? {
                layerCache: new ImageCache({
                  ref: platformCacheRef(images.registryReference(flags.cacheImage, '--cache-image'), suffix),
                  client: images.client,
                  blobs: store.blobs,
                }),
              }
            : {}),
          clearCache: Boolean(flags.clearCache),
          ...(flags.skipExtensions ? { skipExtensions: true } : {}),
          ...(flags.defaultProcess ? { defaultProcess: flags.defaultProcess } : {}),
          ...(flags.execEnv ? { execEnv: flags.execEnv } : {}),
          network,
          ...(allowHosts.length ? { allowHosts } : {}),
          ...(flags.sbomOutputDir
            ? { sbomOutputDir: path.join(path.resolve(flags.sbomOutputDir), suffix.slice(1)) }
            : {}),
          ...(flags.reportOutputDir
            ? { reportOutputDir: path.join(path.resolve(flags.reportOutputDir), suffix.slice(1)) }
            : {}),
          lifecycle: await lifecycleFacts(),
          project: await projectMetadata(descriptor, appDir),
          appKeep: keptByInclude(descriptor.include),
          executor,
          limits: bounds.limits,
          ...(deadline ? { deadline } : {}),
          ...(flags.executor === 'host' ? { hostDirs: settings.cnbDirs } : {}),
          rootfsCacheDir: await sandboxCacheDir(settings.cacheDir, hostUid),
          rootfsCacheBound: await rootfsBound(settings),
          rootfsLimits: await rootfsLimits(settings),
          launcher: await loadLauncher(launcherDirFor(p.architecture, host.architecture), p.architecture),
          store,
          images: imageAccess(sink, previous, ip),
          epoch: settings.sourceDateEpoch ?? DEFAULT_EPOCH,
          compression: flags.compression,
          tmpDir: path.join(settings.env.TMPDIR ?? tmpdir()),
          log: buildLog(p),
        }).catch((e: unknown) => {
          const hint = tls.hint();
          if (hint === undefined || !(e instanceof KilnError)) throw e;
          throw new KilnError(`${e.message}: ${hint}`, { cause: e });
        });
      }
      // One index of every platform's image, written once to every destination.
      const written = multi
        ? await images.fanOut([dest, ...tags]).write(indexFrom(built))
        : { digest: outcome!.digest, names: outcome!.names };
      await attestation?.finish([dest, ...tags], images);
      progress.end();
      const what = multi ? `image index (${platforms.map(platformString).join(', ')})` : 'image';
      log.info(
        `Successfully built ${what} ${written.names[0]} in ${((performance.now() - started) / 1000).toFixed(2)} s`,
      );
      ctx.stdout.write(`${written.digest}\n`);
    } finally {
      progress.end();
      for (const c of cleanups) await c();
    }
  });
}

/**
 * projectRefs turns project.toml group entries into `--buildpack` values: `id@version`, a
 * directory (a relative uri is already resolved against the project), a `docker://` image, or an
 * inline script written out as a buildpack under `scratch`.
 */
export async function projectRefs(entries: readonly GroupEntry[], scratch: string): Promise<string[]> {
  const out: string[] = [];
  for (const [i, e] of entries.entries()) {
    if (e.script) {
      out.push(await writeInlineBuildpack(e, path.join(scratch, `inline-${out.length}-${i}`)));
      continue;
    }
    const uri = e.resolvedUri;
    if (uri) {
      if (uri.startsWith('docker://')) out.push(uri.slice('docker://'.length));
      else if (/^https?:\/\/|^urn:cnb:builder:/.test(uri))
        out.push(uri); // downloaded by the build (buildpack-fetch.ts)
      else if (uri.startsWith('file://')) out.push(fileURLToPath(uri));
      else if (/^[a-z][a-z0-9+.-]*:/.test(uri))
        throw new UsageError(`project.toml buildpack uri "${e.uri}": unsupported scheme`);
      else out.push(uri);
      continue;
    }
    if (!e.id) throw new UsageError('project.toml group entry without id, uri or script');
    out.push(e.version ? `${e.id}@${e.version}` : e.id);
  }
  return out;
}

async function configuredBuilder(settings: CliContext['settings']): Promise<string | undefined> {
  // An absent config file names no builder (loadConfig); a broken one is an error naming it.
  return (await loadConfig(settings.configFile)).defaultBuilder;
}

/** The embedded default builder: made locally from builders/bookworm on first use (needs the stack). */
/** chooseRunImage resolves a run-image choice: a flavour name of the builder's run images, else an image. */
async function chooseRunImage(
  choice: string,
  source: string,
  builder: { image: Image; name: string },
  images: Transports,
): Promise<RunImageChoice> {
  if (!isFlavourName(choice)) return { image: choice };
  const { readBuilder } = await import('../../builder/builder-image.ts');
  const info = await readBuilder(builder.image, builder.name);
  const names = info.runImages.flatMap((r) => [r.image, ...r.mirrors]);
  return resolveRunImageChoice(choice, names, async (n) => (await openNamed(n, images)).image, {
    source,
    builder: builder.name,
  });
}

async function embeddedBuilder(
  ctx: CliContext,
  images: Transports,
  target: Platform,
  platforms: readonly Platform[],
): Promise<{ image: Image; reference: string; name: string }> {
  const { settings, log } = ctx;
  const { ensureDefaultBuilder, DEFAULT_BUILDER_CONFIG, DEFAULT_BUILDER_NAME } = await import(
    '../../builder/default-builder.ts'
  );
  const { readBuilderConfig } = await import('../../builder/builder-config.ts');
  const store = await images.store();
  const cfg = await readBuilderConfig(DEFAULT_BUILDER_CONFIG);
  const buildName = cfg.buildImage;
  // This machine's platform keeps the names it always had; another one gets its own builder.
  const host = hostPlatform(process.arch);
  const native = platformMatches(target, host);
  const name = native ? DEFAULT_BUILDER_NAME : platformTag(DEFAULT_BUILDER_NAME, target);
  const keyFile = native
    ? 'default-builder-key.json'
    : `default-builder-key-${target.os}-${target.architecture}.json`;
  const b = await ensureDefaultBuilder({
    store,
    name,
    kilnVersion: KILN_VERSION,
    keyCacheFile: path.join(settings.cacheDir, keyFile),
    ...(settings.sourceDateEpoch !== undefined ? { epoch: settings.sourceDateEpoch } : {}),
    log: (m) => log.info(m),
    buildImage: async () => {
      if (!buildName) throw new KilnError(`${DEFAULT_BUILDER_CONFIG}: no [build] image`);
      try {
        const build = (await openNamed(buildName, images)).image;
        // Every run image the builder lists (the flavours too) must be there for this platform: a
        // store made before a flavour (or the platform) was added gets it now (no-ops otherwise).
        for (const r of cfg.runImages) await images.local(r.image).read();
        return build;
      } catch {
        // First use: make the stack (both images, from stacks/bookworm/stack.lock) locally; for
        // another platform, as an index with this machine's (whose names it then shares).
        const all = [host, ...platforms.filter((p) => !platformMatches(p, host))];
        const stackPlatforms = all.length > 1 ? all : undefined;
        log.info(
          `The default builder needs the stack's images (${[buildName, ...cfg.runImages.map((r) => r.image)].join(', ')}) for ${platformString(target)}: creating the stack (kiln stack create --locked${stackPlatforms ? ` --platform ${stackPlatforms.map(platformString).join(',')}` : ''})`,
        );
        const { createDefaultStack } = await import('./stack.ts');
        await createDefaultStack(ctx, store, stackPlatforms);
        return (await openNamed(buildName, images)).image;
      }
    },
  });
  const reference = images.local(b.name).digestReference(await b.image.digest());
  return { image: b.image, reference, name: b.name };
}
