import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, realpath, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BuildpackFailure } from '../../_shared/main.ts';
import { sharedLibraries } from '../../_shared/shared-libs.ts';

/** PythonInfo is what the build image's python3 says about itself. */
export interface PythonInfo {
  /** Real path of the interpreter binary, e.g. /usr/bin/python3.11. */
  readonly executable: string;
  /** e.g. 3.11.2 */
  readonly version: string;
  /** e.g. python3.11 */
  readonly name: string;
  /** The standard library directory, e.g. /usr/lib/python3.11. */
  readonly stdlib: string;
  /** Where the extension modules of the standard library are, e.g. /usr/lib/python3.11/lib-dynload. */
  readonly dynload: string;
}

/** probe asks `python3` on PATH where it lives. */
export async function probe(env: NodeJS.ProcessEnv): Promise<PythonInfo> {
  const script =
    'import json,sys,sysconfig,os;' +
    'print(json.dumps({"executable":os.path.realpath(sys.executable),"version":"%d.%d.%d"%sys.version_info[:3],' +
    '"stdlib":sysconfig.get_path("stdlib"),"dynload":sysconfig.get_config_var("DESTSHARED") or ""}))';
  const res = spawnSync('python3', ['-c', script], { env, encoding: 'utf8' });
  if (res.error || res.status !== 0) {
    throw new BuildpackFailure(
      "python3 not found in the build image: kiln/python ships the build image's Python",
    );
  }
  const info = JSON.parse(res.stdout) as {
    executable: string;
    version: string;
    stdlib: string;
    dynload: string;
  };
  return {
    ...info,
    name: basename(info.executable),
    dynload: info.dynload || join(info.stdlib, 'lib-dynload'),
  };
}

/** fileSha256 hashes a file (the interpreter binary is part of the layer key). */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function cp(args: string[]): void {
  const res = spawnSync('cp', args, { encoding: 'utf8' });
  if (res.status !== 0) throw new BuildpackFailure(`cp ${args.join(' ')}: ${res.stderr.trim()}`);
}

// Parts of the standard library an app never needs at run time (tests, GUI, the IDE, pip's bootstrap).
const SKIP = new Set([
  'test',
  'idlelib',
  'tkinter',
  'turtledemo',
  'ensurepip',
  'lib2to3',
  'config-3.11-x86_64-linux-gnu',
]);

/**
 * installRuntime lays the interpreter out so that it finds its standard library by itself (Python
 * locates `lib/pythonX.Y/os.py` next to `bin/`): `bin/pythonX.Y` (+ python3, python),
 * `lib/pythonX.Y/` and the shared libraries in `lib/` (on LD_LIBRARY_PATH at launch).
 */
export async function installRuntime(py: PythonInfo, layer: string): Promise<string[]> {
  await mkdir(join(layer, 'bin'), { recursive: true });
  const lib = join(layer, 'lib');
  const stdlib = join(lib, py.name);
  await mkdir(stdlib, { recursive: true });
  cp(['-L', py.executable, join(layer, 'bin', py.name)]);
  await symlink(py.name, join(layer, 'bin', 'python3'));
  await symlink(py.name, join(layer, 'bin', 'python'));
  for (const entry of (await readdir(py.stdlib)).sort()) {
    if (SKIP.has(entry) || entry.startsWith('config-')) continue;
    cp(['-a', join(py.stdlib, entry), stdlib]);
  }
  // Debian keeps lib-dynload inside the stdlib dir; other layouts put it elsewhere.
  if (!(await realpath(py.dynload)).startsWith(await realpath(py.stdlib))) {
    cp(['-a', py.dynload, join(stdlib, 'lib-dynload')]);
  }
  const dynload = join(stdlib, 'lib-dynload');
  const modules = (await readdir(dynload).catch(() => [] as string[]))
    .filter((f) => f.endsWith('.so'))
    .map((f) => join(dynload, f));
  const libs = sharedLibraries([py.executable, ...modules]);
  for (const l of libs) cp(['-L', l, join(lib, basename(l))]);
  return libs;
}
