// Stack benchmark: kiln's run and build images from cached packages, the
// no-op `stack create --locked`, and mmdebstrap making the same package sets, side by side.
// Targets: run image <= 5 s, build image <= 60 s, no-op <= 1 s, no slower than mmdebstrap.
//
//   node bench/stack.ts [--rounds 1] [--skip-build] [--skip-mmdebstrap] [--xz process|wasm]
//
// Every kiln figure is a whole CLI process (`kiln stack create --locked --force --only ROLE
// --output oci:TMP`) with the .debs already in ~/.cache/kiln/debs. mmdebstrap gets the same
// .debs pre-seeded into its apt cache (so neither side downloads) and writes a tar:
//   run   = --variant=extract --include=<the run lock's packages> (no maintainer scripts)
//   build = --variant=custom  --include=<the build lock's packages> + merged-/usr hook (dpkg runs
//           every maintainer script, as kiln does)
// Also measured: xz decoding of the largest .deb's data member by `xz -dc` vs xz-decompress
// (wasm), the choice behind src/debian/decompress.ts.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { extractDebData } from '../src/debian/deb.ts';
import { readAptSources } from '../src/debian/sources.ts';
import { fetchPackages, mirrorsOf } from '../src/stack/archive-access.ts';
import { readStackConfig } from '../src/stack/config.ts';
import type { LockedPackage } from '../src/stack/lock.ts';
import { readLock } from '../src/stack/lock.ts';
import { args, opt } from './lib/args.ts';
import { median } from './lib/stats.ts';

const rounds = Number(opt('--rounds', '1'));
const root = path.resolve(import.meta.dirname, '..');
const kilnBin = path.join(root, 'bin', 'kiln');
const stackFile = path.join(root, 'stacks/bookworm/stack.toml');
const cacheDir = path.join(os.homedir(), '.cache', 'kiln');

// CPU seconds (user + sys, children included) of the last timed() command: on a shared machine
// the wall time says more about the neighbours than about kiln, the CPU time does not.
let lastCpu = 0;
const hasTime = await fs.access('/usr/bin/time').then(
  () => true,
  () => false,
);

async function timed(cmd: string, argv: string[], env: Record<string, string> = {}): Promise<number> {
  const t = performance.now();
  const cpuFile = path.join(os.tmpdir(), `kiln-bench-cpu-${process.pid}`);
  await new Promise<void>((resolve, reject) => {
    const [bin, argv2] = hasTime
      ? ['/usr/bin/time', ['-f', '%U %S', '-o', cpuFile, cmd, ...argv]]
      : [cmd, argv];
    const child = spawn(bin, argv2, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.length > 20000) err = err.slice(-10000);
    });
    child.on('close', (c) =>
      c === 0 ? resolve() : reject(new Error(`${cmd} ${argv.join(' ')} exited ${c}:\n${err.slice(-3000)}`)),
    );
  });
  const [u, sys] = hasTime
    ? (await fs.readFile(cpuFile, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number)
    : [Number.NaN, 0];
  lastCpu = (u ?? 0) + (sys ?? 0);
  await fs.rm(cpuFile, { force: true });
  return (performance.now() - t) / 1000;
}

const cpu = () => `cpu ${lastCpu.toFixed(2)} s`;

async function sizeOf(dir: string, tag: string): Promise<string> {
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
  const d = index.manifests.find(
    (m: { annotations?: Record<string, string> }) =>
      m.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  const m = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', d.digest.slice(7)), 'utf8'));
  const bytes = m.layers.reduce((a: number, l: { size: number }) => a + l.size, 0);
  return `${(bytes / 1e6).toFixed(1)} MB compressed`;
}

/** seedAptCache links the locked .debs under apt's file names (epoch ':' is '%3a') into a dir. */
async function seedAptCache(pkgs: readonly LockedPackage[], dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const p of pkgs) {
    const name = `${p.name}_${p.version.replace(':', '%3a')}_${p.arch}.deb`;
    await fs.copyFile(path.join(cacheDir, 'debs', `${p.sha256}.deb`), path.join(dir, name));
  }
}

