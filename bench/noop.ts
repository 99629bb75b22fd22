// No-op rebuild benchmark: `kiln build` of samples/node-express with nothing changed, this checkout
// against another checkout of kiln (a baseline commit), side by side in one run, alternating.
// Target: the no-op rebuild stays under one second and within 10% of the baseline's.
//
// Each side has its own kiln home (its own builder, cache and previous image; the stacks may
// differ between the commits), warmed by one full build before timing. Rounds alternate which side
// goes first, so neither always follows the other. Figures: medians of whole CLI processes (wall),
// their CPU (the load-independent figure: the whole process tree by `perf stat` task-clock where
// perf works, see lib/tree-cpu.ts for why rusage alone undercounts sandboxes) and the
// medians of kiln's own per-phase timings (`-v` "Timings (ms)" line).
//
//   node bench/noop.ts --base DIR [--rounds 8] [--homes DIR] [--keep]
// DIR: a built worktree of the baseline, e.g.
//   git worktree add /var/tmp/kiln-base 7c7c3eb && ln -s "$PWD/node_modules" /var/tmp/kiln-base/
//   (cd /var/tmp/kiln-base && . scripts/node.sh && bash scripts/build.sh)
// In bench/run-all.sh: KILN_BENCH_NOOP_BASE=DIR (or KILN_BENCH_NOOP_ARGS="--base DIR ...").
// --homes: where the two kiln homes go (default a temp dir; kept with --keep so a later run skips
// the warm-up). Stack images come from the e2e tests' home when there (else `kiln stack create
// --locked`). Env: KILN_BENCH_NOOP_BASE instead of --base.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { args, opt } from './lib/args.ts';
import { runToEnd, timeCpuMs } from './lib/run.ts';
import { median } from './lib/stats.ts';
import { treeCpuArgv, treeCpuAvailable, treeCpuMs } from './lib/tree-cpu.ts';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const base = opt('--base', process.env.KILN_BENCH_NOOP_BASE ?? '');
const rounds = Number(opt('--rounds', '8'));
const keep = args.includes('--keep');
const E2E_STORE = path.join(process.env.KILN_E2E_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home'), 'images');
if (base === '') {
  console.error('bench/noop.ts needs --base DIR: a built checkout of the baseline commit (see its header)');
  process.exit(2);
}

interface Side {
  readonly name: string;
  readonly root: string;
  readonly home: string;
  readonly image: string;
}

interface Timed {
  readonly ms: number;
  /** user + system of waited-for processes (rusage): misses what a sandbox's own init ran. */
  readonly cpuMs: number;
  /** The whole tree's CPU (perf task-clock), sandboxed processes included; NaN without perf. */
  readonly treeCpuMs: number;
  readonly digest: string;
  readonly phases: Readonly<Record<string, number>>;
}

let seq = 0;

/** kiln runs one CLI command of `side` and returns its wall and CPU time and what -v printed. */
async function kiln(side: Side, argv: readonly string[]): Promise<Timed> {
  const timeFile = path.join(os.tmpdir(), `kiln-bench-noop-time-${process.pid}-${seq}`);
  const perfFile = path.join(os.tmpdir(), `kiln-bench-noop-perf-${process.pid}-${seq++}`);
  const env = { ...process.env, KILN_HOME: side.home, NO_COLOR: '1', CI: '1' };
  try {
    const { ms, out } = await runToEnd(
      '/usr/bin/time',
      [
        '-f',
        '%U %S',
        '-o',
        timeFile,
        ...treeCpuArgv([path.join(side.root, 'bin', 'kiln'), ...argv], perfFile),
      ],
      { env, cwd: side.root, what: `${side.name}: kiln ${argv.join(' ')}` },
    );
    const phases: Record<string, number> = {};
    for (const m of /^Timings \(ms\): (.*)$/m.exec(out)?.[1]?.matchAll(/(\S+)=(\d+)/g) ?? [])
      phases[m[1]!] = Number(m[2]);
    const digest = /^(sha256:[0-9a-f]{64})$/m.exec(out)?.[1] ?? '';
    const [t, tree] = await Promise.all([fs.readFile(timeFile, 'utf8'), treeCpuMs(perfFile)]);
    return { ms, cpuMs: timeCpuMs(t), treeCpuMs: tree ?? Number.NaN, digest, phases };
  } finally {
    await Promise.all([fs.rm(timeFile, { force: true }), fs.rm(perfFile, { force: true })]);
  }
}

/** prepare gives `side` its stack images (copied from the e2e store when there) and its builder. */
async function prepare(side: Side): Promise<void> {
  await fs.mkdir(side.home, { recursive: true });
  // bin/kiln runs the sources instead of dist/cli when a source is newer than the bundle: build
  // first, so that both sides run what a user runs.
  await exec('bash', ['scripts/build.sh'], { cwd: side.root, maxBuffer: 1 << 26 });
  const haveStore = await fs.stat(path.join(E2E_STORE, 'index.json')).catch(() => undefined);
  const env = { ...process.env, KILN_HOME: side.home };
  const bin = path.join(side.root, 'bin', 'kiln');
  if (haveStore) {
    for (const role of ['build', 'run']) {
      const name = `kiln/stacks/bookworm/${role}`;
      // Best effort: a stack that does not match this side's lock file is made by stack create.
      await exec(bin, ['image', 'copy', `oci:${E2E_STORE}:docker.io/${name}:latest`, `local:${name}`], {
        env,
      }).catch(() => undefined);
    }
  }
  await exec(bin, ['stack', 'create', '--locked'], { env, cwd: side.root, maxBuffer: 1 << 26 });
  await kiln(side, ['build', side.image, '--path', path.join(side.root, 'samples', 'node-express')]);
}

const homes = opt('--homes', '') || (await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-noop-')));
const sides: Side[] = [
  { name: 'base', root: path.resolve(base), home: path.join(homes, 'base'), image: 'kiln-bench-noop-base' },
  { name: 'this', root: ROOT, home: path.join(homes, 'this'), image: 'kiln-bench-noop-this' },
];
const commit = async (dir: string) =>
  (await exec('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'])).stdout.trim();

try {
  for (const s of sides) await prepare(s);
  const runs = new Map<string, Timed[]>(sides.map((s) => [s.name, []]));
  const digests = new Map<string, Set<string>>(sides.map((s) => [s.name, new Set()]));
  for (let i = 0; i < rounds; i++) {
    for (const s of i % 2 === 0 ? sides : [...sides].reverse()) {
      const r = await kiln(s, [
        '-v',
        'build',
        s.image,
        '--path',
        path.join(s.root, 'samples', 'node-express'),
      ]);
      runs.get(s.name)!.push(r);
      digests.get(s.name)!.add(r.digest);
    }
  }
  const load = (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  console.log(
    `no-op rebuild of samples/node-express, ${rounds} alternating rounds, load average ${load}; base ${await commit(base)}, this ${await commit(ROOT)}`,
  );
  const med = (name: string, f: (t: Timed) => number) => median(runs.get(name)!.map(f));
  const [b, t] = [sides[0]!.name, sides[1]!.name];
  const wall = [med(b, (r) => r.ms), med(t, (r) => r.ms)] as const;
  const cpu = [med(b, (r) => r.cpuMs), med(t, (r) => r.cpuMs)] as const;
  console.log('| figure (median) | base | this | this / base | target |');
  console.log('| --------------- | ---- | ---- | ----------- | ------ |');
  const ratio = (x: number, y: number) => (y / x).toFixed(3);
  console.log(
    `| wall ms | ${wall[0].toFixed(0)} | ${wall[1].toFixed(0)} | ${ratio(...wall)} | < 1000 ms: ${wall[1] < 1000 ? 'yes' : 'NO'}; <= 1.10: ${wall[1] / wall[0] <= 1.1 ? 'yes' : 'NO'} |`,
  );
  if (treeCpuAvailable) {
    const tree = [med(b, (r) => r.treeCpuMs), med(t, (r) => r.treeCpuMs)] as const;
    console.log(
      `| cpu ms, whole tree (perf task-clock) | ${tree[0].toFixed(0)} | ${tree[1].toFixed(0)} | ${ratio(...tree)} | |`,
    );
  }
  // rusage misses sandboxed processes whose init bwrap does not wait for (see lib/tree-cpu.ts):
  // a kiln without kiln-init as pid 1 (e.g. 7c7c3eb) shows no buildpack CPU at all here.
  console.log(
    `| cpu ms, waited-for (rusage) | ${cpu[0].toFixed(0)} | ${cpu[1].toFixed(0)} | ${ratio(...cpu)} | |`,
  );
  const keys = [...new Set([...runs.values()].flatMap((rs) => rs.flatMap((r) => Object.keys(r.phases))))];
  for (const k of keys) {
    const p = [med(b, (r) => r.phases[k] ?? 0), med(t, (r) => r.phases[k] ?? 0)] as const;
    console.log(`| phase ${k} ms | ${p[0]} | ${p[1]} | | |`);
  }
  for (const s of sides)
    console.log(
      `${s.name} wall: ${runs
        .get(s.name)!
        .map((r) => r.ms.toFixed(0))
        .join(' ')}`,
    );
  for (const s of sides)
    console.log(`${s.name}: every no-op rebuild gave the same digest: ${digests.get(s.name)!.size === 1}`);
} finally {
  if (!keep && opt('--homes', '') === '') await fs.rm(homes, { recursive: true, force: true });
}
