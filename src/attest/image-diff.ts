import { createHash } from 'node:crypto';
import { readTar } from '../layers/tar-reader.ts';
import type { Image, Layer } from '../oci/image.ts';

// What differs between an image and its rebuild: the first layers whose diffIDs differ and, in
// them, the entries (path: what differs). Layers are read as streams; only one hash per entry is
// kept, so a large layer costs time, not memory.

/** Entries listed per differing layer at most (the first ones, in path order). */
const MAX_FILES = 20;

interface EntryFacts {
  readonly kind: string;
  readonly mode: number;
  readonly owner: string;
  readonly mtime: number;
  readonly content: string;
}

async function entriesOf(layer: Layer): Promise<Map<string, EntryFacts>> {
  const out = new Map<string, EntryFacts>();
  for await (const e of readTar(await layer.uncompressed())) {
    const h = e.header;
    let content = h.linkname;
    if (h.type === 'file') {
      const hash = createHash('sha256');
      for await (const c of e.body) hash.update(c);
      content = hash.digest('hex');
    }
    out.set(h.path.replace(/^\.?\//, '').replace(/\/$/, ''), {
      kind: h.type,
      mode: h.mode,
      owner: `${h.uid}:${h.gid}`,
      mtime: h.mtime,
      content,
    });
  }
  return out;
}

function whatDiffers(a: EntryFacts | undefined, b: EntryFacts | undefined): string {
  if (!a) return 'only in the rebuild';
  if (!b) return 'missing from the rebuild';
  const parts: string[] = [];
  if (a.kind !== b.kind) parts.push(`type ${a.kind} vs ${b.kind}`);
  if (a.content !== b.content) parts.push('content');
  if (a.mode !== b.mode) parts.push(`mode ${a.mode.toString(8)} vs ${b.mode.toString(8)}`);
  if (a.owner !== b.owner) parts.push(`owner ${a.owner} vs ${b.owner}`);
  if (a.mtime !== b.mtime) parts.push(`mtime ${a.mtime} vs ${b.mtime}`);
  return parts.join(', ');
}

/**
 * imageDiff describes how `rebuilt` differs from `original`, one line each: the first layer index
 * whose diffID differs (1-based, as `kiln inspect` counts) and its differing files, or that only
 * the config differs. Empty when the digests are equal.
 */
export async function imageDiff(original: Image, rebuilt: Image): Promise<string[]> {
  const [da, db] = await Promise.all([original.digest(), rebuilt.digest()]);
  if (da === db) return [];
  const lines = [`rebuild: the rebuilt image is ${db}, not ${da}`];
  const [ca, cb] = await Promise.all([original.configFile(), rebuilt.configFile()]);
  const ia = ca.rootfs.diff_ids;
  const ib = cb.rootfs.diff_ids;
  const n = Math.max(ia.length, ib.length);
  let i = 0;
  while (i < n && ia[i] === ib[i]) i++;
  if (i === n) {
    lines.push('rebuild: every layer is the same; the image config differs');
    return lines;
  }
  lines.push(
    `rebuild: layer ${i + 1} differs: ${ia[i] ?? '(none)'} in the image, ${ib[i] ?? '(none)'} rebuilt`,
  );
  const [la, lb] = await Promise.all([original.layers(), rebuilt.layers()]);
  if (!la[i] || !lb[i]) return lines;
  const [ea, eb] = await Promise.all([entriesOf(la[i]!), entriesOf(lb[i]!)]);
  const paths = [...new Set([...ea.keys(), ...eb.keys()])].sort();
  let shown = 0;
  for (const p of paths) {
    const w = whatDiffers(ea.get(p), eb.get(p));
    if (!w) continue;
    if (shown++ < MAX_FILES) lines.push(`rebuild: layer ${i + 1}: /${p}: ${w}`);
  }
  if (shown > MAX_FILES) lines.push(`rebuild: layer ${i + 1}: ${shown - MAX_FILES} more entries differ`);
  return lines;
}
