import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDir } from '../internal/fs.ts';
import { childOf, type InRootFile, readdirInRootIfExists, readTextInRoot } from '../internal/safe-read.ts';
import type { ApiVersion } from './api.ts';

/**
 * LaunchEnvOp is one environment operation the launcher applies, in order, on top of the
 * container's environment. The exporter precomputes them per process type so the launcher (a
 * small C program) only has to apply them:
 * - override: set `name` to `value`;
 * - default: set only if the variable is unset or empty;
 * - prepend: `value + delim + old` (just `value` when old is empty);
 * - append: `old + delim + value` (just `value` when old is empty).
 * `delim` is the `.delim` file's raw content; absent means no separator (lifecycle behaviour).
 * Layer `bin`/`lib` dirs are prepend ops with delim ":".
 */
export interface LaunchEnvOp {
  readonly name: string;
  readonly op: 'override' | 'append' | 'prepend' | 'default';
  readonly value: string;
  readonly delim?: string;
}

/** A buildpack's launch layers as the launcher will see them. */
export interface LaunchBuildpack {
  readonly id: string;
  readonly api: ApiVersion;
  /** Layers in name order: where to read the env files now (`hostDir`) and where they live in the image (`imageDir`). */
  readonly layers: readonly { readonly hostDir: string; readonly imageDir: string }[];
}

/** Launch-time root dirs of a layer and the variables they feed (POSIX launch env). */
const LAUNCH_ROOT_DIRS: readonly (readonly [string, string])[] = [
  ['bin', 'PATH'],
  ['lib', 'LD_LIBRARY_PATH'],
];

/**
 * launchEnvOps gathers the env ops for one process type (or none) in the lifecycle launcher's
 * order: per buildpack (metadata order), first every layer's `bin`/`lib` (name order), then every
 * layer's `env/`, `env.launch/` and `env.launch/<type>/`. Ops keep file order within a dir
 * (sorted by name, as Go's os.ReadDir does), so `.default` and `.override` interact as in the
 * reference lifecycle.
 */
export async function launchEnvOps(
  buildpacks: readonly LaunchBuildpack[],
  processType?: string,
): Promise<LaunchEnvOp[]> {
  const ops: LaunchEnvOp[] = [];
  for (const bp of buildpacks) {
    for (const layer of bp.layers) {
      for (const [dir, name] of LAUNCH_ROOT_DIRS) {
        if (await isDir(join(layer.hostDir, dir))) {
          ops.push({ name, op: 'prepend', value: `${layer.imageDir}/${dir}`, delim: ':' });
        }
      }
    }
    for (const layer of bp.layers) {
      ops.push(...(await envDirOps(join(layer.hostDir, 'env'), 'override')));
      ops.push(...(await envDirOps(join(layer.hostDir, 'env.launch'), 'override')));
      if (processType) {
        ops.push(...(await envDirOps(join(layer.hostDir, 'env.launch', processType), 'override')));
      }
    }
  }
  return ops;
}

/**
 * envDirOps reads one env dir into ops. File names are `NAME[.suffix]`; no suffix takes
 * `defaultOp`; `.delim` files give the separator and produce no op; unknown suffixes are ignored.
 * Contents are raw (no trimming).
 */
export async function envDirOps(dir: string, defaultOp: LaunchEnvOp['op']): Promise<LaunchEnvOp[]> {
  const files = await envFiles(dir);
  const ops: LaunchEnvOp[] = [];
  for (const f of files) {
    const dot = f.name.indexOf('.');
    const name = dot < 0 ? f.name : f.name.slice(0, dot);
    const suffix = dot < 0 ? undefined : f.name.slice(dot + 1);
    const op = suffix === undefined ? defaultOp : suffix;
    if (op !== 'override' && op !== 'default' && op !== 'prepend' && op !== 'append') continue;
    if (op === 'prepend' || op === 'append') {
      const delim = files.find((d) => d.name === `${name}.delim`)?.value;
      ops.push(delim === undefined ? { name, op, value: f.value } : { name, op, value: f.value, delim });
    } else {
      ops.push({ name, op, value: f.value });
    }
  }
  return ops;
}

/**
 * envFiles lists the regular files of an env dir, sorted by name, with raw contents. A host path
 * (kiln's own `<platform>/env`) is read as it is; an env dir inside an untrusted tree (a
 * buildpack's layer, a builder's `/cnb/build-config/env`) is read through internal/safe-read, so a
 * symlinked dir or file (to `/etc/shadow`, say) is refused without being followed. `check`, when
 * given, is called on each host-path file before it is read.
 */
export async function envFiles(
  dir: string | InRootFile,
  check?: (path: string) => Promise<void>,
): Promise<{ name: string; value: string }[]> {
  if (typeof dir !== 'string') {
    const entries = readdirInRootIfExists(dir.root, dir.rel, dir) ?? [];
    return entries
      .filter((e) => !e.isDirectory())
      .map((e) => e.name)
      .sort(byName)
      .map((name) => {
        const f = childOf(dir, name);
        return { name, value: readTextInRoot(f.root, f.rel, f) };
      });
  }
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return [];
    throw err;
  }
  entries.sort((a, b) => byName(a.name, b.name));
  const out: { name: string; value: string }[] = [];
  for (const e of entries) {
    if (e.isDirectory()) continue;
    const path = join(dir, e.name);
    if (e.isSymbolicLink() && (await isDir(path))) continue;
    if (check) await check(path);
    out.push({ name: e.name, value: await readFile(path, 'utf8') });
  }
  return out;
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** applyEnvOp applies one op to a variable map exactly as the lifecycle's env package does. */
export function applyEnvOp(vars: Map<string, string>, op: LaunchEnvOp): void {
  const old = vars.get(op.name) ?? '';
  const delim = op.delim ?? '';
  switch (op.op) {
    case 'override':
      vars.set(op.name, op.value);
      break;
    case 'default':
      if (old === '') vars.set(op.name, op.value);
      break;
    case 'prepend':
      vars.set(op.name, old === '' ? op.value : op.value + delim + old);
      break;
    case 'append':
      vars.set(op.name, old === '' ? op.value : old + delim + op.value);
      break;
  }
}
