// Launch-check benchmark: `kiln build` of samples/node-express with and without the launch-time
// dependency check (`--no-launch-check`), side by side in one run, alternating. Targets: the check
// adds <= 30 ms to a warm rebuild (one line of server.js changed); the no-op rebuild stays under
// one second with the check on.
//
// Runs (each a whole CLI process, wall time; the check's own time is also read from its `-v` line,
// which is the load-independent figure on a shared machine):
//   warm   one line of server.js changed: the app layer changes, so the check runs again, from
//          the run image's listing and the layer scans it cached by digest
//   no-op  nothing changed: the check's result for these digests is cached
//   full   one line changed and the remembered passes removed first: the whole check runs from
//          the cached run-image listing and layer scans (what a changed launch layer costs,
//          besides scanning that layer once)
//
//   node bench/launch-check.ts [--rounds 5] [--keep]
// Env: KILN_BENCH_HOME (default: the e2e tests' home, .kiln-test/e2e-home, which has the stack).

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { args, opt } from './lib/args.ts';
import { runToEnd } from './lib/run.ts';
import { median } from './lib/stats.ts';

const rounds = Number(opt('--rounds', '5'));
const keep = args.includes('--keep');
const ROOT = path.resolve(import.meta.dirname, '..');
const KILN = path.join(ROOT, 'bin', 'kiln');
const KILN_HOME = process.env.KILN_BENCH_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');
const SAMPLE = path.join(ROOT, 'samples', 'node-express');
const IMAGE = 'kiln-bench-launch-check';

interface Run {
  readonly ms: number;
  /** The check's own time from its debug line; undefined with --no-launch-check. */
  readonly checkMs?: number;
  readonly digest: string;
}

async function kiln(argv: readonly string[]): Promise<Run> {
  const { ms, out } = await runToEnd(KILN, ['-v', ...argv], {
    env: { ...process.env, KILN_HOME, NO_COLOR: '1', CI: '1' },
    what: `kiln ${argv.join(' ')}`,
  });
  const check = /launch check: passed in ([0-9.]+) ms/.exec(out);
  const digest = /^(sha256:[0-9a-f]{64})$/m.exec(out)?.[1] ?? '';
  return { ms, ...(check ? { checkMs: Number(check[1]) } : {}), digest };
}

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-launch-check-'));
const app = path.join(tmp, 'app');
const cacheDir = path.join(tmp, 'cache');
await fs.cp(SAMPLE, app, { recursive: true });
const build = (check: boolean) =>
  kiln(['build', IMAGE, '--path', app, '--cache-dir', cacheDir, ...(check ? [] : ['--no-launch-check'])]);
let edits = 0;
const edit = () => fs.appendFile(path.join(app, 'server.js'), `// edit ${++edits}\n`);

try {
  // Warm-up: the builder, the cache, the run image's listing and the layers' scans.
  await build(true);
  await edit();
  await build(true);
  const warm = { on: [] as Run[], off: [] as Run[] };
  const noop = { on: [] as Run[], off: [] as Run[] };
  let sameDigest = true;
  for (let i = 0; i < rounds; i++) {
    // Alternate which side goes first, so neither always follows the other's cache writes.
    for (const check of i % 2 === 0 ? [true, false] : [false, true]) {
      await edit();
      const w = await build(check);
      const n = await build(check);
      if (n.digest !== w.digest) sameDigest = false;
      (check ? warm.on : warm.off).push(w);
      (check ? noop.on : noop.off).push(n);
    }
  }
  const full: Run[] = [];
  for (let i = 0; i < rounds; i++) {
    await fs.rm(path.join(KILN_HOME, 'cache', 'launch-check', 'pass'), { recursive: true, force: true });
    await edit();
    full.push(await build(true));
  }
  const med = (rs: readonly Run[]) => median(rs.map((r) => r.ms));
  const checkMed = (rs: readonly Run[]) => median(rs.map((r) => r.checkMs ?? Number.NaN));
  const f = (n: number) => n.toFixed(1);
  const warmDelta = med(warm.on) - med(warm.off);
  console.log(
    `launch check, samples/node-express, ${rounds} rounds (median wall ms; the check's own ms from -v)`,
  );
  console.log('| run   | check on | check off | on - off | check itself | target |');
  console.log('| ----- | -------- | --------- | -------- | ------------ | ------ |');
  console.log(
    `| warm  | ${f(med(warm.on))} | ${f(med(warm.off))} | ${f(warmDelta)} | ${f(checkMed(warm.on))} | <= 30 ms added: ${checkMed(warm.on) <= 30 ? 'yes' : 'NO'} |`,
  );
  console.log(
    `| no-op | ${f(med(noop.on))} | ${f(med(noop.off))} | ${f(med(noop.on) - med(noop.off))} | ${f(checkMed(noop.on))} | < 1000 ms: ${med(noop.on) < 1000 ? 'yes' : 'NO'} |`,
  );
  console.log(
    `| full  | ${f(med(full))} | | | ${f(checkMed(full))} | <= 30 ms: ${checkMed(full) <= 30 ? 'yes' : 'NO'} |`,
  );
  console.log(
    `warm on: ${warm.on.map((r) => f(r.ms)).join(' ')}; off: ${warm.off.map((r) => f(r.ms)).join(' ')}`,
  );
  console.log(
    `no-op on: ${noop.on.map((r) => f(r.ms)).join(' ')}; off: ${noop.off.map((r) => f(r.ms)).join(' ')}`,
  );
  console.log(`no-op rebuilds give the warm build's digest: ${sameDigest}`);
} finally {
  if (!keep) await fs.rm(tmp, { recursive: true, force: true });
}
