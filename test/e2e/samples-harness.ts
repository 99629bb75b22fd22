import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ImageStore } from '../../src/store/store.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';

// Shared by the samples end-to-end tests: the kiln CLI as a user runs it, with its own KILN_HOME.
// The home persists under .kiln-test/ (git-ignored) so the stack (about 2 minutes to create) and
// the default builder are made once per machine, like a user's first `kiln build`; every image a
// test builds gets a unique name and is run from that home's store.

/** freePort asks the kernel for an unused port on 127.0.0.1 (the registry helper's). */
export { freePort } from '../helpers/registry.ts';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const KILN_HOME = process.env.KILN_E2E_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * spawnKiln starts the CLI (bin/kiln) with the e2e home (plus `env`) and collects its output:
 * `done` resolves when it exits, `output` is what it printed so far.
 */
function spawnKiln(args: readonly string[], env: Readonly<Record<string, string>> = {}) {
  const child = spawn(path.join(ROOT, 'bin', 'kiln'), [...args], {
    env: { ...process.env, KILN_HOME, ...env, NO_COLOR: '1', CI: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
  return { child, done, output: () => stdout + stderr };
}

/** kiln runs the CLI (bin/kiln) with the e2e home; `env` adds variables (e.g. KILN_CONFIG). */
export async function kiln(
  args: readonly string[],
  opts: { timeoutMs?: number; env?: Readonly<Record<string, string>> } = {},
): Promise<CliResult> {
  const { child, done } = spawnKiln(args, opts.env);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/** kilnOk runs the CLI and fails with its output when it exits non-zero. */
export async function kilnOk(args: readonly string[]): Promise<CliResult> {
  const res = await kiln(args);
  if (res.code !== 0)
    throw new Error(`kiln ${args.join(' ')} exited ${res.code}\n${res.stdout}\n${res.stderr}`);
  return res;
}

/**
 * prepareHome makes sure the e2e home has the stack (`kiln stack create --locked`, a no-op when
 * up to date) and trusts the host CA bundle (machines behind TLS-intercepting proxies need it;
 * elsewhere it changes nothing).
 */
export async function prepareHome(): Promise<void> {
  await mkdir(KILN_HOME, { recursive: true });
  // The samples test files run in parallel: one makes the stack, the other waits for it.
  const lock = `${KILN_HOME}.lock`;
  const until = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > 20 * 60_000) await rm(lock, { recursive: true, force: true }); // left by a killed run
      if (Date.now() > until) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    await kilnOk(['config', 'trust-host-ca-certs', 'true']);
    await kilnOk(['stack', 'create', '--locked']);
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** copySample copies samples/<name> into a fresh temp dir (tests edit their copy). */
export async function copySample(
  name: string,
  from = path.join(ROOT, 'samples', name),
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const parent = await mkdtemp(path.join(tmpdir(), `kiln-e2e-${name}-`));
  const dir = path.join(parent, name);
  await cp(from, dir, {
    recursive: true,
    filter: (src) => !src.includes('node_modules'),
  });
  return { dir, cleanup: () => rm(parent, { recursive: true, force: true }) };
}

/** httpGet polls http://127.0.0.1:port/ until something answers (or gives up after `ms`). */
export async function httpGet(port: number, ms = 20_000): Promise<string> {
  const until = Date.now() + ms;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
      return await res.text();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`nothing answered on port ${port}: ${String(last)}`);
}

/**
 * runKiln starts `kiln run IMAGE ...` in the background; stop() sends Ctrl-C (SIGINT) and
 * resolves with everything it printed.
 */
export function runKiln(args: readonly string[]): { stop: () => Promise<CliResult>; output: () => string } {
  const { child, done, output } = spawnKiln(['run', ...args]);
  return {
    output,
    stop: async () => {
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const r = await done;
      clearTimeout(t);
      return r;
    },
  };
}

/** storedImage opens an image of the e2e home's local store. */
export async function storedImage(name: string) {
  const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  const image = await store.find(name);
  if (!image) throw new Error(`image ${name} not in the store`);
  return image;
}

/** layerShas returns `<buildpack>:<layer>` → diffID from an app image's lifecycle metadata label. */
export async function layerShas(
  name: string,
): Promise<{ layers: Map<string, string>; app: string[]; metadata: Map<string, unknown> }> {
  const cfg = await (await storedImage(name)).configFile();
  const meta = JSON.parse(cfg.config?.Labels?.['io.buildpacks.lifecycle.metadata'] ?? '{}') as {
    app?: { sha: string }[];
    buildpacks?: { key: string; layers?: Record<string, { sha: string; data?: unknown }> }[];
  };
  const layers = new Map<string, string>();
  const metadata = new Map<string, unknown>();
  for (const bp of meta.buildpacks ?? []) {
    for (const [name, l] of Object.entries(bp.layers ?? {})) {
      layers.set(`${bp.key}:${name}`, l.sha);
      metadata.set(`${bp.key}:${name}`, l.data);
    }
  }
  return { layers, app: (meta.app ?? []).map((a) => a.sha), metadata };
}

/**
 * podmanOnKilnStore prepares the e2e home and starts a podman that reads kiln's local store (an
 * OCI layout) at `store`, so a test runs what kiln built as `oci:<store>:<name>`.
 */
export async function podmanOnKilnStore(): Promise<{ podman: Podman; store: string }> {
  await prepareHome();
  const podman = await startPodman();
  const store = path.join(podman.dir, 'store');
  await symlink(path.join(KILN_HOME, 'images'), store);
  return { podman, store };
}
