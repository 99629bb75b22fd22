// Detect + build phase overhead for a 3-buildpack group (target: kiln's own overhead <= 300 ms).
// Side by side in one run:
//   sandbox only   the six bin/detect + bin/build processes run directly through the executor
//   phases         kiln's detect() and build() on the same buildpacks (env assembly, plan
//                  resolution, layer/launch/SBOM processing, metadata.toml)
// The difference is kiln's own work in these two phases.
// Usage: node bench/phases.ts [N]
import { build } from '../src/lifecycle/build.ts';
import { detect } from '../src/lifecycle/detect.ts';
import { BubblewrapExecutor } from '../src/sandbox/bubblewrap.ts';
import { makeFixture } from '../test/conformance/harness.ts';

const N = Number(process.argv[2] ?? 10);
const f = await makeFixture();
const detectScript = `n="$(basename "$(dirname "$CNB_BUILDPACK_DIR")")"; printf '[[provides]]\\nname = "%s"\\n[[requires]]\\nname = "%s"\\n' "$n" "$n" >> "$2"`;
const buildScript = `mkdir -p "$1/l/bin" "$1/l/env"; printf 'v' > "$1/l/env/X.append"; printf '[types]\\nlaunch = true\\nbuild = true\\n' > "$1/l.toml"; printf '[[processes]]\\ntype = "web"\\ncommand = ["x"]\\ndefault = true\\n' > "$1/launch.toml"`;
for (const id of ['bench/a', 'bench/b', 'bench/c'])
  await f.inline({ id, detect: detectScript, build: buildScript });
const ids = ['bench/a', 'bench/b', 'bench/c'];
const executor = new BubblewrapExecutor({ hostUid: process.getuid?.() ?? 0 });
const o = f.options();

async function sandboxOnly(): Promise<void> {
  for (const phase of ['detect', 'build']) {
    for (const id of ids) {
      const dir = `/cnb/buildpacks/${id.replace('/', '_')}/0.0.1`;
      await executor.run({
        argv: [
          '/bin/bash',
          '-c',
          phase === 'detect' ? detectScript : buildScript,
          'x',
          `/layers/tmp-${id.replace('/', '_')}`,
          '/platform',
          '/dev/null',
        ],
        env: { PATH: '/usr/bin:/bin', CNB_BUILDPACK_DIR: dir },
        cwd: '/workspace',
        uid: 1000,
        gid: 1000,
        rootfs: o.rootfs,
        mounts: [
          ...(o.extraMounts ?? []),
          { src: f.app, dst: '/workspace', readonly: phase === 'detect' },
          { src: f.layers, dst: '/layers', readonly: false },
          { src: f.platform, dst: '/platform', readonly: true },
          { src: f.store.root, dst: '/cnb/buildpacks', readonly: true },
        ],
        network: 'none',
        stdout: 'ignore',
        stderr: 'ignore',
      });
    }
  }
}

// The executor the phases use, timed: what is left of a phase's wall time is kiln's own work.
let inRun = 0;
const timed = {
  name: 'timed-bubblewrap',
  capabilities: executor.capabilities,
  async run(spec: Parameters<typeof executor.run>[0]) {
    const t0 = process.hrtime.bigint();
    try {
      return await executor.run(spec);
    } finally {
      inRun += Number(process.hrtime.bigint() - t0) / 1e6;
    }
  },
};

async function phases(): Promise<void> {
  // Detect runs one at a time here, so that time in executor.run does not overlap.
  const po = f.options({ executor: timed });
  const r = await detect({ ...po, order: [{ group: ids.map((id) => ({ id })) }], concurrency: 1 });
  await build({ ...po, group: r.group, plan: r.plan });
}

async function time(label: string, once: () => Promise<void>): Promise<number> {
  await once();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await once();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / N;
  console.log(`${label.padEnd(40)} ${ms.toFixed(1).padStart(7)} ms per detect+build`);
  return ms;
}

try {
  const bare = await time('sandbox only (6 processes)', sandboxOnly);
  inRun = 0;
  const full = await time('kiln detect() + build()', phases);
  const own = full - inRun / (N + 1);
  console.log(
    `${'  of which kiln own work'.padEnd(40)} ${own.toFixed(1).padStart(7)} ms (wall minus time in executor.run)`,
  );
  console.log(`${'difference to sandbox-only'.padEnd(40)} ${(full - bare).toFixed(1).padStart(7)} ms`);
} finally {
  await f.cleanup();
}
