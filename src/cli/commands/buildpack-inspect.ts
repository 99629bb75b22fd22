import type { Command } from 'commander';
import { readBuildpackageLabels } from '../../buildpackage/buildpackage.ts';
import { UsageError } from '../../internal/errors.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { terminalSafe } from '../terminal-text.ts';
import { openBuildpackageImage } from './buildpack.ts';

// `kiln buildpack inspect <buildpackage>` (pack's `buildpack inspect`): the entry buildpack, its
// targets (or stacks), every buildpack inside with its homepage, and the detection order of
// composite buildpacks, read from the package's labels only (no layer is downloaded).

/** What is printed (and, with -o json, its JSON). */
interface BuildpackInfo {
  readonly buildpack: { readonly id: string; readonly version: string; readonly homepage?: string };
  readonly targets: readonly unknown[];
  readonly stacks: readonly string[];
  readonly buildpacks: readonly {
    readonly id: string;
    readonly version: string;
    readonly homepage: string;
  }[];
  readonly order: readonly (readonly { id: string; version?: string; optional?: boolean }[])[];
}

/** registerInspect adds `kiln buildpack inspect` to the `buildpack` command. */
export function registerInspect(bp: Command, ctx: CliContext): void {
  bp.command('inspect')
    .description(
      'show a buildpackage: its buildpack, targets, the buildpacks inside and their detection order',
    )
    .argument(
      '<buildpack>',
      'buildpackage image (store name, registry reference, oci:, docker-daemon:) or .cnb file',
    )
    .option('-o, --output <format>', 'human or json', 'human')
    .action(async (ref: string, opts: { output: string }) => {
      if (opts.output !== 'human' && opts.output !== 'json')
        throw new UsageError(`--output ${opts.output}: expected human or json`);
      const images = imageTransports(ctx.settings, ctx.log);
      const image = await openBuildpackageImage(ref, images);
      if (!image)
        throw new UsageError(
          `buildpack inspect ${ref}: not a buildpackage image or .cnb file (ids and directories have no package labels)`,
        );
      const { metadata, layers } = await readBuildpackageLabels(image, ref);
      const info = describe(metadata, layers);
      const text = opts.output === 'json' ? `${JSON.stringify(info, null, 2)}\n` : human(ref, info);
      ctx.stdout.write(terminalSafe(text));
    });
}

function describe(
  metadata: Awaited<ReturnType<typeof readBuildpackageLabels>>['metadata'],
  layers: Awaited<ReturnType<typeof readBuildpackageLabels>>['layers'],
): BuildpackInfo {
  const buildpacks = Object.entries(layers)
    .flatMap(([id, versions]) =>
      Object.entries(versions).map(([version, e]) => ({ id, version, homepage: e.homepage ?? '' })),
    )
    .sort((a, b) => (a.id === b.id ? a.version.localeCompare(b.version) : a.id.localeCompare(b.id)));
  const entry = layers[metadata.id]?.[metadata.version];
  const order = (entry?.order ?? []).map((g) =>
    g.group.map((e) => ({
      id: e.id,
      ...(e.version ? { version: e.version } : {}),
      ...(e.optional ? { optional: true } : {}),
    })),
  );
  return {
    buildpack: {
      id: metadata.id,
      version: metadata.version,
      ...(metadata.homepage ? { homepage: metadata.homepage } : {}),
    },
    targets: metadata.targets ?? [],
    stacks: (metadata.stacks ?? []).map((s) => s.id),
    buildpacks,
    order,
  };
}

function human(ref: string, i: BuildpackInfo): string {
  const lines = [
    `Inspecting buildpack: '${ref}'`,
    '',
    `ID: ${i.buildpack.id}`,
    `Version: ${i.buildpack.version}`,
  ];
  if (i.targets.length) {
    lines.push('', 'Targets:');
    for (const t of i.targets) {
      const o = t as { os?: string; arch?: string; variant?: string };
      lines.push(`  ${[o.os ?? '', o.arch ?? ''].join('/')}${o.variant ? `/${o.variant}` : ''}`);
    }
  }
  if (i.stacks.length) lines.push('', 'Stacks:', ...i.stacks.map((s) => `  ${s}`));
  lines.push('', 'Buildpacks:');
  const w = Math.max(2, ...i.buildpacks.map((b) => b.id.length));
  const v = Math.max(7, ...i.buildpacks.map((b) => b.version.length));
  lines.push(`  ${'ID'.padEnd(w)}  ${'VERSION'.padEnd(v)}  HOMEPAGE`);
  for (const b of i.buildpacks)
    lines.push(`  ${b.id.padEnd(w)}  ${b.version.padEnd(v)}  ${b.homepage || '-'}`);
  lines.push('', 'Detection Order:');
  if (i.order.length === 0) lines.push(`  └ ${i.buildpack.id}@${i.buildpack.version}`);
  for (const [n, g] of i.order.entries()) {
    lines.push(`  └ Group #${n + 1}:`);
    for (const e of g)
      lines.push(`     ${e.version ? `${e.id}@${e.version}` : e.id}${e.optional ? '    (optional)' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
