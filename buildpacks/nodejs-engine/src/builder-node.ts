import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { exists } from '../../_shared/fsutil.ts';
import { previousLayer, resetLayer, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log } from '../../_shared/main.ts';
import { sharedLibraries } from '../../_shared/shared-libs.ts';
import type { VersionRequest } from './request.ts';

// Offline with nothing cached, the registry's Node.js cannot be had; the build image ships one
// (Debian's nodejs). It is used instead of failing, said in one warning line, as long as it meets
// what the app asks for: the binary and every shared library it loads beyond glibc go into the
// `node` layer (bin/, lib/: the launcher puts a launch layer's lib/ on LD_LIBRARY_PATH), because
// the run image has none of Debian's Node.js libraries.

/** Where the build image's Node.js is (Debian's nodejs package). */
export const BUILDER_NODE = '/usr/bin/node';

const NODE_TYPES = { build: true, launch: true, cache: true };

/** BuilderNode is the build image's Node.js. */
export interface BuilderNode {
  /** Real path of the binary (Debian: /usr/bin/nodejs). */
  readonly executable: string;
  /** e.g. 18.20.4 */
  readonly version: string;
  /** The Debian package version, when dpkg knows it. */
  readonly deb?: string;
}

/** findBuilderNode asks the build image's node for its version; undefined when there is none. */
export async function findBuilderNode(env: NodeJS.ProcessEnv): Promise<BuilderNode | undefined> {
  if (!(await exists(BUILDER_NODE))) return undefined;
  const res = spawnSync(BUILDER_NODE, ['--version'], { env, encoding: 'utf8' });
  const version = /^v(\d+\.\d+\.\d+)\s*$/.exec(res.stdout ?? '')?.[1];
  if (res.status !== 0 || !version) return undefined;
  const executable = await realpath(BUILDER_NODE);
  const dpkg = spawnSync('dpkg-query', ['-W', '--showformat', '$' + '{Version}', 'nodejs'], {
    encoding: 'utf8',
  });
  const deb = dpkg.status === 0 && dpkg.stdout.trim() ? dpkg.stdout.trim() : undefined;
  return { executable, version, ...(deb ? { deb } : {}) };
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function cp(args: string[]): void {
  const res = spawnSync('cp', args, { encoding: 'utf8' });
  if (res.status !== 0) throw new BuildpackFailure(`cp ${args.join(' ')}: ${res.stderr.trim()}`);
}

/** Debian's Node.js loads a few of its own modules from here (externalized builtins). */
const DEBIAN_BUILTINS = /\/usr\/share\/nodejs\/[A-Za-z0-9_./-]+\.js\0/g;

/**
 * relocateBuiltins makes the copied libnode find its externalized builtins in the layer. Debian
 * builds Node.js with absolute paths to them (/usr/share/nodejs/acorn/dist/acorn.js, undici,
 * cjs-module-lexer), which the run image does not have, and Node.js aborts at start-up without
 * them: each file is copied into the layer as `<layer>/<n>.js` and its path, a NUL-terminated
 * string in libnode, is overwritten in place with the new one (never longer: padded with NULs).
 * The layer's path is the same at launch (CNB_LAYERS_DIR). The JSON of process.config also names
 * them, but there a quote follows `.js`, so it is left alone.
 */
async function relocateBuiltins(layer: string): Promise<void> {
  const lib = join(layer, 'lib');
  const libnode = (await readdir(lib)).find((f) => /^libnode\.so(\.|$)/.test(f));
  if (!libnode) return;
  const file = join(lib, libnode);
  const bytes = await readFile(file);
  const text = bytes.toString('latin1');
  let n = 0;
  for (const m of text.matchAll(DEBIAN_BUILTINS)) {
    const from = m[0].slice(0, -1);
    const to = join(layer, `${n}.js`);
    if (to.length > from.length) {
      throw new BuildpackFailure(
        `the build image's Node.js loads ${from}, and the layer path ${layer} is too long to relocate it`,
      );
    }
    cp(['-L', from, to]);
    bytes.fill(0, m.index, m.index + from.length);
    bytes.write(to, m.index, 'latin1');
    n++;
  }
  if (n > 0) await writeFile(file, bytes);
}

/**
 * useBuilderNode contributes the build image's Node.js as the `node` layer when the registry is
 * unreachable (`why`) and no cached Node.js fits. A request it cannot meet fails with a message
 * naming the range, where it comes from and the version there is.
 */
export async function useBuilderNode(
  layersDir: string,
  request: VersionRequest,
  wantsNpm: boolean,
  why: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const node = await findBuilderNode(env);
  if (!node) {
    throw new BuildpackFailure(
      `reading the Node.js versions: ${why}; offline, and the build image has no Node.js (${BUILDER_NODE}) to use instead`,
    );
  }
  if (request.range !== undefined) {
    const { default: semver } = await import('semver');
    if (!semver.satisfies(node.version, request.range)) {
      throw new BuildpackFailure(
        `${request.source} asks for Node.js "${request.range}", which cannot be downloaded offline (${why}); the build image's Node.js is ${node.version}, which does not satisfy it: build with the network, or allow ${node.version} in ${request.source}`,
      );
    }
  }
  if (wantsNpm && !(await exists('/usr/bin/npm'))) {
    throw new BuildpackFailure(
      `npm is needed to install the dependencies, but cannot be downloaded offline (${why}) and the build image has none: build with the network`,
    );
  }
  const deb = node.deb ? ` (Debian nodejs ${node.deb})` : '';
  const instead =
    request.range === undefined
      ? 'instead of the newest LTS'
      : `for "${request.range}" from ${request.source}`;
  log(
    `  warning: using the build image's Node.js ${node.version}${deb} ${instead}: the npm registry is unreachable (${why}) and no Node.js is cached`,
  );
  const metadata = {
    version: node.version,
    source: 'build-image',
    binary: await fileSha256(node.executable),
  };
  const prev = await previousLayer(layersDir, 'node');
  if (
    prev?.hasContents &&
    prev.metadata.source === metadata.source &&
    prev.metadata.binary === metadata.binary
  ) {
    await writeLayerToml(layersDir, 'node', NODE_TYPES, metadata);
    return;
  }
  const dir = await resetLayer(layersDir, 'node');
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'lib'), { recursive: true });
  cp(['-L', node.executable, join(dir, 'bin', 'node')]);
  const libs = sharedLibraries([node.executable]);
  for (const l of libs) cp(['-L', l, join(dir, 'lib', basename(l))]);
  await relocateBuiltins(dir);
  const { writeSboms } = await import('../../_shared/sbom.ts');
  await writeSboms(
    dir,
    [
      {
        name: node.deb ? 'nodejs' : 'node',
        version: node.deb ?? node.version,
        purl: node.deb
          ? `pkg:deb/debian/nodejs@${encodeURIComponent(node.deb)}?arch=amd64&distro=debian-12`
          : `pkg:generic/node@${node.version}`,
        type: 'application',
        ecosystem: node.deb ? 'deb' : 'binary',
        license: 'MIT',
      },
    ],
    { name: 'kiln/nodejs-engine', version: '0.1.0' },
    env,
  );
  await writeLayerToml(layersDir, 'node', NODE_TYPES, metadata);
}
