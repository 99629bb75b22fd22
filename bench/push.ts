// Push benchmark: push a ~300 MB OCI layout to a local docker-registry with
// `kiln image copy oci:… host/…` and with `skopeo copy --dest-tls-verify=false oci:… docker://…`,
// side by side in one run, each into a fresh registry (so neither can mount or skip), alternating
// the order. Then a second kiln push of the same image through a counting proxy: blob bytes
// uploaded must be 0. Also reports kiln's peak RSS (GNU time) during the push, and a pull back into
// fresh OCI layouts, kiln against `skopeo copy docker://… oci:…`, side by side.
// `--kiln-before BIN` adds another kiln (e.g. `/path/to/main-checkout/bin/kiln`) to every round of
// the push and the pull, for before/after figures from the same run.
// Run: `node bench/push.ts [--size-mb 300] [--rounds 3] [--kiln-before BIN] [--keep]`.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeLayer } from '../src/layers/layer-writer.ts';
import type { TarEntry } from '../src/layers/tar-writer.ts';
import { Layout } from '../src/layout/layout.ts';
import { imageFrom } from '../src/oci/memory.ts';
import { startCountingProxy, startRegistry } from '../test/helpers/registry.ts';
import { args, opt } from './lib/args.ts';
import { randomStream } from './lib/random-data.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);
const sizeMB = Number(opt('--size-mb', '300'));
const rounds = Number(opt('--rounds', '3'));
const keep = args.includes('--keep');
const root = path.resolve(import.meta.dirname, '..');
const kilnBin = path.join(root, 'bin', 'kiln');
const beforeArg = opt('--kiln-before', '');
const beforeBin = beforeArg ? path.resolve(beforeArg) : undefined;

