import path from 'node:path';
import type { MetadataProcess } from '../cnb/metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { LAUNCH_SHELLS, processNeedsShell } from '../launcher/index.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { Image } from '../oci/image.ts';

// A process the launcher runs through a shell (`direct = false`, Buildpack API < 0.9: its command
// line and profile.d scripts are shell code) cannot start on a run image without one, such as
// kiln's default, shell-free run image. The export finds that out now, with one line saying what
// to do, instead of the image failing at launch (exit 82). Only images with such a process pay for
// the check (reading the run image's tar headers once per run image digest).

/** Run image digest → whether one of LAUNCH_SHELLS resolves to an executable file in it. */
const shellCache = new Map<string, boolean>();

interface Node {
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  readonly mode: number;
  readonly linkname: string;
}

/** listRootfs reads every layer's headers into path → node, applying whiteouts as an unpacker does. */
async function listRootfs(image: Image): Promise<Map<string, Node>> {
  const nodes = new Map<string, Node>();
  const drop = (p: string, self: boolean) => {
    for (const k of [...nodes.keys()]) if ((self && k === p) || k.startsWith(`${p}/`)) nodes.delete(k);
  };
  for (const layer of await image.layers()) {
    for await (const { header: h } of readTar(await layer.uncompressed())) {
      const p = path.posix.normalize(`/${h.path}`).replace(/\/+$/, '') || '/';
      const base = path.posix.basename(p);
      const dir = path.posix.dirname(p);
      if (base === '.wh..wh..opq') {
        drop(dir, false);
        continue;
      }
      if (base.startsWith('.wh.')) {
        drop(path.posix.join(dir, base.slice(4)), true);
        continue;
      }
      const type = h.type === 'file' || h.type === 'link' ? 'file' : h.type === 'dir' ? 'dir' : h.type;
      nodes.set(p, {
        type: type === 'symlink' || type === 'file' || type === 'dir' ? type : 'other',
        mode: h.mode,
        linkname: h.linkname,
      });
    }
  }
  return nodes;
}

/** resolveIn follows `p` through the listed tree's symlinks (clamped to its root, 40 hops). */
function resolveIn(nodes: ReadonlyMap<string, Node>, p: string): Node | undefined {
  let todo = p.split('/').filter((s) => s !== '');
  let at = '';
  for (let hops = 0; todo.length > 0; ) {
    const name = todo.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      at = path.posix.dirname(at || '/') === '/' ? '' : path.posix.dirname(at);
      continue;
    }
    const next = `${at}/${name}`;
    const n = nodes.get(next);
    if (!n) return undefined;
    if (n.type === 'symlink') {
      if (++hops > 40) return undefined;
      if (n.linkname.startsWith('/')) at = '';
      todo = [...n.linkname.split('/').filter((s) => s !== ''), ...todo];
      continue;
    }
    at = next;
    if (todo.length === 0) return n;
  }
  return nodes.get(at);
}

/** hasLaunchShell says whether the run image has one of the shells the launcher uses. */
export async function hasLaunchShell(image: Image): Promise<boolean> {
  const key = await image.digest();
  let has = shellCache.get(key);
  if (has === undefined) {
    const nodes = await listRootfs(image);
    has = LAUNCH_SHELLS.some((s) => {
      const n = resolveIn(nodes, s);
      return n?.type === 'file' && (n.mode & 0o111) !== 0;
    });
    shellCache.set(key, has);
  }
  return has;
}

/**
 * checkLaunchShell fails the export (62) when a process needs a shell that the run image lacks,
 * naming the process, its buildpack and what to use instead.
 */
export async function checkLaunchShell(
  processes: readonly MetadataProcess[],
  runImage: Image,
  runImageName: string | undefined,
): Promise<void> {
  const needy = processes.filter(processNeedsShell);
  if (needy.length === 0 || (await hasLaunchShell(runImage))) return;
  const p = needy[0]!;
  throw new KilnError(
    `process "${p.type}" of buildpack ${p['buildpack-id']} has direct = false (a command line for a shell, with profile.d scripts): the launcher runs it with /bin/sh, which the run image${runImageName ? ` ${runImageName}` : ''} does not have; build with --run-image shell (a run image with a shell), or have the buildpack declare direct = true`,
  ).inPhase('export');
}
