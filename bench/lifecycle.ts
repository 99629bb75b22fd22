// kiln's own lifecycle overhead: for a 3-buildpack group with a warm cache,
// everything except the buildpacks' own processes must take <= 300 ms; a no-op rebuild must give
// the same digest without compressing any layer.
//
// Method: the E2E test builder (test/e2e/build-fixture.ts: three bash buildpacks, a static app,
// bubblewrap sandbox). Every sandboxed process is timed by wrapping the Executor; "overhead" is the
// build's wall time minus the time spent inside those processes (which includes the sandbox's own
// start cost per process, measured separately by bench/sandbox.ts). Runs:
//   cold      first build: empty cache, no previous image
//   warm      one app file changed (cache and previous image present)
//   no-op     nothing changed
// Usage: node bench/lifecycle.ts [ROUNDS]
import fs from 'node:fs/promises';
import path from 'node:path';
import { BubblewrapExecutor } from '../src/sandbox/bubblewrap.ts';
import type { Executor } from '../src/sandbox/executor.ts';
import { makeE2E } from '../test/e2e/build-fixture.ts';
import { median } from './lib/stats.ts';

const ROUNDS = Number(process.argv[2] ?? 5);
const inner = new BubblewrapExecutor({ hostUid: process.getuid?.() ?? 0 });
let sandboxMs = 0;
let processes = 0;
const timed: Executor = {
  name: 'timed-bubblewrap',
  capabilities: inner.capabilities,
  async run(spec) {
    const t0 = performance.now();
    try {
      return await inner.run(spec);
    } finally {
      sandboxMs += performance.now() - t0;
      processes++;
    }
  },
};

const w = await makeE2E();
try {
  const app = await w.app('bench', 'round 0');
  const once = async (label: string, change?: string) => {
    if (change !== undefined) await fs.writeFile(path.join(app, 'message.txt'), `${change}\n`);
    sandboxMs = 0;
    processes = 0;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await w.build(app, 'bench-app', { executor: timed });
    const c = process.cpuUsage(c0);
    const total = performance.now() - t0;
    // kiln's own CPU time (user + system of this process; the sandboxed buildpacks are children
    // and not counted): the load-independent view of the overhead on a shared machine.
    const cpu = (c.user + c.system) / 1000;
    return { label, total, sandbox: sandboxMs, processes, overhead: total - sandboxMs, cpu, r };
  };
  const rows: Awaited<ReturnType<typeof once>>[] = [];
  rows.push(await once('cold'));
  for (let i = 1; i <= ROUNDS; i++) rows.push(await once('warm (1 file changed)', `round ${i}`));
  const noop: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < ROUNDS; i++) noop.push(await once('no-op'));

  const fmt = (ms: number) => `${ms.toFixed(0).padStart(6)} ms`;
  console.log(
    'run                      total      in buildpack processes   kiln overhead   compressed  phases (ms)',
  );
  for (const x of [...rows, ...noop]) {
    const phases = Object.entries(x.r.timings)
      .map(([k, v]) => `${k}=${v.toFixed(0)}`)
      .join(' ');
    console.log(
      `${x.label.padEnd(22)} ${fmt(x.total)}   ${fmt(x.sandbox)} (${x.processes} procs)   ${fmt(x.overhead)} ${fmt(x.cpu)}   ${String(x.r.stats.compressed).padStart(6)}      ${phases}`,
    );
  }
  const warm = rows.slice(1);
  console.log(
    `\nwarm rebuild: median total ${median(warm.map((x) => x.total)).toFixed(0)} ms, kiln overhead ${median(warm.map((x) => x.overhead)).toFixed(0)} ms wall, ${median(warm.map((x) => x.cpu)).toFixed(0)} ms CPU (target <= 300 ms)`,
  );
  const digests = new Set(noop.map((x) => x.r.digest));
  console.log(
    `no-op rebuild: median total ${median(noop.map((x) => x.total)).toFixed(0)} ms, overhead ${median(noop.map((x) => x.overhead)).toFixed(0)} ms wall, ${median(noop.map((x) => x.cpu)).toFixed(0)} ms CPU, ` +
      `same digest: ${digests.size === 1 && noop[0]!.r.digest === rows.at(-1)!.r.digest}, layers compressed: ${noop.reduce((n, x) => n + x.r.stats.compressed, 0)}`,
  );
} finally {
  await w.cleanup();
}