// Layers of mostly incompressible data (like real binaries and assets), a few files each.
async function makeLayout(dir: string): Promise<{ digest: string; bytes: number }> {
  const layout = await Layout.init(dir);
  const layerCount = 6;
  const perLayer = Math.floor((sizeMB * 1024 * 1024) / layerCount);
  const layers = [];
  for (let l = 0; l < layerCount; l++) {
    const files = 8;
    const entries: TarEntry[] = [{ path: `l${l}`, type: 'dir', mode: 0o755, uid: 0, gid: 0 }];
    for (let f = 0; f < files; f++) {
      const size = Math.floor(perLayer / files);
      entries.push({
        path: `l${l}/f${f}.bin`,
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        open: () => randomStream(size),
      });
    }
    layers.push(await writeLayer(entries, { store: layout.blobs, level: 1 }));
  }
  const img = imageFrom({
    config: { architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/true'] } },
    layers,
  });
  const desc = await layout.writeImage(img, 'v1');
  const manifest = await img.manifest();
  return { digest: desc.digest, bytes: manifest.layers.reduce((n, d) => n + d.size, 0) };
}

// Written data the previous run left in the page cache is flushed before each timed run, so no run
// pays for another's writeback: kiln does not fsync blobs (their digests are checked on every
// read), skopeo syncs each blob before exiting, and a layout deleted only at the end of a round
// made whichever tool ran after a kiln run write back its 300 MB as well.
async function settle(): Promise<void> {
  await run('sync', []);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-push-'));
try {
  console.log(`building a ~${sizeMB} MB layout in ${work} ...`);
  const { digest, bytes } = await makeLayout(path.join(work, 'layout'));
  const src = `oci:${path.join(work, 'layout')}:v1`;
  console.log(`layout: ${(bytes / 1048576).toFixed(1)} MiB of layer blobs, manifest ${digest}`);
  const env = { ...process.env, KILN_HOME: path.join(work, 'kiln-home'), CI: '1' };

  // Warm kiln's compile cache (under KILN_HOME) once, as any earlier kiln command would have.
  await run(kilnBin, ['-q', 'image', 'inspect', src], { env });

  const kilnTimes: number[] = [];
  const skopeoTimes: number[] = [];
  const kilnCpu: number[] = [];
  const skopeoCpu: number[] = [];
  let rss = 0;
  let skopeoRss = 0;
  // GNU time's figures: CPU seconds (user + sys) and peak RSS, printed on stderr.
  const usage = (out: string) => {
    const m = /CPU=([\d.]+)\+([\d.]+) MAXRSS_KB=(\d+)/.exec(out);
    return m ? { cpu: Number(m[1]) + Number(m[2]), rss: Number(m[3]) } : { cpu: Number.NaN, rss: 0 };
  };
  const TIME_FMT = 'CPU=%U+%S MAXRSS_KB=%M';
  // Each round starts with the next tool, so no tool always runs first.
  const tools = beforeBin ? ['kiln', 'skopeo', 'before'] : ['kiln', 'skopeo'];
  const toolOrder = (r: number) => tools.map((_, i) => tools[(i + r) % tools.length]!);
  const before = { push: [] as number[], pushCpu: [] as number[], pushRss: 0, pull: [] as number[] };
  const pullBeforeCpu: number[] = [];
  let pullBeforeRss = 0;
  for (let r = 0; r < rounds; r++) {
    for (const tool of toolOrder(r)) {
      const reg = await startRegistry();
      try {
        if (tool === 'kiln' || tool === 'before') {
          let out = '';
          const bin = tool === 'kiln' ? kilnBin : beforeBin!;
          await settle();
          const t = await timed(async () => {
            const res = await run(
              '/usr/bin/time',
              ['-f', TIME_FMT, bin, '-q', 'image', 'copy', src, `${reg.host}/bench/app:v1`],
              { env },
            );
            out = res.stdout + res.stderr;
          });
          if (!out.includes(digest)) throw new Error(`${tool} kiln pushed something else: ${out}`);
          const u = usage(out);
          if (tool === 'before') {
            before.pushRss = Math.max(before.pushRss, u.rss);
            before.pushCpu.push(u.cpu);
            before.push.push(t);
            continue;
          }
          rss = Math.max(rss, u.rss);
          kilnCpu.push(u.cpu);
          kilnTimes.push(t);
        } else {
          let out = '';
          await settle();
          const t = await timed(async () => {
            const res = await run('/usr/bin/time', [
              '-f',
              TIME_FMT,
              'skopeo',
              'copy',
              '-q',
              '--dest-tls-verify=false',
              src,
              `docker://${reg.host}/bench/app:v1`,
            ]);
            out = res.stdout + res.stderr;
          });
          const u = usage(out);
          skopeoRss = Math.max(skopeoRss, u.rss);
          skopeoCpu.push(u.cpu);
          const { stdout } = await run('skopeo', [
            'inspect',
            '--tls-verify=false',
            `docker://${reg.host}/bench/app:v1`,
          ]);
          if (JSON.parse(stdout).Digest !== digest) throw new Error('skopeo pushed another digest');
          skopeoTimes.push(t);
        }
      } finally {
        await reg.stop();
      }
    }
  }

  // Second push of the same image: every blob exists, nothing is uploaded.
  const reg = await startRegistry();
  const proxy = await startCountingProxy(reg.host);
  let second = 0;
  let secondBytes = -1;
  let firstBytes = -1;
  const pullKiln: number[] = [];
  const pullSkopeo: number[] = [];
  const pullKilnCpu: number[] = [];
  const pullSkopeoCpu: number[] = [];
  let pullKilnRss = 0;
  try {
    await run(kilnBin, ['-q', 'image', 'copy', src, `${proxy.host}/bench/app:v1`], { env });
    firstBytes = proxy.stats.uploadBytes;
    proxy.reset();
    second = await timed(() =>
      run(kilnBin, ['-q', 'image', 'copy', src, `${proxy.host}/bench/app:v1`], { env }),
    );
    secondBytes = proxy.stats.uploadBytes;
    // Pull into fresh layouts (registry -> oci:), both tools side by side, alternating the order.
    for (let r = 0; r < Math.max(1, rounds); r++) {
      const kdir = path.join(work, `pull-kiln-${r}`);
      const sdir = path.join(work, `pull-skopeo-${r}`);
      const bdir = path.join(work, `pull-before-${r}`);
      for (const tool of toolOrder(r)) {
        let out = '';
        await settle();
        const t = await timed(async () => {
          const res =
            tool !== 'skopeo'
              ? await run(
                  '/usr/bin/time',
                  [
                    '-f',
                    TIME_FMT,
                    tool === 'kiln' ? kilnBin : beforeBin!,
                    '-q',
                    'image',
                    'copy',
                    `${reg.host}/bench/app:v1`,
                    `oci:${tool === 'kiln' ? kdir : bdir}:v1`,
                  ],
                  { env },
                )
              : await run('/usr/bin/time', [
                  '-f',
                  TIME_FMT,
                  'skopeo',
                  'copy',
                  '-q',
                  '--src-tls-verify=false',
                  `docker://${reg.host}/bench/app:v1`,
                  `oci:${sdir}:v1`,
                ]);
          out = res.stdout + res.stderr;
        });
        const u = usage(out);
        if (tool === 'before') {
          if (!out.includes(digest)) throw new Error(`before kiln pulled something else: ${out}`);
          before.pull.push(t);
          pullBeforeCpu.push(u.cpu);
          pullBeforeRss = Math.max(pullBeforeRss, u.rss);
        } else if (tool === 'kiln') {
          if (!out.includes(digest)) throw new Error(`kiln pulled something else: ${out}`);
          pullKiln.push(t);
          pullKilnCpu.push(u.cpu);
          pullKilnRss = Math.max(pullKilnRss, u.rss);
        } else {
          pullSkopeo.push(t);
          pullSkopeoCpu.push(u.cpu);
        }
      }
      await fs.rm(kdir, { recursive: true, force: true });
      await fs.rm(sdir, { recursive: true, force: true });
      await fs.rm(bdir, { recursive: true, force: true });
    }
  } finally {
    await proxy.stop();
    await reg.stop();
  }

  const k = median(kilnTimes);
  const s = median(skopeoTimes);
  const mbps = (t: number) => (bytes / 1048576 / t).toFixed(0);
  console.log(
    '\npush of a fresh registry, median of',
    rounds,
    'rounds (wall clock, including process start):',
  );
  console.log(
    `  kiln   ${k.toFixed(2)} s  (${mbps(k)} MiB/s)  runs: ${kilnTimes.map((x) => x.toFixed(2)).join(', ')}`,
  );
  console.log(
    `  skopeo ${s.toFixed(2)} s  (${mbps(s)} MiB/s)  runs: ${skopeoTimes.map((x) => x.toFixed(2)).join(', ')}`,
  );
  console.log(`  ratio kiln/skopeo: ${(k / s).toFixed(2)}x  (target <= 1.0)`);
  const kc = median(kilnCpu);
  const sc = median(skopeoCpu);
  console.log(
    `  CPU seconds (user+sys, median): kiln ${kc.toFixed(2)}, skopeo ${sc.toFixed(2)}, ratio ${(kc / sc).toFixed(2)}x`,
  );
  console.log(
    `  peak RSS: kiln ${(rss / 1024).toFixed(0)} MiB, skopeo ${(skopeoRss / 1024).toFixed(0)} MiB (target <= 100 MiB)`,
  );
  console.log(
    `  machine load average at the end: ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  console.log(
    `pull registry -> oci layout, median: kiln ${median(pullKiln).toFixed(2)} s, skopeo ${median(pullSkopeo).toFixed(2)} s, ratio kiln/skopeo ${(median(pullKiln) / median(pullSkopeo)).toFixed(2)}x (target <= 1.0); CPU kiln ${median(pullKilnCpu).toFixed(2)}, skopeo ${median(pullSkopeoCpu).toFixed(2)}; peak RSS kiln ${(pullKilnRss / 1024).toFixed(0)} MiB`,
  );
  if (beforeBin) {
    const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
    console.log(`kiln before (${beforeBin}), same rounds:`);
    console.log(
      `  push: ${median(before.push).toFixed(2)} s, ratio before/skopeo ${ratio(before.push, skopeoTimes)}x (after ${ratio(kilnTimes, skopeoTimes)}x); CPU ${median(before.pushCpu).toFixed(2)}; peak RSS ${(before.pushRss / 1024).toFixed(0)} MiB (after ${(rss / 1024).toFixed(0)})`,
    );
    console.log(
      `  pull: ${median(before.pull).toFixed(2)} s, ratio before/skopeo ${ratio(before.pull, pullSkopeo)}x (after ${ratio(pullKiln, pullSkopeo)}x); CPU ${median(pullBeforeCpu).toFixed(2)}; peak RSS ${(pullBeforeRss / 1024).toFixed(0)} MiB (after ${(pullKilnRss / 1024).toFixed(0)})`,
    );
  }
  const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  console.log(
    `  pull runs: kiln ${runs(pullKiln)} (CPU ${runs(pullKilnCpu)}); skopeo ${runs(pullSkopeo)}${beforeBin ? `; before ${runs(before.pull)} (CPU ${runs(pullBeforeCpu)})` : ''}`,
  );
  console.log(`first push blob bytes uploaded: ${firstBytes}`);
  console.log(`second push: ${second.toFixed(2)} s, blob bytes uploaded: ${secondBytes} (target 0)`);
} finally {
  if (!keep) await fs.rm(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
