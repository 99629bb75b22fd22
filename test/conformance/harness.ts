// Conformance harness: runs kiln's detect and build phases on the test buildpacks in
// test/conformance/buildpacks (and on small generated ones) through the real bubblewrap executor,
// as uid 1000 on a host-derived rootfs (test/helpers/sandbox-rootfs.ts). Nothing is mocked: each
// fixture is a fresh set of directories that the sandbox user owns.

import assert from 'node:assert/strict';
import { chmod, chown, cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import type { Order } from '../../src/cnb/buildpack-toml.ts';
import { escapeId } from '../../src/cnb/ids.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { loggerFrom } from '../../src/internal/log.ts';
import { build } from '../../src/lifecycle/build.ts';
import { BuildpackStore } from '../../src/lifecycle/buildpack-store.ts';
import { type DetectResult, detect } from '../../src/lifecycle/detect.ts';
import type { PhaseOptions } from '../../src/lifecycle/phase-context.ts';
import type { RunTarget } from '../../src/lifecycle/target.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import { makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const here = dirname(fileURLToPath(import.meta.url));
export const BUILDPACKS_DIR = join(here, 'buildpacks');
const UID = 1000;
const GID = 1000;

/** A generated buildpack: bash bodies for bin/detect and bin/build and extra buildpack.toml text. */
export interface InlineBuildpack {
  readonly id: string;
  readonly version?: string;
  readonly api?: string;
  readonly detect?: string;
  readonly build?: string;
  /** Appended to [buildpack] (e.g. `clear-env = true`). */
  readonly info?: string;
  /** Appended after [buildpack] (e.g. [[targets]] or [[order]]). */
  readonly toml?: string;
  /** A composite: no bin/. */
  readonly composite?: boolean;
}

/** Lines the phases logged, by level. */
export interface CapturedLog {
  readonly lines: { level: string; msg: string }[];
  text(): string;
}

export interface Fixture {
  readonly dir: string;
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly buildConfig: string;
  readonly store: BuildpackStore;
  readonly log: CapturedLog;
  /** Copies test/conformance/buildpacks/<name>, optionally under another id/version/api. */
  install(
    name: string,
    over?: { id?: string; version?: string; api?: string },
  ): Promise<{ id: string; version: string }>;
  /** Writes a generated buildpack into the store. */
  inline(bp: InlineBuildpack): Promise<{ id: string; version: string }>;
  platformEnv(name: string, value: string): Promise<void>;
  buildConfigEnv(name: string, value: string): Promise<void>;
  appFile(rel: string, content: string): Promise<void>;
  options(over?: Partial<PhaseOptions>): PhaseOptions;
  detect(order: Order | string[], over?: Partial<PhaseOptions>): Promise<DetectResult>;
  /** detect, then build with its result. */
  detectAndBuild(order: Order | string[], over?: Partial<PhaseOptions>): ReturnType<typeof build>;
  /** Reads `<layers>/<bp>/<file>` (the probe buildpack's dumps). */
  layerFile(id: string, file: string): Promise<string>;
  cleanup(): Promise<void>;
}

export const TARGET: RunTarget = { os: 'linux', arch: 'amd64', distro: { name: 'debian', version: '12' } };

const executor = new BubblewrapExecutor({ hostUid: process.getuid?.() ?? 0 });

/** makeFixture prepares app, layers, platform and store dirs owned by the build user. */
export async function makeFixture(): Promise<Fixture> {
  const fs = await makeHostRootfs(UID, GID);
  await mkdir(join(fs.rootfs, 'cnb', 'buildpacks'), { recursive: true });
  const platform = join(fs.dir, 'platform');
  const buildConfig = join(fs.dir, 'build-config');
  const storeDir = join(fs.dir, 'buildpacks');
  for (const d of [platform, join(platform, 'env'), buildConfig, join(buildConfig, 'env'), storeDir]) {
    await mkdir(d, { recursive: true });
  }
  const store = new BuildpackStore(storeDir);
  const lines: { level: string; msg: string }[] = [];
  const logger = loggerFrom({
    debug: (msg: string) => lines.push({ level: 'debug', msg }),
    info: (msg: string) => lines.push({ level: 'info', msg }),
    warn: (msg: string) => lines.push({ level: 'warn', msg }),
    error: (msg: string) => lines.push({ level: 'error', msg }),
  });
  const log: CapturedLog = { lines, text: () => lines.map((l) => l.msg).join('\n') };

  const toOrder = (order: Order | string[]): Order =>
    typeof order[0] === 'string' ? [{ group: (order as string[]).map((id) => ({ id })) }] : (order as Order);

  const f: Fixture = {
    dir: fs.dir,
    app: fs.workspace,
    layers: fs.layers,
    platform,
    buildConfig,
    store,
    log,
    async install(name, over = {}) {
      const src = join(BUILDPACKS_DIR, name);
      let toml = await readFile(join(src, 'buildpack.toml'), 'utf8');
      if (over.api) toml = toml.replace(/^api = ".*"$/m, `api = "${over.api}"`);
      if (over.id) toml = toml.replace(/^id = ".*"$/m, `id = "${over.id}"`);
      if (over.version) toml = toml.replace(/^version = ".*"$/m, `version = "${over.version}"`);
      const id = /^id = "(.*)"$/m.exec(toml)![1]!;
      const version = /^version = "(.*)"$/m.exec(toml)![1]!;
      const dst = join(storeDir, escapeId(id), version);
      await cp(src, dst, { recursive: true });
      await writeFile(join(dst, 'buildpack.toml'), toml);
      return { id, version };
    },
    async inline(bp) {
      const version = bp.version ?? '0.0.1';
      const dst = join(storeDir, escapeId(bp.id), version);
      await mkdir(dst, { recursive: true });
      await writeFile(
        join(dst, 'buildpack.toml'),
        `api = "${bp.api ?? '0.12'}"\n[buildpack]\nid = "${bp.id}"\nversion = "${version}"\n${bp.info ?? ''}\n${bp.toml ?? ''}\n`,
      );
      if (!bp.composite) {
        await mkdir(join(dst, 'bin'));
        for (const [name, body] of [
          ['detect', bp.detect ?? 'exit 0'],
          ['build', bp.build ?? 'exit 0'],
        ] as const) {
          await writeFile(join(dst, 'bin', name), `#!/bin/bash\nset -eu\n${body}\n`);
          await chmod(join(dst, 'bin', name), 0o755);
        }
      }
      return { id: bp.id, version };
    },
    async platformEnv(name, value) {
      await writeFile(join(platform, 'env', name), value);
    },
    async buildConfigEnv(name, value) {
      await writeFile(join(buildConfig, 'env', name), value);
    },
    async appFile(rel, content) {
      const p = join(fs.workspace, rel);
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, content);
      await chown(p, UID, GID);
    },
    options(over = {}) {
      return {
        buildpackStore: store,
        appDir: fs.workspace,
        platformDir: platform,
        layersDir: fs.layers,
        buildConfigDir: buildConfig,
        executor,
        rootfs: fs.rootfs,
        network: 'none',
        extraMounts: fs.extraMounts,
        target: TARGET,
        logger,
        baseEnv: { PATH: '/usr/bin:/bin', HOME: '/home/cnb', SECRET_TOKEN: 'must-not-leak' },
        uid: UID,
        gid: GID,
        ...over,
      };
    },
    detect(order, over) {
      return detect({ ...f.options(over), order: toOrder(order) });
    },
    async detectAndBuild(order, over) {
      const r = await f.detect(order, over);
      return build({ ...f.options(over), group: r.group, plan: r.plan });
    },
    layerFile(id, file) {
      return readFile(join(fs.layers, escapeId(id), file), 'utf8');
    },
    cleanup: () => fs.cleanup(),
  };
  return f;
}

/** parseEnvDump reads `env -0` output into a map (values keep newlines). */
export function parseEnvDump(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of text.split('\0')) {
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    out.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return out;
}

/** parseArgsDump reads `printf '%s\0' "$@"` output. */
export function parseArgsDump(text: string): string[] {
  return text.split('\0').slice(0, -1);
}

/** withFixture runs one conformance case in a fresh fixture and always cleans it up. */
export async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const f = await makeFixture();
  try {
    await fn(f);
  } finally {
    await f.cleanup();
  }
}

/** rejectsWith asserts that `p` rejects with a KilnError of exit code `code` (and message `re`). */
export function rejectsWith(p: Promise<unknown>, code: number, re?: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KilnError, `expected KilnError, got ${e}`);
    assert.equal(exitCodeOf(e), code, `exit code of: ${e.message}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}
