// Layer creation benchmark: kiln's layer writer against
// `tar --sort=name -c | gzip -6` on the same ~500 MB tree of mixed files, kiln zstd-3 against
// kiln gzip-6, and kiln's peak RSS while writing a 1 GB layer (measured in a child process
// through getrusage maxRSS), and kiln's extractor against `zstd -dc | tar -x`.
// Run: `node bench/layers.ts [--size-mb 500] [--runs 3] [--only write|gzip|zstd,extract] [--no-rss]
// [--before DIR] [--tree DIR] [--keep]`. Peers run side by side in one run, in alternating
// rounds; figures are MB of uncompressed tar per second.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeLayer } from '../src/layers/layer-writer.ts';
import { walk } from '../src/layers/walk.ts';
import { BlobStore } from '../src/layout/blob-store.ts';
import { args, opt } from './lib/args.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);

/** Deterministic pseudo-random bytes (sha256 counter mode): incompressible, reproducible. */
function randomish(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++) {
    const h = createHash('sha256').update(`${seed}:${i}`).digest();
    off += h.copy(out, off);
  }
  return out;
}

const WORDS =
  'the quick brown fox jumps over a lazy dog while buildpacks turn source into images without daemons'.split(
    ' ',
  );
function text(n: number, seed: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  let x = seed;
  while (len < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const w = `${WORDS[x % WORDS.length]}${x % 13 === 0 ? '\n' : ' '}${x % 7 === 0 ? x.toString(36) : ''}`;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

async function makeTree(dir: string, totalMB: number): Promise<number> {
  const budget = totalMB * 1024 * 1024;
  let written = 0;
  // ~35% text (source-like), ~25% random (already compressed assets), ~40% real binaries.
  await fs.mkdir(path.join(dir, 'src'), { recursive: true });
  await fs.mkdir(path.join(dir, 'assets'), { recursive: true });
  await fs.mkdir(path.join(dir, 'lib'), { recursive: true });
  for (let i = 0; written < budget * 0.35; i++) {
    const n = 2048 + ((i * 7919) % 60000);
    const d = path.join(dir, 'src', `pkg${i % 97}`);
    await fs.mkdir(d, { recursive: true });
    await fs.writeFile(path.join(d, `file${i}.js`), text(n, i));
    written += n;
  }
  for (let i = 0; written < budget * 0.6; i++) {
    const n = 256 * 1024 + ((i * 104729) % (1 << 20));
    await fs.writeFile(path.join(dir, 'assets', `blob${i}.bin`), randomish(n, i));
    written += n;
  }
  const libs: string[] = [];
  for (const e of await fs.readdir('/usr/lib', { recursive: true, withFileTypes: true })) {
    if (e.isFile()) libs.push(path.join(e.parentPath, e.name));
  }
  libs.sort();
  for (let i = 0; written < budget && i < libs.length * 4; i++) {
    const src = libs[i % libs.length]!;
    const st = await fs.stat(src).catch(() => undefined);
    if (!st || st.size > 32 << 20) continue;
    const dest = path.join(dir, 'lib', `${i}-${path.basename(src)}`);
    await fs.copyFile(src, dest).catch(() => undefined);
    written += st.size;
  }
  return written;
}

type Row = { name: string; wall: number; cpu: number; out: number };

/** The parts of a checkout's src/ the bench runs (this one, or `--before DIR`). */
interface Impl {
  readonly tag: string;
  readonly mod: {
    BlobStore: typeof BlobStore;
    layerFromDirectory: typeof import('../src/layers/layer-writer.ts').layerFromDirectory;
    extract: typeof import('../src/layers/extract.ts').extract;
  };
}

async function loadImpl(root: string): Promise<Impl['mod']> {
  const src = path.resolve(root, 'src');
  const [w, x, b] = await Promise.all([
    import(path.join(src, 'layers/layer-writer.ts')),
    import(path.join(src, 'layers/extract.ts')),
    import(path.join(src, 'layout/blob-store.ts')),
  ]);
  return { layerFromDirectory: w.layerFromDirectory, extract: x.extract, BlobStore: b.BlobStore };
}

async function time<T>(fn: () => Promise<T>): Promise<{ s: number; v: T }> {
  const t = process.hrtime.bigint();
  const v = await fn();
  return { s: Number(process.hrtime.bigint() - t) / 1e9, v };
}

async function child(): Promise<void> {
  // Child mode: write one layer of the tree twice over (~2x the tree) and report peak RSS.
  const [dir, storeDir, compression] = [opt('--dir', ''), opt('--store', ''), opt('--compression', 'gzip')];
  const a = await walk(dir, { prefix: 'a', uid: 0, gid: 0 });
  const b = await walk(dir, { prefix: 'b', uid: 0, gid: 0 });
  const entries = [...a, ...b];
  const walkedRssMB = process.resourceUsage().maxRSS / 1024;
  const layer = await writeLayer(entries, {
    store: new BlobStore(storeDir),
    compression: compression as 'gzip' | 'zstd',
  });
  const maxRssMB = process.resourceUsage().maxRSS / 1024;
  console.log(
    JSON.stringify({
      maxRssMB,
      walkedRssMB,
      entries: entries.length,
      uncompressed: layer.uncompressedSize,
      size: await layer.size(),
    }),
  );
}

async function main(): Promise<void> {
  const sizeMB = Number(opt('--size-mb', '500'));
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-layers-'));
  // --tree DIR reuses a tree made by an earlier `--keep` run (it is not deleted).
  const tree = opt('--tree', '') || path.join(work, 'tree');
  try {
    if (!opt('--tree', '')) {
      const made = await time(() => makeTree(tree, sizeMB));
      console.log(
        `tree: ${(made.v / 1e6).toFixed(0)} MB of file content in ${made.s.toFixed(1)} s (${tree})`,
      );
    }
    // Warm the page cache so that the first contender is not penalised.
    await run('tar', ['-cf', '/dev/null', '-C', tree, '.']);

    // Side by side, interleaved: every round runs each contender once, in turn, so that load
    // from other work on this shared machine falls on all of them alike. Reported: the median
    // and best wall time, CPU seconds (all threads of kiln; tar + compressor for the peers),
    // and the median of each round's ratio (the steadiest figure under changing load).
    // `--before DIR` adds the same rows for another checkout's src/ (DIR/src/layers/...), run in
    // the same rounds: before and after side by side.
    const runs = Number(opt('--runs', '3'));
    const only = args.includes('--rss-only') ? [] : opt('--only', 'write,extract').split(',');
    const impls: Impl[] = [{ tag: '', mod: await loadImpl(path.join(import.meta.dirname, '..')) }];
    if (opt('--before', '')) impls.push({ tag: ' (before)', mod: await loadImpl(opt('--before', '')) });
    const rows = new Map<string, Row[]>();
    const add = (r: Row) => rows.set(r.name, [...(rows.get(r.name) ?? []), r]);
    const peer = async (name: string, cmd: string, out?: string) => {
      const t = await time(() =>
        run('/usr/bin/time', ['-f', '%U %S', 'bash', '-c', cmd], { maxBuffer: 1 << 20 }),
      );
      const [user, sys] = t.v.stderr.trim().split('\n').pop()!.split(' ').map(Number);
      add({ name, wall: t.s, cpu: user! + sys!, out: out ? (await fs.stat(out)).size / 1e6 : 0 });
    };
    const kiln = async (impl: Impl, compression: 'gzip' | 'zstd', level: number) => {
      const store = new impl.mod.BlobStore(path.join(work, 'store'));
      const c0 = process.cpuUsage();
      const t = await time(() =>
        impl.mod.layerFromDirectory(tree, { store, compression, level, uid: 0, gid: 0 }),
      );
      const c = process.cpuUsage(c0);
      const out = (await t.v.size()) / 1e6;
      add({
        name: `kiln ${compression}-${level}${impl.tag}`,
        wall: t.s,
        cpu: (c.user + c.system) / 1e6,
        out,
      });
      digests.add(
        `${compression}${impl.tag.replaceAll(' ', '')} ${await t.v.digest()} ${await t.v.diffID()}`,
      );
      await fs.rm(t.v.path);
      return t.v;
    };
    const digests = new Set<string>();
    let u = 0;
    let layerPath = '';
    const gzip = only.includes('write') || only.includes('gzip');
    const zstd = only.includes('write') || only.includes('zstd');
    for (let i = 0; i < (gzip || zstd ? runs : 0); i++) {
      if (gzip) {
        await peer(
          'tar --sort=name | gzip -6',
          `tar --sort=name -cf - -C ${tree} . | gzip -6 > ${work}/peer.tar.gz`,
          `${work}/peer.tar.gz`,
        );
        for (const impl of impls) u = (await kiln(impl, 'gzip', 6)).uncompressedSize! / 1e6;
      }
      if (zstd) {
        await peer(
          'tar --sort=name | zstd -3',
          `tar --sort=name -cf - -C ${tree} . | zstd -q -3 > ${work}/peer.tar.zst`,
          `${work}/peer.tar.zst`,
        );
        for (const impl of impls) u = (await kiln(impl, 'zstd', 3)).uncompressedSize! / 1e6;
      }
    }
    // Extraction (the sandbox unpacks build images with it): kiln extract vs `zstd -dc | tar -x`
    // of the same zstd layer.
    if (only.includes('extract')) {
      const store = new impls[0]!.mod.BlobStore(path.join(work, 'store'));
      const layer = await impls[0]!.mod.layerFromDirectory(tree, {
        store,
        compression: 'zstd',
        level: 3,
        uid: 0,
        gid: 0,
      });
      u = layer.uncompressedSize! / 1e6;
      layerPath = layer.path;
      for (let i = 0; i < runs; i++) {
        const out = path.join(work, 'x-out');
        await peer('zstd -dc | tar -x', `mkdir ${out} && zstd -dc ${layerPath} | tar -x -C ${out}`);
        await fs.rm(out, { recursive: true, force: true });
        for (const impl of impls) {
          const c0 = process.cpuUsage();
          const k = await time(async () => impl.mod.extract(await layer.compressed(), out));
          const c = process.cpuUsage(c0);
          add({ name: `kiln extract${impl.tag}`, wall: k.s, cpu: (c.user + c.system) / 1e6, out: 0 });
          await fs.rm(out, { recursive: true, force: true });
        }
      }
    }
    if (rows.size > 0)
      console.log(
        `\nlayer of ${u.toFixed(0)} MB uncompressed tar (${os.cpus().length} cores, node ${process.version}, ${runs} alternating rounds, load ${os.loadavg()[0]!.toFixed(1)})`,
      );
    for (const [name, rs] of rows) {
      const w = median(rs.map((r) => r.wall));
      console.log(
        `  ${name.padEnd(30)} wall median ${w.toFixed(2).padStart(6)} s ${(u / w).toFixed(1).padStart(6)} MB/s (best ${Math.min(...rs.map((r) => r.wall)).toFixed(2)} s)   cpu ${median(
          rs.map((r) => r.cpu),
        )
          .toFixed(2)
          .padStart(6)} s${rs[0]!.out ? `  -> ${rs[0]!.out.toFixed(1)} MB` : ''}`,
      );
    }
    // kiln/peer throughput ratio: per round, then the median; and of the medians.
    const ratio = (peerName: string, kilnName: string, target: string) => {
      const p = rows.get(peerName);
      const k = rows.get(kilnName);
      if (!p || !k) return;
      const perRound = median(k.map((r, i) => p[i]!.wall / r.wall));
      const med = median(p.map((r) => r.wall)) / median(k.map((r) => r.wall));
      const cpu = median(p.map((r) => r.cpu)) / median(k.map((r) => r.cpu));
      console.log(
        `  ${kilnName} vs ${peerName}: ${perRound.toFixed(2)}x (median of rounds), ${med.toFixed(2)}x (of medians), cpu ${cpu.toFixed(2)}x (target >= ${target})`,
      );
    };
    for (const { tag } of impls) {
      ratio('tar --sort=name | gzip -6', `kiln gzip-6${tag}`, '0.9');
      ratio('tar --sort=name | zstd -3', `kiln zstd-3${tag}`, '0.8');
      ratio('zstd -dc | tar -x', `kiln extract${tag}`, '0.9');
    }
    // Every round of an implementation writes the same bytes (one digest per compression and
    // implementation), and every implementation the same tar (one diffID per compression). The
    // compressed bytes may differ between implementations (another zlib, another writer).
    const kinds = [...digests].map((d) => d.split(' ')[0]);
    const tars = new Set(
      [...digests].map((d) => `${d.split(' ')[0]!.replace(/\(.*$/, '')} ${d.split(' ')[2]}`),
    );
    const tarKinds = [...tars].map((t) => t.split(' ')[0]);
    if (digests.size > 0)
      console.log(
        `  digests: ${new Set(kinds).size === kinds.length && new Set(tarKinds).size === tarKinds.length ? 'same in every round; same tar for every implementation' : `DIFFER: ${[...digests].join(', ')}`}`,
      );
    await fs.rm(path.join(work, 'store'), { recursive: true, force: true });
    await fs.rm(`${work}/peer.tar.gz`, { force: true });
    await fs.rm(`${work}/peer.tar.zst`, { force: true });

    // Node flags as bin/kiln passes them (a small young generation keeps the garbage of a
    // streaming pass from inflating RSS), and Node's defaults for comparison.
    for (const flags of args.includes('--no-rss') ? [] : [['--max-semi-space-size=2'], []]) {
      const rss = await time(
        () =>
          new Promise<string>((resolve, reject) => {
            const p = spawn(
              process.execPath,
              [
                ...flags,
                import.meta.filename,
                '--child',
                '--dir',
                tree,
                '--store',
                path.join(work, 'store-rss'),
                '--compression',
                opt('--rss-compression', 'zstd'),
              ],
              { stdio: ['ignore', 'pipe', 'inherit'] },
            );
            let out = '';
            p.stdout.on('data', (d) => {
              out += d;
            });
            p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}`))));
          }),
      );
      await fs.rm(path.join(work, 'store-rss'), { recursive: true, force: true });
      const r = JSON.parse(rss.v) as {
        maxRssMB: number;
        walkedRssMB: number;
        entries: number;
        uncompressed: number;
      };
      console.log(
        `${flags.length ? '\n' : ''}peak RSS writing a ${(r.uncompressed / 1e9).toFixed(2)} GB layer (${opt('--rss-compression', 'zstd')}, node ${flags.join(' ') || 'defaults'}): ${r.maxRssMB.toFixed(0)} MB (target < 200 MB; ${r.walkedRssMB.toFixed(0)} MB after walking ${r.entries} entries), ${rss.s.toFixed(1)} s`,
      );
    }
  } finally {
    if (!args.includes('--keep')) await fs.rm(work, { recursive: true, force: true });
  }
}

if (args.includes('--child')) await child();
else await main();