async function main(): Promise<void> {
  const config = await readStackConfig(stackFile);
  const lock = await readLock(path.join(root, 'stacks/bookworm/stack.lock'));
  if (!lock) throw new Error('stacks/bookworm/stack.lock missing');
  const mirrors = mirrorsOf(config, { apt: await readAptSources() });
  // Make sure every .deb is cached ("from cached packages").
  await fetchPackages([...lock.run.packages, ...lock.build.packages], {
    mirrors,
    keyring: config.archive.keyring,
    cacheDir,
  });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-stack-'));
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    console.log(s);
  };
  /**
   * mmdebstrap times the peer building `name`'s rootfs tar from the same locked packages, their
   * .debs seeded into apt's cache as kiln's are cached: `rounds` times with `options`; it gives
   * the times and the tar's size.
   */
  const mmdebstrap = async (
    name: string,
    packages: readonly LockedPackage[],
    options: readonly string[],
  ): Promise<{ seconds: number[]; bytes: number }> => {
    const apt = path.join(work, `apt-${name}`);
    await seedAptCache(packages, apt);
    const mirror = mirrors.get('bookworm')!;
    const sec = mirrors.get('bookworm-security')!;
    const tar = path.join(work, `mm-${name}.tar`);
    const seconds: number[] = [];
    for (let i = 0; i < rounds; i++) {
      seconds.push(
        await timed(
          'mmdebstrap',
          [
            '--quiet',
            ...options,
            `--include=${packages.map((p) => p.name).join(',')}`,
            `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp ${apt}/*.deb "$1/var/cache/apt/archives/"`,
            'bookworm',
            tar,
            `deb ${mirror} bookworm bookworm-updates main`,
            `deb ${sec} bookworm-security main`,
          ],
          { SOURCE_DATE_EPOCH: '315532801' },
        ),
      );
    }
    return { seconds, bytes: (await fs.stat(tar)).size };
  };
  say(
    `# kiln stack bench (${os.cpus().length} cores, load ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')})`,
  );
  try {
    // xz decoders on the largest data member of the build set.
    const biggest = [...lock.build.packages].sort((a, b) => b.size - a.size)[0]!;
    for (const xz of ['process', 'wasm'] as const) {
      const d = await fs.mkdtemp(path.join(work, 'xz-'));
      const t = performance.now();
      const r = await extractDebData(path.join(cacheDir, 'debs', `${biggest.sha256}.deb`), d, { xz });
      const s = (performance.now() - t) / 1000;
      say(
        `xz ${xz.padEnd(7)} ${biggest.name}: ${s.toFixed(2)} s (${(r.bytes / 1e6 / s).toFixed(0)} MB/s out)`,
      );
      await fs.rm(d, { recursive: true, force: true });
    }

    const out = path.join(work, 'out');
    const kiln = (role: string, force: boolean) =>
      timed(
        kilnBin,
        [
          'stack',
          'create',
          '--locked',
          '--only',
          role,
          '--output',
          `oci:${out}`,
          ...(force ? ['--force'] : []),
        ],
        {
          KILN_HOME: '',
          XDG_CACHE_HOME: path.dirname(cacheDir),
        },
      );
    const runT: number[] = [];
    for (let i = 0; i < rounds; i++) runT.push(await kiln('run', true));
    say(
      `kiln run image (cached .debs):   ${median(runT).toFixed(2)} s, ${cpu()}  [${await sizeOf(out, 'run')}]  target <= 5 s`,
    );
    const noop: number[] = [];
    for (let i = 0; i < Math.max(3, rounds); i++) noop.push(await kiln('run', false));
    say(
      `kiln no-op create --locked:      ${median(noop).toFixed(2)} s, ${cpu()}  (whole CLI process)  target <= 1 s`,
    );

    let mmRun: number | undefined;
    if (!args.includes('--skip-mmdebstrap')) {
      const mm = await mmdebstrap('run', lock.run.packages, ['--variant=extract', '--skip=output/dev']);
      mmRun = median(mm.seconds);
      say(
        `mmdebstrap run (extract):        ${mmRun.toFixed(2)} s, ${cpu()}  [${(mm.bytes / 1e6).toFixed(1)} MB tar]  kiln/mmdebstrap = ${(median(runT) / mmRun).toFixed(2)}`,
      );
    }

    if (!args.includes('--skip-build')) {
      const buildT: number[] = [];
      for (let i = 0; i < rounds; i++) buildT.push(await kiln('build', true));
      say(
        `kiln build image (cached .debs): ${median(buildT).toFixed(2)} s, ${cpu()}  [${await sizeOf(out, 'build')}]  target <= 60 s`,
      );
      if (!args.includes('--skip-mmdebstrap')) {
        const mm = await mmdebstrap('build', lock.build.packages, [
          '--variant=custom',
          '--mode=root',
          '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr',
        ]);
        say(
          `mmdebstrap build (custom):       ${median(mm.seconds).toFixed(2)} s, ${cpu()}  [${(mm.bytes / 1e6).toFixed(1)} MB tar, uncompressed]  kiln/mmdebstrap = ${(median(buildT) / median(mm.seconds)).toFixed(2)}`,
        );
      }
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
