// Fleet benchmark: from a run-image push to the last of N app images rebased and published by
// `kiln fleet serve` (registry notification → HEAD → reconcile → N rebase jobs), embedded SQLite
// and, with --pg, PostgreSQL with 3 `kiln fleet worker` processes; side by side with the
// baseline a platform team has without the fleet: `kiln rebase --publish` run image by image
// (timed on --peer-sample images, per image). Also an idle serve's CPU and RSS with N images.
// The app images are synthetic (test/helpers/cnb-images.ts: a run image plus four small app
// layers with real CNB labels), each in its own repository; the state is seeded as if each had
// been built on the first run image, so the push is the only change.
// Run: `node bench/fleet.ts [--images 200] [--workers 8] [--idle-seconds 30] [--peer-sample 10] [--pg]`.

import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseFleet } from '../src/fleet/declarations.ts';
import { PgState } from '../src/fleet/pg-state.ts';
import { keys } from '../src/fleet/reconcile.ts';
import { SqliteState } from '../src/fleet/sqlite-state.ts';
import type { FleetState } from '../src/fleet/state.ts';
import { RegistryClient } from '../src/registry/client.ts';
import { parseReference } from '../src/registry/reference.ts';
import { writeImage } from '../src/registry/write.ts';
import { appImage, runImage } from '../test/helpers/cnb-images.ts';
import { startPostgres } from '../test/helpers/postgres.ts';
import { freePort, startRegistry } from '../test/helpers/registry.ts';
import { args, opt } from './lib/args.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);
const N = Number(opt('--images', '200'));
const workers = Number(opt('--workers', '8'));
const idleSeconds = Number(opt('--idle-seconds', '30'));
const peerSample = Number(opt('--peer-sample', '10'));
const withPg = args.includes('--pg');
const kilnBin = path.resolve(import.meta.dirname, '..', 'bin', 'kiln');
const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-fleet-'));
const home = path.join(work, 'home');
const env = { ...process.env, KILN_HOME: home, NO_COLOR: '1', CI: '1' };
const TOKEN = 'bench-notify-token';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}
function rssMB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function main(): Promise<void> {
  const servePort = await freePort();
  const registry = await startRegistry({
    notifications: { url: `http://127.0.0.1:${servePort}/hooks/registry`, token: TOKEN },
  });
  const pgs = withPg ? await startPostgres() : undefined;
  const procs: ReturnType<typeof spawn>[] = [];
  try {
    const client = new RegistryClient({});
    const host = registry.host;
    const runRef = `${host}/stack/run:latest`;
    const run1 = await runImage({ patch: '1' });
    const d1 = (await writeImage(client, parseReference(runRef), run1)).digest;
    const app = await appImage({
      run: run1,
      runImageName: runRef,
      runImageReference: `${host}/stack/run@${d1}`,
    });
    const tags = Array.from({ length: N }, (_, i) => `${host}/apps/app-${i}:latest`);
    const t0 = performance.now();
    let appDigest = '';
    for (const t of tags) appDigest = (await writeImage(client, parseReference(t), app)).digest;
    console.log(`setup: ${N} app images pushed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const file = path.join(work, 'fleet.toml');
    await fs.mkdir(path.join(work, 'src'));
    await fs.writeFile(
      file,
      `schema-version = 1\npoll-interval = "60s"\n[run-images.base]\nimage = "${runRef}"\n${tags
        .map(
          (t, i) =>
            `[images.app-${i}]\ntag = "${t}"\nrun-image = "base"\nsource = { path = "${path.join(work, 'src')}" }\n`,
        )
        .join('')}`,
    );
    const db = pgs ? pgs.url : path.join(work, 'state.db');
    await run(kilnBin, ['fleet', 'apply', file, '--database', db], { env });
    // Seed: every image built on run image 1 (as after a first round of builds).
    const state: FleetState = pgs ? await PgState.connect(pgs.url) : SqliteState.open(db);
    const fleet = parseFleet(await fs.readFile(file, 'utf8'), file);
    await state.observe(keys.run(runRef), d1);
    for (const d of fleet.images) {
      const inputs = { declHash: d.hash, runImage: d1 };
      await state.enqueue({
        image: d.name,
        kind: 'build',
        reasons: ['CONFIG'],
        inputs,
        key: `seed-${d.name}`,
      });
      const j = await state.claim('seed', 60_000);
      await state.finish(j!.id, 'seed', { ok: true, digest: appDigest, kind: 'build', inputs }, '');
    }
    await fs.writeFile(path.join(work, 'token'), TOKEN);
    const serve = spawn(
      kilnBin,
      [
        'fleet',
        'serve',
        '--listen',
        `127.0.0.1:${servePort}`,
        '--database',
        db,
        '--registry-token-file',
        path.join(work, 'token'),
        '--workers',
        pgs ? '0' : String(workers),
      ],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    procs.push(serve);
    let serveLog = '';
    serve.stderr!.on('data', (c: Buffer) => {
      serveLog = (serveLog + c.toString()).slice(-20000);
    });
    if (pgs)
      for (let i = 0; i < 3; i++)
        procs.push(
          spawn(kilnBin, ['fleet', 'worker', '--database', db, '--workers', String(Math.ceil(workers / 3))], {
            env,
            stdio: 'ignore',
          }),
        );
    for (let i = 0; ; i++) {
      if ((await fetch(`http://127.0.0.1:${servePort}/healthz`).catch(() => undefined))?.ok) break;
      if (i > 200) throw new Error(`serve did not start\n${serveLog}`);
      await sleep(100);
    }
    // Idle: nothing changes; serve polls the state every 2 s and the registry every 60 s.
    if (idleSeconds > 0) await idle(serve.pid!);
    async function idle(pid: number): Promise<void> {
      await sleep(5000);
      const c0 = cpuTicks(pid);
      const w0 = performance.now();
      await sleep(idleSeconds * 1000);
      const idleCpu = ((cpuTicks(pid) - c0) / 100 / ((performance.now() - w0) / 1000)) * 100;
      const mem = rssMB(pid);
      console.log(
        `idle serve, ${N} images: ${idleCpu.toFixed(2)}% of a core over ${idleSeconds} s (target < 1%), RSS ${mem.rss.toFixed(0)} MB, peak ${mem.hwm.toFixed(0)} MB (target < 150 MB)`,
      );
    }

    // The push: run image 2, straight to the registry; the registry notifies serve.
    const run2 = await runImage({ patch: '2' });
    const p0 = performance.now();
    const d2 = (await writeImage(client, parseReference(runRef), run2)).digest;
    let last = 0;
    for (;;) {
      const imgs = (await state.images()).filter((i) => i.managed);
      const on2 = imgs.filter((i) => i.inputs?.runImage === d2).length;
      if (on2 !== last) last = on2;
      if (on2 === N) break;
      if (performance.now() - p0 > 300_000)
        throw new Error(`only ${on2}/${N} rebased after 300 s\n${serveLog}`);
      await sleep(100);
    }
    const fleetS = (performance.now() - p0) / 1000;
    const kinds = new Set<string>();
    for (const d of fleet.images.slice(0, 5)) kinds.add((await state.history(d.name))[0]!.kind);
    const rss = rssMB(serve.pid!);
    console.log(
      `fleet (${pgs ? `PostgreSQL, serve + 3 workers x ${Math.ceil(workers / 3)}` : `embedded, ${workers} jobs at once`}): push → last of ${N} images rebased ${fleetS.toFixed(1)} s (target <= 30 s), ${((fleetS / N) * 1000).toFixed(0)} ms per image; kinds ${[...kinds].join(',')}; serve peak RSS ${rss.hwm.toFixed(0)} MB`,
    );
    await state.close();

    // Baseline: one `kiln rebase --publish` per image (a human or CI job per app), on a sample.
    if (peerSample === 0) return;
    const times: number[] = [];
    for (const t of tags.slice(0, peerSample)) {
      const s = performance.now();
      await run(kilnBin, ['rebase', t, '--publish', '--run-image', runRef], { env });
      times.push((performance.now() - s) / 1000);
    }
    const per = median(times);
    console.log(
      `baseline: kiln rebase --publish image by image: median ${(per * 1000).toFixed(0)} ms per image over ${peerSample} → ${(per * N).toFixed(1)} s for ${N} (extrapolated); fleet/baseline ${(fleetS / (per * N)).toFixed(2)}x`,
    );
    console.log(
      `load average during the run: ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (2 cores)`,
    );
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await sleep(1000);
    for (const p of procs) p.kill('SIGKILL');
    await registry.stop();
    await pgs?.stop();
    if (!args.includes('--keep')) await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
