// Process cost of kiln's bundled buildpacks in the build image: what every bin/detect that does
// not match and every bin/build start costs before any real work, on the build image's own
// Node.js (Debian's 18, without a startup snapshot). Each buildpack of this checkout's
// dist/buildpacks, and of a baseline checkout's (`--base DIR`) when given, runs in a bubblewrap
// sandbox on the unpacked build image, side by side in one run with alternating rounds, next to
// the floors: `sh -c 'exit 100'` and `node -e 0` in the same sandbox.
//   - detect: bin/detect in an empty app directory (nothing matches: "does not apply");
//   - build start: bin/build without the CNB environment: Node.js starts, loads the bundle and
//     stops at its first check (no buildpack directory) — the fixed cost of every bin/build.
// Figures: CPU ms (user + system of the sandboxed process tree, per run, averaged over each
// round's batch: the load-independent figure) and wall ms medians.
//
//   node bench/buildpack-start.ts [--base DIR] [--rounds 6] [--runs 10]
// Needs root and bwrap. Env: KILN_BENCH_HOME (default: the e2e home, whose stack images
// exist after the e2e tests).

import { execFile, spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { extract } from '../src/layers/extract.ts';
import { ImageStore } from '../src/store/store.ts';
import { opt } from './lib/args.ts';
import { childCpuMs } from './lib/process-cost.ts';
import { median } from './lib/stats.ts';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const KILN_HOME = process.env.KILN_BENCH_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');
const base = opt('--base', '');
const rounds = Number(opt('--rounds', '6'));
const runs = Number(opt('--runs', '10'));

for (const tool of ['bwrap']) {
  if (
    !(await exec(tool, ['--version']).then(
      () => true,
      () => false,
    ))
  ) {
    console.error(`bench/buildpack-start.ts needs ${tool}: apt-get install -y bubblewrap`);
    process.exit(2);
  }
}

interface Probe {
  readonly name: string;
  /** Command inside the sandbox; `bp` is where the side's buildpacks are mounted. */
  readonly argv: (bp: string) => readonly string[];
}

/** sandbox runs `argv` on the build image `rootfs` as uid 1000 with /tmp/app as cwd; no pid namespace, so its CPU is ours to count. */
function sandbox(rootfs: string, bpDir: string, argv: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'bwrap',
      [
        '--ro-bind',
        rootfs,
        '/',
        '--ro-bind',
        bpDir,
        '/cnb/buildpacks-bench',
        '--proc',
        '/proc',
        '--dev',
        '/dev',
        '--tmpfs',
        '/tmp',
        '--dir',
        '/tmp/app',
        '--chdir',
        '/tmp/app',
        '--unshare-net',
        '--unshare-ipc',
        '--unshare-uts',
        '--unshare-user',
        '--uid',
        '1000',
        '--gid',
        '1000',
        '--die-with-parent',
        '--clearenv',
        '--setenv',
        'PATH',
        '/usr/local/bin:/usr/bin:/bin',
        '--setenv',
        'HOME',
        '/tmp',
        '--',
        ...argv,
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    child.on('error', reject);
    // Exit codes are the probes' answers (100: does not apply; 1: stopped at the first check).
    child.on('close', () => resolve());
  });
}

const work = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-bpstart-'));
try {
  // The build image, unpacked once with kiln's own extractor (its layers are zstd; read-only for every run).
  const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  const image = await store.find('kiln/stacks/bookworm/build');
  if (!image) {
    console.error(
      `bench/buildpack-start.ts needs the stack's build image in ${KILN_HOME} (run the e2e tests or kiln stack create)`,
    );
    process.exit(2);
  }
  const rootfs = path.join(work, 'rootfs');
  for (const l of await image.layers())
    await extract(await l.compressed(), rootfs, { whiteouts: true, times: false });
  await mkdir(path.join(rootfs, 'cnb', 'buildpacks-bench'), { recursive: true });

  const sides = [{ name: 'this', dir: path.join(ROOT, 'dist', 'buildpacks') }];
  if (base) sides.unshift({ name: 'base', dir: path.join(path.resolve(base), 'dist', 'buildpacks') });
  for (const s of sides) await access(path.join(s.dir, 'procfile', 'bin', 'detect'));
  const names = (await readdir(sides.at(-1)!.dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();

  const probes: Probe[] = [
    { name: "floor: sh -c 'exit 100'", argv: () => ['/bin/sh', '-c', 'exit 100'] },
    { name: 'floor: node -e 0', argv: () => ['node', '-e', '0'] },
    ...names.flatMap((n): Probe[] => [
      { name: `${n} detect`, argv: (bp) => [`${bp}/${n}/bin/detect`, '/tmp/platform', '/tmp/plan.toml'] },
      { name: `${n} build start`, argv: (bp) => [`${bp}/${n}/bin/build`] },
    ]),
  ];
  const cpu = new Map<string, number[]>();
  const wall = new Map<string, number[]>();
  const key = (side: string, probe: string) => `${side}\t${probe}`;
  const load = (await exec('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const p of probes) {
      for (const s of order) {
        if (p.name.includes(' ') && !p.name.startsWith('floor')) {
          const bp = p.name.split(' ')[0]!;
          if (
            !(await access(path.join(s.dir, bp)).then(
              () => true,
              () => false,
            ))
          )
            continue;
        }
        const argv = p.argv('/cnb/buildpacks-bench');
        const c0 = childCpuMs();
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          await sandbox(rootfs, s.dir, argv);
          times.push(performance.now() - t0);
        }
        const k = key(s.name, p.name);
        // cutime ticks are 10 ms: the batch's total over its runs gives the per-run figure.
        cpu.set(k, [...(cpu.get(k) ?? []), (childCpuMs() - c0) / runs]);
        wall.set(k, [...(wall.get(k) ?? []), median(times)]);
      }
    }
    process.stderr.write(`round ${r + 1}/${rounds}\n`);
  }

  console.log(
    `\nBundled buildpacks in the build image (Debian's Node.js), ${rounds} rounds x ${runs} runs, medians; load average before: ${load}`,
  );
  const cols = sides.map((s) => s.name);
  console.log(
    `  ${'probe'.padEnd(30)}${cols.map((c) => `${`${c} CPU ms`.padStart(14)}${`${c} wall`.padStart(11)}`).join('')}`,
  );
  for (const p of probes) {
    const cells = cols.map((c) => {
      const k = key(c, p.name);
      const cc = cpu.get(k);
      const ww = wall.get(k);
      return cc && ww
        ? `${median(cc).toFixed(1).padStart(14)}${median(ww).toFixed(1).padStart(11)}`
        : `${'-'.padStart(14)}${'-'.padStart(11)}`;
    });
    console.log(`  ${p.name.padEnd(30)}${cells.join('')}`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
