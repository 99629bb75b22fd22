import type { Command } from 'commander';
import type { Image, ImageIndex } from '../../oci/image.ts';
import { parsePlatform, platformString } from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import { isIndex } from '../../transport/image-target.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { formatBytes } from '../logger.ts';
import { terminalSafe } from '../terminal-text.ts';

/** register adds `kiln image copy` and `kiln image inspect`. */
export function register(program: Command, ctx: CliContext): void {
  const image = program
    .command('image')
    .description('copy and inspect images in registries, layouts and archives');

  image
    .command('copy')
    .description('copy an image between oci:DIR[:TAG], docker-archive:FILE[:TAG], local:NAME and registries')
    .argument('<src>', 'source image (a bare name the local store holds is that image)')
    .argument('<dst>', 'destination image')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform source')
    .option('--all', 'copy a whole multi-platform index (registry to registry)')
    .option('--no-referrers', "leave the image's referrers (SBOMs, provenance, signatures) behind")
    .action(
      async (src: string, dst: string, opts: { platform?: string; all?: boolean; referrers: boolean }) => {
        const log = ctx.log;
        const platform = platformOption(opts.platform);
        const progress = log.progress();
        const images = imageTransports(ctx.settings, log, { progress, ...platform });
        const to = images.parse(dst);
        const from = await images.locate(src);
        log.info(`Copying ${from.name} to ${to.name}`);
        const started = Date.now();
        try {
          const value: Image | ImageIndex = await (opts.all ? from.readAny() : from.read());
          const { digest } = await to.write(value);
          // The referrers of the image copied (for an index: of the index), kept byte for byte.
          if (opts.referrers) {
            const { copyReferrers } = await import('../supply-chain.ts');
            const n = await copyReferrers(from, to, digest, images);
            if (n > 0) log.info(`Copied ${n} referrer(s) (SBOMs, provenance, signatures)`);
          }
          progress.end();
          log.info(`Copied ${to.name}@${digest} in ${((Date.now() - started) / 1000).toFixed(2)} s`);
          ctx.stdout.write(`${digest}\n`);
        } finally {
          progress.end();
        }
      },
    );

  image
    .command('inspect')
    .description('show the manifest, platform, layers and config summary of an image')
    .argument('<ref>', 'image (registry reference, oci:DIR[:TAG], docker-archive:FILE, local:NAME)')
    .option('--json', 'print JSON')
    .option('--platform <os/arch[/variant]>', 'platform to show from a multi-platform index')
    .action(async (ref: string, opts: { json?: boolean; platform?: string }) => {
      const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
      const target = await images.locate(ref);
      const top = await target.readAny();
      let index: Awaited<ReturnType<typeof summariseIndex>> | undefined;
      let img: Image;
      if (isIndex(top)) {
        index = await summariseIndex(top);
        img = await target.read();
      } else img = top;
      const summary = await summariseImage(img);
      const out = { reference: target.name, ...(index ? { index } : {}), ...summary };
      ctx.stdout.write(opts.json ? `${JSON.stringify(out, null, 2)}\n` : terminalSafe(humanInspect(out)));
    });
}

/** platformOption is imageTransports' platform for a `--platform` value (nothing when not given). */
export function platformOption(value: string | undefined): { platform?: Platform } {
  return value ? { platform: parsePlatform(value) } : {};
}

async function summariseIndex(idx: ImageIndex) {
  const m = await idx.indexManifest();
  return {
    digest: await idx.digest(),
    mediaType: await idx.mediaType(),
    manifests: m.manifests.map((d) => ({
      digest: d.digest,
      mediaType: d.mediaType,
      size: d.size,
      platform: d.platform ? platformString(d.platform) : undefined,
    })),
  };
}

async function summariseImage(img: Image) {
  const [digest, mediaType, manifest, cfg] = await Promise.all([
    img.digest(),
    img.mediaType(),
    img.manifest(),
    img.configFile(),
  ]);
  const c = cfg.config ?? {};
  const diffIDs = cfg.rootfs.diff_ids;
  return {
    digest,
    mediaType,
    platform: platformString({
      os: cfg.os,
      architecture: cfg.architecture,
      ...(cfg.variant ? { variant: cfg.variant } : {}),
    }),
    created: cfg.created,
    config: {
      digest: manifest.config.digest,
      user: c.User ?? '',
      entrypoint: c.Entrypoint ?? [],
      cmd: c.Cmd ?? [],
      workingDir: c.WorkingDir ?? '',
      env: c.Env ?? [],
      labels: c.Labels ?? {},
    },
    layers: manifest.layers.map((l, i) => ({
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
      diffID: diffIDs[i],
    })),
    size: manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
  };
}

function humanInspect(
  o: {
    reference: string;
    index?: Awaited<ReturnType<typeof summariseIndex>>;
  } & Awaited<ReturnType<typeof summariseImage>>,
): string {
  const lines: string[] = [];
  const kv = (k: string, v: string) => lines.push(`${`${k}:`.padEnd(13)}${v}`);
  kv('Reference', o.reference);
  if (o.index) {
    kv('Index', `${o.index.digest} (${o.index.mediaType})`);
    for (const m of o.index.manifests) lines.push(`  ${m.platform ?? '(no platform)'}  ${m.digest}`);
  }
  kv('Digest', o.digest);
  kv('Media type', o.mediaType);
  kv('Platform', o.platform);
  if (o.created) kv('Created', o.created);
  kv('User', o.config.user || '(root)');
  kv('Entrypoint', JSON.stringify(o.config.entrypoint));
  kv('Cmd', JSON.stringify(o.config.cmd));
  kv('WorkingDir', o.config.workingDir || '/');
  lines.push('Env:');
  for (const e of o.config.env) lines.push(`  ${e}`);
  const labels = Object.entries(o.config.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  lines.push(`Labels:${labels.length ? '' : ' (none)'}`);
  for (const [k, v] of labels) lines.push(`  ${k}=${v.length > 100 ? `${v.slice(0, 97)}...` : v}`);
  lines.push(`Layers (${o.layers.length}, ${formatBytes(o.size)} total):`);
  for (const l of o.layers) lines.push(`  ${l.digest}  ${formatBytes(l.size).padStart(10)}`);
  return `${lines.join('\n')}\n`;
}
