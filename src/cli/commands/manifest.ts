import type { Command } from 'commander';
import { KilnError, UsageError } from '../../internal/errors.ts';
import type { Digest } from '../../oci/digest.ts';
import type { Image, ImageIndex } from '../../oci/image.ts';
import { type IndexAddendum, indexFrom } from '../../oci/index.ts';
import { isImageMediaType, isIndexMediaType } from '../../oci/media-types.ts';
import { configPlatform, platformString } from '../../oci/platform.ts';
import type { Platform } from '../../oci/schema.ts';
import { isIndex } from '../../transport/image-target.ts';
import type { Transports } from '../../transport/transports.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { terminalSafe } from '../terminal-text.ts';

// `kiln manifest`: hand-made image indexes (manifest lists), with pack's commands and flags.
// A list being edited lives in kiln's local store under its name (the store holds indexes); `push`
// writes it to its registry. Images are read by reference (store first, then registry) and enter
// the list by digest with their platform, read from their config unless annotated.

type Format = 'oci' | 'docker';

/** One entry of a list being edited: the manifest it names and how the index describes it. */
interface Entry {
  readonly image?: Image;
  readonly index?: ImageIndex;
  readonly platform?: Platform;
  readonly annotations?: Record<string, string>;
}

const formatOf = (f: string | undefined): Format => {
  if (f === undefined || f === 'oci') return 'oci';
  if (f === 'v2s2' || f === 'docker') return 'docker';
  throw new UsageError(`invalid --format "${f}": expected oci or v2s2`);
};

/** entriesOf are the entries of an index as it stands (platform and annotations kept). */
async function entriesOf(index: ImageIndex): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const d of (await index.indexManifest()).manifests) {
    const base = {
      ...(d.platform ? { platform: d.platform } : {}),
      ...(d.annotations ? { annotations: { ...d.annotations } } : {}),
    };
    if (isIndexMediaType(d.mediaType)) out.push({ ...base, index: await index.index(d.digest as Digest) });
    else if (isImageMediaType(d.mediaType))
      out.push({ ...base, image: await index.image(d.digest as Digest) });
  }
  return out;
}

/** entriesFor reads what `ref` names: an image is one entry, an index gives each of its entries. */
async function entriesFor(ref: string, images: Transports): Promise<Entry[]> {
  const top = await (await images.locate(ref)).readAny();
  if (isIndex(top)) return entriesOf(top);
  return [{ image: top, platform: configPlatform(await top.configFile()) }];
}

async function digestOf(e: Entry): Promise<Digest> {
  return (e.image ?? e.index)!.digest();
}

function build(entries: readonly Entry[], format: Format): ImageIndex {
  const add: IndexAddendum[] = entries.map((e) => ({
    ...(e.image ? { image: e.image } : { index: e.index! }),
    ...(e.platform ? { platform: e.platform } : {}),
    ...(e.annotations && Object.keys(e.annotations).length ? { annotations: e.annotations } : {}),
  }));
  return indexFrom(add, { format });
}

/** The list `name` in the local store; one line when there is none. */
async function localList(name: string, images: Transports): Promise<{ index: ImageIndex; format: Format }> {
  const top = await images
    .local(name)
    .readAny()
    .catch(() => undefined);
  if (!top || !isIndex(top))
    throw new KilnError(
      `no manifest list ${name} in the local store (kiln manifest create ${name} IMAGE...)`,
    );
  return { index: top, format: (await top.mediaType()).includes('docker') ? 'docker' : 'oci' };
}

/** matching finds the entry `ref` names: a digest, or an image reference resolved to its digest. */
async function matching(entries: readonly Entry[], ref: string, images: Transports): Promise<number> {
  const wanted = /^sha256:[0-9a-f]{64}$/.test(ref)
    ? [ref]
    : await Promise.all((await entriesFor(ref, images)).map(digestOf));
  for (const [i, e] of entries.entries()) if (wanted.includes(await digestOf(e))) return i;
  throw new UsageError(`${ref} is not in the manifest list`);
}

