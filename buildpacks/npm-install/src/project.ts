import { join } from 'node:path';
import { exists, readJsonIfExists, readTextIfExists } from '../../_shared/fsutil.ts';

/** PackageManager is the tool that installs the app's dependencies. */
export type PackageManager = 'npm' | 'pnpm' | 'yarn';

/** Project is what npm-install learns about the app from its files. */
export interface Project {
  readonly manager: PackageManager;
  /** The lock file's name, or undefined for an npm project without one (plain `npm install`). */
  readonly lockFile: string | undefined;
  readonly buildScript: string | undefined;
  readonly dependencyCount: number;
  /** Yarn 1 (classic), told by `packageManager` or the lock file's header. */
  readonly yarnClassic: boolean;
  /** package.json `packageManager` (e.g. `pnpm@9.15.0`), if set. */
  readonly packageManager: string | undefined;
}

/** PackageJson is the part of package.json kiln's Node.js buildpacks read. */
export interface PackageJson {
  readonly name?: string;
  readonly main?: string;
  readonly scripts?: Readonly<Record<string, string>>;
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
  readonly packageManager?: string;
}

const LOCK_FILES: readonly [string, PackageManager][] = [
  ['package-lock.json', 'npm'],
  ['npm-shrinkwrap.json', 'npm'],
  ['pnpm-lock.yaml', 'pnpm'],
  ['yarn.lock', 'yarn'],
];

/** readProject inspects package.json and the lock files; undefined when there is no package.json. */
export async function readProject(appDir: string): Promise<Project | undefined> {
  const pkg = (await readJsonIfExists(join(appDir, 'package.json'))) as PackageJson | undefined;
  if (!pkg) return undefined;
  let found: [string, PackageManager] | undefined;
  for (const entry of LOCK_FILES) {
    if (await exists(join(appDir, entry[0]))) {
      found = entry;
      break;
    }
  }
  const build = pkg.scripts?.build;
  let yarnClassic = false;
  if (found?.[1] === 'yarn') {
    const pm = /^yarn@(\d+)/.exec(pkg.packageManager ?? '');
    const head = (await readTextIfExists(join(appDir, 'yarn.lock')))?.slice(0, 200) ?? '';
    yarnClassic = pm ? pm[1] === '1' : head.includes('yarn lockfile v1');
  }
  return {
    manager: found?.[1] ?? 'npm',
    lockFile: found?.[0],
    buildScript: typeof build === 'string' && build.trim() ? build : undefined,
    dependencyCount:
      Object.keys(pkg.dependencies ?? {}).length + Object.keys(pkg.devDependencies ?? {}).length,
    yarnClassic,
    packageManager: typeof pkg.packageManager === 'string' ? pkg.packageManager : undefined,
  };
}
