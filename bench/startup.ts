// Start-up benchmark: what `kiln --version` and `kiln build --help` cost (Node.js start, the
// bundled CLI's chunks, the command's module graph), this checkout against another checkout of
// kiln (a baseline commit), side by side in one run, alternating. Both load what a no-op rebuild
// loads before its first phase, so they track the no-op rebuild's start-up without its noise.
//
//   node bench/startup.ts --base DIR [--rounds 20]
// DIR: a built worktree of the baseline (see bench/noop.ts's header). Both sides run with one
// private kiln home (its compile cache is keyed by file contents, so each side keeps its own).
// Figures: medians of the whole process's CPU (`perf stat` task-clock where perf works, else
// rusage) and wall time, and the chunks of dist/cli each side loads and their bytes (strace).

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
const base = opt('--base', process.env.KILN_BENCH_STARTUP_BASE ?? '');
const rounds = Number(opt('--rounds', '20'));
if (base === '' || args.includes('--help')) {
  console.error('bench/startup.ts needs --base DIR: a built checkout of the baseline commit');
  process.exit(2);
}

interface Side {
  readonly name: string;
  readonly root: string;
}

const COMMANDS: readonly (readonly string[])[] = [['--version'], ['build', '--help']];
const home = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-startup-'));
let seq = 0;

/** run runs `kiln ARGV` of `side` once: wall ms and CPU ms. */
async function run(side: Side, argv: readonly string[]): Promise<{ ms: number; cpu: number }> {
  const timeFile = path.join(home, `time-${seq}`);
  const perfFile = path.join(home, `perf-${seq++}`);
  const env = { ...process.env, KILN_HOME: home, NO_COLOR: '1' };
  const kiln = path.join(side.root, 'bin', 'kiln');
  const { ms } = await runToEnd(
    '/usr/bin/time',
    ['-f', '%U %S', '-o', timeFile, ...treeCpuArgv([kiln, ...argv], perfFile)],
    { env, what: `${side.name}: kiln ${argv.join(' ')}` },
  );
  const tree = await treeCpuMs(perfFile);
  const cpu = tree ?? timeCpuMs(await fs.readFile(timeFile, 'utf8'));
  return { ms, cpu };
}

/** loaded lists the dist/cli chunks `kiln ARGV` of `side` opens, with their total size. */
async function loaded(
  side: Side,
  argv: readonly string[],
): Promise<{ chunks: number; bytes: number } | undefined> {
  const trace = path.join(home, `strace-${seq++}`);
  const kiln = path.join(side.root, 'bin', 'kiln');
  try {
    await exec('strace', ['-f', '-e', 'trace=openat', '-o', trace, kiln, ...argv], {
      env: { ...process.env, KILN_HOME: home },
      maxBuffer: 1 << 26,
    });
  } catch {
    return undefined; // no strace here
  }
  const dir = path.join(side.root, 'dist', 'cli');
  const files = new Set<string>();
  for (const m of (await fs.readFile(trace, 'utf8')).matchAll(/"([^"]*\/dist\/cli\/[^"/]+\.js)"/g))
    if (m[1]!.startsWith(dir)) files.add(m[1]!);
  let bytes = 0;
  for (const f of files) bytes += (await fs.stat(f)).size;
  return { chunks: files.size, bytes };
}

const sides: Side[] = [
  { name: 'base', root: path.resolve(base) },
  { name: 'this', root: ROOT },
];
try {
  // bin/kiln runs the sources when one is newer than the bundle: build first, as a user would.
  for (const s of sides) await exec('bash', ['scripts/build.sh'], { cwd: s.root, maxBuffer: 1 << 26 });
  // Warm-up: each side's compile cache is written on its first start.
  for (const s of sides) for (const c of COMMANDS) await run(s, c);
  const results = new Map<string, { ms: number[]; cpu: number[] }>();
  for (let i = 0; i < rounds; i++)
    for (const c of COMMANDS)
      for (const s of i % 2 === 0 ? sides : [...sides].reverse()) {
        const key = `${s.name} ${c.join(' ')}`;
        const r = await run(s, c);
        const acc = results.get(key) ?? { ms: [], cpu: [] };
        acc.ms.push(r.ms);
        acc.cpu.push(r.cpu);
        results.set(key, acc);
      }
  const load = (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  const commit = async (dir: string) =>
    (await exec('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  console.log(
    `kiln start-up, ${rounds} alternating rounds, load average ${load}; base ${await commit(base)}, this ${await commit(ROOT)}; CPU: ${treeCpuAvailable ? 'perf task-clock' : 'rusage'}`,
  );
  console.log('| command | figure (median) | base | this | this / base |');
  console.log('| ------- | --------------- | ---- | ---- | ----------- |');
  for (const c of COMMANDS) {
    const b = results.get(`base ${c.join(' ')}`)!;
    const t = results.get(`this ${c.join(' ')}`)!;
    for (const [label, f] of [
      ['cpu ms', (r: typeof b) => median(r.cpu)],
      ['wall ms', (r: typeof b) => median(r.ms)],
    ] as const)
      console.log(
        `| kiln ${c.join(' ')} | ${label} | ${f(b).toFixed(1)} | ${f(t).toFixed(1)} | ${(f(t) / f(b)).toFixed(3)} |`,
      );
    const [lb, lt] = [await loaded(sides[0]!, c), await loaded(sides[1]!, c)];
    if (lb && lt)
      console.log(
        `| kiln ${c.join(' ')} | dist/cli chunks loaded (KB) | ${lb.chunks} (${(lb.bytes / 1024).toFixed(0)}) | ${lt.chunks} (${(lt.bytes / 1024).toFixed(0)}) | |`,
      );
  }
} finally {
  await fs.rm(home, { recursive: true, force: true });
}