/** register adds `kiln manifest create|add|annotate|inspect|push|remove|rm`. */
export function register(program: Command, ctx: CliContext): void {
  const m = program
    .command('manifest')
    .description('make and publish image indexes (manifest lists) by hand, as pack manifest does');
  const transports = () => imageTransports(ctx.settings, ctx.log, { progress: ctx.log.progress() });
  const save = async (images: Transports, name: string, index: ImageIndex, publish: boolean) => {
    const w = await images.local(name).write(index);
    if (publish) await images.parse(name).write(index);
    ctx.stdout.write(`${w.digest}\n`);
  };

  m.command('create')
    .description(
      'create a manifest list in the local store from images (an index adds each of its manifests)',
    )
    .argument('<manifest-list>', 'name of the list (a registry reference, for push)')
    .argument('<manifests...>', 'images to list (store names, registry references, oci:DIR[:TAG])')
    .option('-f, --format <format>', 'media types of the list: oci or v2s2 (Docker manifest list)', 'oci')
    .option('--publish', 'also push the list to its registry')
    .action(async (name: string, refs: string[], o: { format: string; publish?: boolean }) => {
      const format = formatOf(o.format);
      const images = transports();
      if (await images.held(name))
        throw new UsageError(`${name} exists in the local store (kiln manifest remove ${name})`);
      const entries: Entry[] = [];
      for (const r of refs) entries.push(...(await entriesFor(r, images)));
      await save(images, name, build(entries, format), Boolean(o.publish));
      ctx.log.info(`Created manifest list ${name} (${entries.length} manifests)`);
    });

  m.command('add')
    .description('add an image (or every manifest of an index) to a manifest list')
    .argument('<manifest-list>')
    .argument('<manifest>')
    .action(async (name: string, ref: string) => {
      const images = transports();
      const { index, format } = await localList(name, images);
      const entries = await entriesOf(index);
      const have = new Set(await Promise.all(entries.map(digestOf)));
      for (const e of await entriesFor(ref, images)) if (!have.has(await digestOf(e))) entries.push(e);
      await save(images, name, build(entries, format), false);
    });

  m.command('annotate')
    .description("set a manifest's platform fields or annotations in a manifest list")
    .argument('<manifest-list>')
    .argument('<manifest>', 'the image (reference or digest) whose entry to change')
    .option('--os <os>', 'operating system')
    .option('--arch <arch>', 'architecture')
    .option('--variant <variant>', 'architecture variant')
    .option('--annotations <key=value>', 'annotation (repeatable)', (v: string, p: string[]) => [...p, v], [])
    .action(
      async (
        name: string,
        ref: string,
        o: { os?: string; arch?: string; variant?: string; annotations: string[] },
      ) => {
        const images = transports();
        const { index, format } = await localList(name, images);
        const entries = await entriesOf(index);
        const i = await matching(entries, ref, images);
        const e = entries[i]!;
        const p = e.platform ?? { os: '', architecture: '' };
        const platform: Platform = {
          ...p,
          os: o.os ?? p.os,
          architecture: o.arch ?? p.architecture,
          ...(o.variant !== undefined || p.variant ? { variant: o.variant ?? p.variant } : {}),
        };
        if (!platform.os || !platform.architecture) throw new UsageError(`${ref}: give --os and --arch`);
        const annotations = { ...e.annotations };
        for (const a of o.annotations) {
          const eq = a.indexOf('=');
          if (eq <= 0) throw new UsageError(`--annotations "${a}": expected key=value`);
          annotations[a.slice(0, eq)] = a.slice(eq + 1);
        }
        entries[i] = { ...e, platform, annotations };
        await save(images, name, build(entries, format), false);
      },
    );

  m.command('inspect')
    .description("print a manifest list (the local one, else the registry's) as JSON")
    .argument('<manifest-list>')
    .action(async (name: string) => {
      const images = transports();
      const top = (await images.held(name))
        ? await images.local(name).readAny()
        : await images.parse(name).readAny();
      if (!isIndex(top)) throw new KilnError(`${name} is an image, not a manifest list`);
      ctx.stdout.write(terminalSafe(`${JSON.stringify(await top.indexManifest(), null, 2)}\n`));
    });

  m.command('push')
    .description('push a manifest list from the local store to its registry')
    .argument('<manifest-list>')
    .option('-f, --format <format>', 'media types to push: oci or v2s2 (default: as created)')
    .option('--purge', 'remove the list from the local store once pushed')
    .action(async (name: string, o: { format?: string; purge?: boolean }) => {
      const images = transports();
      const local = await localList(name, images);
      const format = o.format ? formatOf(o.format) : local.format;
      const index = format === local.format ? local.index : build(await entriesOf(local.index), format);
      const w = await images.parse(name).write(index);
      const platforms = (await index.indexManifest()).manifests.map((d) =>
        d.platform ? platformString(d.platform) : '?',
      );
      ctx.log.info(`Pushed ${name}@${w.digest} (${platforms.join(', ')})`);
      if (o.purge) await (await images.store()).remove(name);
      ctx.stdout.write(`${w.digest}\n`);
    });

  m.command('remove')
    .description('delete manifest lists from the local store')
    .argument('<manifest-lists...>')
    .action(async (names: string[]) => {
      const images = transports();
      for (const n of names) {
        await localList(n, images);
        await (await images.store()).remove(n);
        ctx.log.info(`Removed manifest list ${n}`);
      }
    });

  m.command('rm')
    .description('remove an image from a manifest list')
    .argument('<manifest-list>')
    .argument('<manifest>', 'the image (reference or digest) to take out')
    .action(async (name: string, ref: string) => {
      const images = transports();
      const { index, format } = await localList(name, images);
      const entries = await entriesOf(index);
      entries.splice(await matching(entries, ref, images), 1);
      await save(images, name, build(entries, format), false);
    });
}
