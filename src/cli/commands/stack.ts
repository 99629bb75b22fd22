import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadConfig } from '../../config/config-file.ts';
import type { DebRef } from '../../debian/deb-cache.ts';
import { readAptSources } from '../../debian/sources.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import { Layout } from '../../layout/layout.ts';
import type { Digest } from '../../oci/digest.ts';
import type { Image, ImageIndex } from '../../oci/image.ts';
import { indexFrom } from '../../oci/index.ts';
import { isImageMediaType, isIndexMediaType } from '../../oci/media-types.ts';
import { DEFAULT_EPOCH } from '../../oci/memory.ts';
import {
  configPlatform,
  hostPlatform,
  parsePlatforms,
  platformString,
  platformTag,
} from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import { checkEmulation } from '../../sandbox/emulation.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../sbom/cyclonedx.ts';
import { type AccessOptions, mirrorsOf, PackageGoneError, resolveStack } from '../../stack/archive-access.ts';
import { DEFAULT_FLAVOUR, readStackConfig, runFlavours, type StackConfig } from '../../stack/config.ts';
import { type CreatedImage, createStack, type Role, type StackImages } from '../../stack/create.ts';
import { StackLabel } from '../../stack/image.ts';
import {
  diffLocks,
  forArch,
  inputsDigest,
  lockForArch,
  readLock,
  type StackLock,
  withArchLock,
  writeLock,
} from '../../stack/lock.ts';
import { readArtifact, referrersOf, sbomOfImage } from '../../stack/sbom.ts';
import { ImageStore, storeNameOf } from '../../store/store.ts';
import type { CliContext } from '../context.ts';
import { httpClient } from '../http-client.ts';
import { imageTransports } from '../image-ref.ts';
import { formatBytes } from '../logger.ts';

/** The stack kiln ships: stacks/bookworm/stack.toml of this installation. */
export const DEFAULT_STACK_FILE = fileURLToPath(
  new URL('../../../stacks/bookworm/stack.toml', import.meta.url),
);

interface CommonFlags {
  config?: string;
  lock?: string;
  mirror?: string;
  securityMirror?: string;
  keyring?: string;
}

interface CreateFlags extends CommonFlags {
  locked?: boolean;
  /**
   * Not a flag: where the embedded default stack keeps a lock of its own when the shipped lock
   * names .debs the (live) mirror no longer has. Used first when present and fresh.
   */
  fallbackLock?: string;
  publish?: string;
  output?: string;
  only?: string;
  sbomDir?: string;
  force?: boolean;
  /** `os/arch[,...]`: one image per platform under `<tag>-<os>-<arch>`, and an index under the tag. */
  platform?: string;
  /** Not a flag: the parsed platforms (createDefaultStack's). */
  platforms?: readonly Platform[];
}

function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'stack file', DEFAULT_STACK_FILE)
    .option('--lock <file>', 'lock file (default: stack.lock next to the stack file)')
    .option(
      '--mirror <url>',
      'Debian mirror for the non-security suites (env KILN_DEBIAN_MIRROR; default: apt sources)',
    )
    .option(
      '--security-mirror <url>',
      'Debian mirror for *-security suites (env KILN_DEBIAN_SECURITY_MIRROR; default: apt sources)',
    )
    .option('--keyring <file>', "OpenPGP keyring that signs the archive (default: the stack file's)");
}

