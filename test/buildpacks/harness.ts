import { execFileSync, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A direct buildpack runner for tests: runs dist/buildpacks/<name>/bin/{detect,build} the way the
 * buildpack spec (API 0.12) and the reference lifecycle call them (env + positional arguments,
 * cwd = app), on the host, with build layers of earlier buildpacks put on PATH as a platform does.
 */

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const DIST = path.join(ROOT, 'dist', 'buildpacks');

/** bundle runs the bundling step (a no-op when nothing changed). */
export function bundle(): void {
  execFileSync('bash', [path.join(ROOT, 'scripts/build.d/buildpacks.sh')], { stdio: 'inherit' });
}

/** hostRegistry is the machine's npm registry (`npm config get registry`), never a literal host. */
export function hostRegistry(): string {
  return execFileSync('npm', ['config', 'get', 'registry'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  }).trim();
}

/** trustEnv passes on the host's CA settings (the machine may sit behind a TLS-intercepting proxy). */
export function trustEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of [
    'NODE_EXTRA_CA_CERTS',
    'SSL_CERT_FILE',
    'HTTPS_PROXY',
    'https_proxy',
    'NO_PROXY',
    'no_proxy',
  ]) {
    const v = process.env[k];
    if (v) out[k] = v;
  }
  return out;
}

export interface PhaseResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Phase inputs: app dir, `<layers>` root, platform dir, extra env, and the Node.js to run with. */
export interface PhaseOptions {
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly env?: Readonly<Record<string, string>>;
  /** PATH entries put in front (e.g. the node and npm layers' bin directories). */
  readonly path?: readonly string[];
  readonly node?: string;
  /** Buildpack Plan entries for build. */
  readonly plan?: readonly string[];
}

function execFile(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

function baseEnv(o: PhaseOptions, bpDir: string): NodeJS.ProcessEnv {
  return {
    PATH: [...(o.path ?? []), '/usr/local/bin:/usr/bin:/bin'].join(':'),
    HOME: path.join(o.platform, '..'),
    CNB_BUILDPACK_DIR: bpDir,
    CNB_PLATFORM_DIR: o.platform,
    CNB_TARGET_OS: 'linux',
    CNB_TARGET_ARCH: 'amd64',
    CNB_EXEC_ENV: 'production',
    ...(o.env ?? {}),
  };
}

/** detect runs `bin/detect <platform> <plan>` and returns its result and the Build Plan it wrote. */
export async function detect(name: string, o: PhaseOptions): Promise<PhaseResult & { plan: string }> {
  const bpDir = path.join(DIST, name);
  const planPath = path.join(o.layers, `plan-${name}.toml`);
  await mkdir(o.layers, { recursive: true });
  await writeFile(planPath, '');
  // bin/detect is executed itself (a shell precheck, then `node`), as a platform does; the Node.js
  // to use goes first on PATH.
  const node = o.node ?? process.execPath;
  const env = {
    ...baseEnv({ ...o, path: [path.dirname(node), ...(o.path ?? [])] }, bpDir),
    CNB_BUILD_PLAN_PATH: planPath,
  };
  const res = await execFile(path.join(bpDir, 'bin', 'detect'), [o.platform, planPath], o.app, env);
  return { ...res, plan: await readFile(planPath, 'utf8') };
}

/**
 * build runs `bin/build <layers>/<bp> <platform> <plan>`, executed itself (a launcher script or
 * `#!/usr/bin/env node`), as a platform does; the Node.js to use goes first on PATH.
 */
export async function build(name: string, o: PhaseOptions): Promise<PhaseResult> {
  const bpDir = path.join(DIST, name);
  const layersDir = path.join(o.layers, `kiln_${name}`);
  await mkdir(layersDir, { recursive: true });
  const planPath = path.join(o.layers, `bpplan-${name}.toml`);
  await writeFile(planPath, (o.plan ?? []).map((n) => `[[entries]]\nname = "${n}"\n`).join('\n'));
  const node = o.node ?? process.execPath;
  const env = {
    ...baseEnv({ ...o, path: [...(o.path ?? []), path.dirname(node)] }, bpDir),
    CNB_LAYERS_DIR: layersDir,
    CNB_BP_PLAN_PATH: planPath,
  };
  return execFile(path.join(bpDir, 'bin', 'build'), [layersDir, o.platform, planPath], o.app, env);
}