/** register adds `kiln stack create|update|inspect`. */
export function register(program: Command, ctx: CliContext): void {
  const stack = program
    .command('stack')
    .description('make the build and run base images from Debian packages');

  common(
    stack
      .command('create')
      .description('create the run and build images of a stack (resolving and locking packages when needed)'),
  )
    .option('--locked', 'use only stack.lock (fail when it is missing or stale)')
    .option('--publish <repo>', 'also push the images to REPO/run:latest and REPO/build:latest')
    .option(
      '--output <oci:DIR>',
      'write to an OCI layout (tags "run" and "build") instead of the local store',
    )
    .option(
      '--only <image>',
      'make only the "run" image (with its flavours), the "build" image, or one run-image flavour by name',
    )
    .option('--sbom-dir <dir>', 'write the SBOM files here (default: <layout>/sbom)')
    .option('--force', 'rebuild even when the images are up to date')
    .option(
      '--platform <os/arch,...>',
      "make the images for these platforms (e.g. linux/amd64,linux/arm64) from the same recipe, one lock section per architecture, and tag an image index of them (default: the stack file's architecture, single images)",
    )
    .action(async (flags: CreateFlags) => {
      await create(ctx, flags);
    });

  common(
    stack
      .command('update')
      .description('re-resolve the packages to their newest versions and rewrite stack.lock'),
  )
    .option('--dry-run', 'print what would change without writing the lock')
    .option(
      '--platform <os/arch,...>',
      "re-resolve these platforms' lock sections (default: the stack file's architecture)",
    )
    .action(async (flags: CommonFlags & { dryRun?: boolean; platform?: string }) => {
      const s = await setup(ctx, flags);
      const all = await readLock(s.lockFile);
      ctx.log.info(
        `Resolving ${path.basename(s.configFile)} against ${[...s.access.mirrors.values()].join(', ')}`,
      );
      const arches = flags.platform
        ? stackArches(s.config, parsePlatforms(flags.platform))
        : [s.config.archive.arch];
      let next = all;
      const changes: ReturnType<typeof diffLocks> = [];
      let inputsChanged = false;
      for (const arch of arches) {
        const before = lockForArch(all, s.config, arch);
        const after = await resolveStack(forArch(s.config, arch), s.access);
        const prefix = arch === s.config.archive.arch ? '' : `${arch}/`;
        changes.push(...diffLocks(before, after).map((c) => ({ ...c, image: `${prefix}${c.image}` })));
        if (!before || before.inputs !== after.inputs) inputsChanged = true;
        next = withArchLock(next, s.config, arch, after);
      }
      const after = next!;
      for (const c of changes) {
        const what =
          c.kind === 'added'
            ? `+ ${c.name} ${c.to}`
            : c.kind === 'removed'
              ? `- ${c.name} ${c.from}`
              : `${c.kind === 'upgraded' ? '↑' : '↓'} ${c.name} ${c.from} -> ${c.to}`;
        ctx.stdout.write(`${c.image}\t${c.kind}\t${what}\n`);
      }
      if (changes.length === 0 && !inputsChanged) ctx.log.info('stack.lock is up to date');
      else if (!flags.dryRun) {
        await writeLock(s.lockFile, after);
        ctx.log.info(`Wrote ${s.lockFile} (${changes.length} change(s))`);
      }
    });

  stack
    .command('inspect')
    .description('show the stack images in the local store or a layout: digests, labels, packages')
    .option('--config <file>', 'stack file', DEFAULT_STACK_FILE)
    .option('--output <oci:DIR>', 'read from an OCI layout instead of the local store')
    .option('--json', 'print JSON')
    .action(async (flags: { config: string; output?: string; json?: boolean }) => {
      const config = await readStackConfig(flags.config);
      // Inspecting must not create anything: a layout is opened, never initialised.
      const { layout, tags, flavourTags } = await target(ctx, config, flags.output, { open: true });
      const rows: Record<string, unknown>[] = [];
      const known = new Set(await layout.tags());
      const images: { role: Role; flavour?: string; tag: string }[] = [
        ...runFlavours(config).map((f) => ({
          role: 'run' as const,
          flavour: f.flavour,
          tag: f.flavour === DEFAULT_FLAVOUR ? tags.run : flavourTags[f.flavour]!,
        })),
        { role: 'build', tag: tags.build },
      ];
      for (const { role, flavour, tag } of images) {
        const which = flavour !== undefined ? { role, flavour } : { role };
        if (!known.has(tag)) {
          rows.push({ ...which, tag, missing: true });
          continue;
        }
        const desc = await layout.resolve(tag);
        // A multi-platform stack is an index: one row per platform, each with its own SBOM.
        const entries = isIndexMediaType(desc.mediaType)
          ? (await (await layout.imageIndex(tag)).indexManifest()).manifests.filter(
              (m) => !isIndexMediaType(m.mediaType),
            )
          : [desc];
        for (const entry of entries) {
          const img = await layout.imageByDigest(entry.digest, `${tag}@${entry.digest}`);
          const cfg = await img.configFile();
          let size = 0;
          for (const l of await img.layers()) size += await l.size();
          // The packages come from the SBOM that `stack create` attaches as a referrer.
          const sbom = await sbomOfImage(layout, entry.digest, CYCLONEDX_MEDIA_TYPE);
          const components = (sbom?.components ?? []) as { name?: string; version?: string }[];
          rows.push({
            ...which,
            tag,
            ...(entry !== desc && { platform: platformString(configPlatform(cfg)), index: desc.digest }),
            digest: entry.digest,
            size,
            user: cfg.config?.User,
            labels: cfg.config?.Labels ?? {},
            packages: components.map((c) => ({ name: c.name ?? '', version: c.version ?? '' })),
          });
        }
      }
      if (flags.json) {
        ctx.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      for (const r of rows) {
        const head = [
          r.role,
          r.flavour !== undefined ? ` (flavour ${r.flavour})` : '',
          r.platform !== undefined ? ` ${r.platform}` : '',
        ].join('');
        if (r.missing) {
          ctx.stdout.write(`${head}: ${r.tag} not created yet (kiln stack create)\n`);
          continue;
        }
        const labels = r.labels as Record<string, string>;
        ctx.stdout.write(
          `${head}: ${r.tag}\n  digest   ${r.digest}\n  size     ${formatBytes(r.size as number)} (compressed)\n  user     ${r.user}\n` +
            `  base id  ${labels['io.buildpacks.base.id']}  distro ${labels['io.buildpacks.base.distro.name']} ${labels['io.buildpacks.base.distro.version']}\n` +
            `  lock     ${labels[StackLabel.Lock]}\n` +
            `  packages ${packagesLine(r.packages as { name: string; version: string }[])}\n`,
        );
      }
    });
}

interface Setup {
  readonly config: StackConfig;
  readonly configFile: string;
  readonly lockFile: string;
  readonly access: AccessOptions;
}

async function setup(
  ctx: CliContext,
  flags: CommonFlags,
  progress?: AccessOptions['progress'],
): Promise<Setup> {
  const configFile = path.resolve(flags.config ?? DEFAULT_STACK_FILE);
  const config = await readStackConfig(configFile);
  const env = ctx.settings.env;
  // flag > env > kiln config `debian-mirror` (kiln config debian-mirror URL) > stack.toml > apt.
  const kilnConfig = await loadConfig(ctx.settings.configFile);
  const mirror = flags.mirror ?? nonEmpty(env.KILN_DEBIAN_MIRROR) ?? kilnConfig.debianMirror;
  const securityMirror = flags.securityMirror ?? nonEmpty(env.KILN_DEBIAN_SECURITY_MIRROR);
  const mirrors = mirrorsOf(config, {
    apt: await readAptSources(),
    ...(mirror ? { mirror } : {}),
    ...(securityMirror ? { securityMirror } : {}),
  });
  return {
    config,
    configFile,
    lockFile: path.resolve(flags.lock ?? path.join(path.dirname(configFile), 'stack.lock')),
    access: {
      mirrors,
      keyring: flags.keyring ?? config.archive.keyring,
      cacheDir: ctx.settings.cacheDir,
      http: httpClient(ctx.settings, kilnConfig, ctx.redactor),
      ...(progress ? { progress } : {}),
    },
  };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/** target is where images go: an `oci:DIR` layout (tags run/build) or the local store. */
async function target(
  ctx: CliContext,
  config: StackConfig,
  output: string | undefined,
  opts: { open?: boolean } = {},
  opened?: ImageStore,
): Promise<{ layout: Layout; tags: Record<Role, string>; flavourTags: Record<string, string> }> {
  const flavours = runFlavours(config).slice(1);
  if (output !== undefined) {
    if (!output.startsWith('oci:') || output.length <= 4)
      throw new UsageError(`invalid --output "${output}": expected oci:DIR`);
    const dir = path.resolve(output.slice(4));
    return {
      layout: await (opts.open ? Layout.open(dir) : Layout.init(dir)),
      tags: { run: 'run', build: 'build' },
      flavourTags: Object.fromEntries(flavours.map((f) => [f.flavour, `run-${f.flavour}`])),
    };
  }
  const store = opened ?? (await ImageStore.open(ImageStore.defaultDir(ctx.settings.dataDir)));
  return {
    layout: store.layout,
    tags: { run: storeNameOf(config.run.name), build: storeNameOf(config.build.name) },
    flavourTags: Object.fromEntries(flavours.map((f) => [f.flavour, storeNameOf(f.name)])),
  };
}

/**
 * createDefaultStack makes the default stack's images in the local store from its lock, as
 * `kiln stack create --locked` does (a no-op when they are up to date). `kiln build` calls it when
 * the embedded default builder needs the stack on first use; its report lines go to stderr so
 * that build's stdout stays the image digest.
 */
export async function createDefaultStack(
  ctx: CliContext,
  store: ImageStore,
  platforms?: readonly Platform[],
): Promise<void> {
  await create(
    { settings: ctx.settings, log: ctx.log, redactor: ctx.redactor, stdout: ctx.stderr, stderr: ctx.stderr },
    {
      locked: true,
      fallbackLock: path.join(ctx.settings.cacheDir, 'stacks', 'bookworm', 'stack.lock'),
      ...(platforms ? { platforms } : {}),
    },
    store,
  );
}

/** create makes the stack's images; `store` is the command's local store when it is open already. */
async function create(ctx: CliContext, flags: CreateFlags, store?: ImageStore): Promise<void> {
  const log = ctx.log;

  if (flags.publish !== undefined && flags.output !== undefined)
    throw new UsageError('--publish and --output exclude each other');
  const sink = log.progress();
  const seen = new Map<string, number>();
  const progress = {
    onBytes: (n: number, ref: DebRef) => {
      const done = (seen.get(ref.sha256) ?? 0) + n;
      seen.set(ref.sha256, done);
      sink({
        id: ref.sha256,
        action: 'download' as const,
        state: done >= ref.size ? 'done' : 'running',
        done,
        total: ref.size,
        label: ref.name,
      });
    },
  };
  try {
    let s = await setup(ctx, flags, progress);
    const flavourNames = runFlavours(s.config).map((f) => f.flavour);
    const only = flags.only;
    if (only !== undefined && only !== 'run' && only !== 'build' && !flavourNames.includes(only))
      throw new UsageError(
        `invalid --only "${only}": expected run, build or a run-image flavour (${flavourNames.join(', ')})`,
      );
    const platforms = flags.platforms ?? (flags.platform ? parsePlatforms(flags.platform) : undefined);
    if (platforms) {
      await createForPlatforms(ctx, s, flags, platforms, store);
      return;
    }
    if (flags.fallbackLock) {
      const own = await readLock(flags.fallbackLock);
      if (own && own.inputs === inputsDigest(s.config)) s = { ...s, lockFile: flags.fallbackLock };
    }
    let lock: StackLock | undefined = await readLock(s.lockFile);
    const fresh = lock !== undefined && lock.inputs === inputsDigest(s.config);
    if (flags.locked) {
      if (!lock) throw new KilnError(`--locked: no lock file ${s.lockFile} (run kiln stack update)`);
      if (!fresh)
        throw new KilnError(
          `--locked: ${s.lockFile} is stale: the stack file's packages or suites changed (run kiln stack update)`,
        );
    } else if (!fresh) {
      log.info(`Resolving packages (${lock ? 'the lock is stale' : 'no lock yet'})`);
      // Other architectures' sections of the file are kept.
      lock = withArchLock(lock, s.config, s.config.archive.arch, await resolveStack(s.config, s.access));
      await writeLock(s.lockFile, lock);
      log.info(`Wrote ${s.lockFile}`);
    }
    const { layout, tags, flavourTags } = await target(ctx, s.config, flags.output, {}, store);
    const started = Date.now();
    // --only <flavour>: the run role with that flavour only (the default run image is always made
    // alongside: it is what the flavour extends, and a no-op when up to date).
    const roles: Role[] | undefined = only === undefined ? undefined : only === 'build' ? ['build'] : ['run'];
    const flavours = only !== undefined && only !== 'run' && only !== 'build' ? [only] : undefined;
    const options = {
      // This architecture's packages only: other sections do not change these images' recipe.
      lock: lockForArch(lock, s.config, s.config.archive.arch)!,
      access: s.access,
      layout,
      tags,
      flavourTags,
      epoch: ctx.settings.sourceDateEpoch ?? DEFAULT_EPOCH,
      ...(roles ? { roles } : {}),
      ...(flavours ? { flavours } : {}),
      ...(flags.force ? { force: true } : {}),
      sbomDir: flags.sbomDir ?? path.join(layout.dir, 'sbom'),
      sandbox: { onOutput: (l: string) => log.debug(l) },
      log: (l: string) => log.info(l),
    };
    let made: Awaited<ReturnType<typeof createStack>>;
    try {
      made = await createStack(s.config, options);
    } catch (e) {
      if (!flags.fallbackLock || !(e instanceof PackageGoneError)) throw e;
      log.warn(`${e.message}; resolving the stack anew into ${flags.fallbackLock}`);
      const fresh = await resolveStack(s.config, s.access);
      await mkdir(path.dirname(flags.fallbackLock), { recursive: true });
      await writeLock(flags.fallbackLock, fresh);
      made = await createStack(s.config, { ...options, lock: fresh });
    }
    sink.end();
    for (const img of imagesOf(made)) {
      const what = img.flavour && img.flavour !== DEFAULT_FLAVOUR ? `run-${img.flavour}` : img.role;
      log.info(`${what} image ${img.tag}@${img.descriptor.digest}${img.reused ? ' (up to date)' : ''}`);
      ctx.stdout.write(`${what}\t${img.tag}\t${img.descriptor.digest}\n`);
    }
    log.info(`Done in ${((Date.now() - started) / 1000).toFixed(2)} s`);
    if (flags.publish) await publish(ctx, layout, made, flags.publish);
  } finally {
    sink.end();
  }
}

/** stackArches are the Debian architectures of `platforms` (linux only; OCI and Debian names agree for these). */
function stackArches(config: StackConfig, platforms: readonly Platform[]): string[] {
  return platforms.map((p) => {
    if (p.os !== 'linux') throw new UsageError(`--platform ${platformString(p)}: stacks are linux only`);
    if (!/^(amd64|arm64)$/.test(p.architecture))
      throw new UsageError(
        `--platform ${platformString(p)}: kiln makes ${config.id} for linux/amd64 and linux/arm64`,
      );
    return p.architecture;
  });
}

/**
 * archLock is the lock of one architecture: from the default stack's own lock or the lock file
 * when fresh, else (without --locked, or for the default stack, whose shipped lock may lack the
 * architecture) resolved and written into that file's section for it.
 */
async function archLock(ctx: CliContext, s: Setup, flags: CreateFlags, arch: string): Promise<StackLock> {
  const want = inputsDigest(forArch(s.config, arch));
  for (const file of [flags.fallbackLock, s.lockFile]) {
    if (!file) continue;
    const l = lockForArch(await readLock(file), s.config, arch);
    if (l?.inputs === want) return l;
  }
  if (flags.locked && !flags.fallbackLock)
    throw new KilnError(
      `--locked: ${s.lockFile} has no fresh ${arch} section (run kiln stack update --platform linux/${arch})`,
    );
  return resolveArch(ctx, s, flags, arch);
}

async function resolveArch(ctx: CliContext, s: Setup, flags: CreateFlags, arch: string): Promise<StackLock> {
  const file = flags.fallbackLock ?? s.lockFile;
  ctx.log.info(`Resolving the ${arch} packages into ${file}`);
  const resolved = await resolveStack(forArch(s.config, arch), s.access);
  // A new file for another architecture starts from the stack file's own lock (the top level).
  const base =
    (await readLock(file)) ?? (arch === s.config.archive.arch ? undefined : await readLock(s.lockFile));
  const whole =
    base || arch === s.config.archive.arch
      ? withArchLock(base, s.config, arch, resolved)
      : withArchLock(await resolveStack(s.config, s.access), s.config, arch, resolved);
  await mkdir(path.dirname(file), { recursive: true });
  await writeLock(file, whole);
  return resolved;
}

/**
 * createForPlatforms makes the stack's images for each platform from the same recipe (each under
 * `<tag>-<os>-<arch>`, with its SBOM referrers) and tags an image index of them under each image's
 * tag. Build images of another architecture run their maintainer scripts under qemu-user.
 */
async function createForPlatforms(
  ctx: CliContext,
  s: Setup,
  flags: CreateFlags,
  platforms: readonly Platform[],
  store: ImageStore | undefined,
): Promise<void> {
  const log = ctx.log;
  const arches = stackArches(s.config, platforms);
  const only = flags.only;
  const roles: Role[] | undefined = only === undefined ? undefined : only === 'build' ? ['build'] : ['run'];
  const flavours = only !== undefined && only !== 'run' && only !== 'build' ? [only] : undefined;
  const host = hostPlatform(process.arch).architecture;
  if (!roles || roles.includes('build')) for (const a of arches) checkEmulation(a, host);
  const { layout, tags, flavourTags } = await target(ctx, s.config, flags.output, {}, store);
  const started = Date.now();
  const perKey = new Map<string, { what: string; tag: string; made: CreatedImage[] }>();
  const madeAll: { platform: Platform; made: StackImages }[] = [];
  for (const [i, p] of platforms.entries()) {
    const arch = arches[i]!;
    const config = forArch(s.config, arch);
    const suffix = (t: string) => platformTag(t, p);
    // The stack file's own architecture made before as single images (kiln stack create without
    // --platform, kiln build's first use): tagged for this platform, reused when the recipe matches.
    if (arch === s.config.archive.arch)
      await adoptSingleImages(layout, [tags.run, tags.build, ...Object.values(flavourTags)], suffix);
    const options = {
      lock: await archLock(ctx, s, flags, arch),
      access: s.access,
      layout,
      tags: { run: suffix(tags.run), build: suffix(tags.build) },
      flavourTags: Object.fromEntries(Object.entries(flavourTags).map(([k, t]) => [k, suffix(t)])),
      epoch: ctx.settings.sourceDateEpoch ?? DEFAULT_EPOCH,
      ...(roles ? { roles } : {}),
      ...(flavours ? { flavours } : {}),
      ...(flags.force ? { force: true } : {}),
      sbomDir: path.join(flags.sbomDir ?? path.join(layout.dir, 'sbom'), `${p.os}-${arch}`),
      sandbox: { onOutput: (l: string) => log.debug(l) },
      log: (l: string) => log.info(`[${platformString(p)}] ${l}`),
    };
    let made: StackImages;
    try {
      made = await createStack(config, options);
    } catch (e) {
      if (!flags.fallbackLock || !(e instanceof PackageGoneError)) throw e;
      log.warn(`${e.message}; resolving the ${arch} packages anew`);
      made = await createStack(config, { ...options, lock: await resolveArch(ctx, s, flags, arch) });
    }
    madeAll.push({ platform: p, made });
    for (const img of imagesOf(made)) {
      const what = img.flavour && img.flavour !== DEFAULT_FLAVOUR ? `run-${img.flavour}` : img.role;
      const tag =
        img.role === 'build'
          ? tags.build
          : img.flavour && img.flavour !== DEFAULT_FLAVOUR
            ? flavourTags[img.flavour]!
            : tags.run;
      const e = perKey.get(what) ?? { what, tag, made: [] };
      e.made.push(img);
      perKey.set(what, e);
      log.info(
        `${what} ${platformString(p)} image ${img.tag}@${img.descriptor.digest}${img.reused ? ' (up to date)' : ''}`,
      );
      ctx.stdout.write(`${what}	${img.tag}	${img.descriptor.digest}	${platformString(p)}
`);
    }
  }
  const indexes: { what: string; index: ImageIndex; children: CreatedImage[] }[] = [];
  for (const { what, tag, made } of perKey.values()) {
    const index = indexFrom(made.map((m, i) => ({ image: m.image, platform: platforms[i]! })));
    const d = await layout.writeIndex(index, tag);
    indexes.push({ what, index, children: made });
    log.info(`${what} index ${tag}@${d.digest} (${platforms.map(platformString).join(', ')})`);
    ctx.stdout.write(`${what}	${tag}	${d.digest}
`);
  }
  log.info(`Done in ${((Date.now() - started) / 1000).toFixed(2)} s`);
  if (flags.publish) await publishIndexes(ctx, layout, indexes, flags.publish);
}

/** adoptSingleImages tags each single image under `tags` also as `suffix(tag)` when that tag is missing. */
async function adoptSingleImages(
  layout: Layout,
  tags: readonly string[],
  suffix: (t: string) => string,
): Promise<void> {
  const known = new Set(await layout.tags());
  for (const t of tags) {
    if (!known.has(t) || known.has(suffix(t))) continue;
    const desc = await layout.resolve(t);
    if (isImageMediaType(desc.mediaType))
      await layout.writeImage(await layout.imageByDigest(desc.digest as Digest), suffix(t));
  }
}

/** publishIndexes pushes each index to REPO/<what>:latest with every platform image's SBOM referrers. */
async function publishIndexes(
  ctx: CliContext,
  layout: Layout,
  indexes: readonly { what: string; index: ImageIndex; children: readonly CreatedImage[] }[],
  repo: string,
): Promise<void> {
  await publishAll(
    ctx,
    layout,
    repo,
    indexes.map(({ what, index, children }) => ({
      name: what,
      kind: 'index',
      value: index,
      subjects: children.map((c) => c.descriptor.digest as Digest),
    })),
  );
}

async function publish(
  ctx: CliContext,
  layout: Layout,
  made: Awaited<ReturnType<typeof createStack>>,
  repo: string,
): Promise<void> {
  await publishAll(
    ctx,
    layout,
    repo,
    imagesOf(made).map((img) => ({
      // Flavours go to REPO/run-<flavour>:latest next to REPO/run:latest.
      name: img.flavour && img.flavour !== DEFAULT_FLAVOUR ? `run-${img.flavour}` : img.role,
      kind: 'image',
      value: img.image,
      subjects: [img.descriptor.digest as Digest],
    })),
  );
}

/**
 * publishAll pushes each value to REPO/<name>:latest, then the SBOM referrers of its subjects: the
 * same artifacts as in the layout, pushed by digest and registered as referrers (the referrers
 * API, or the tag-schema index where the registry has no such API).
 */
async function publishAll(
  ctx: CliContext,
  layout: Layout,
  repo: string,
  items: readonly { name: string; kind: string; value: Image | ImageIndex; subjects: readonly Digest[] }[],
): Promise<void> {
  const progress = ctx.log.progress();
  const images = imageTransports(ctx.settings, ctx.log, { progress });
  const base = repo.replace(/\/+$/, '');
  try {
    for (const { name, kind, value, subjects } of items) {
      const target = images.parse(`${base}/${name}:latest`);
      const r = await target.write(value);
      ctx.log.info(`Published ${name} ${kind} ${base}/${name}:latest@${r.digest}`);
      for (const subject of subjects)
        for (const ref of await referrersOf(layout, subject))
          await target.referrers.attach(await readArtifact(layout, ref));
    }
  } finally {
    progress.end();
  }
}

/** imagesOf lists what createStack made: run, its flavours (by name), build. */
function imagesOf(made: Awaited<ReturnType<typeof createStack>>): CreatedImage[] {
  const out: CreatedImage[] = [];
  if (made.run) out.push(made.run);
  for (const k of Object.keys(made.flavours).sort()) out.push(made.flavours[k]!);
  if (made.build) out.push(made.build);
  return out;
}

/** packagesLine summarises an image's packages for `stack inspect`: the count and the first few. */
function packagesLine(pkgs: readonly { name: string; version: string }[]): string {
  if (pkgs.length === 0) return '(no SBOM attached)';
  const shown = pkgs.slice(0, 6).map((p) => `${p.name} ${p.version}`);
  return `${pkgs.length}: ${shown.join(', ')}${pkgs.length > shown.length ? ', ... (all with --json)' : ''}`;
}
