// Multi-arch builds, side by side in one run: an amd64-only `kiln build` of a Procfile app whose
// static server is prebuilt per architecture, by this checkout and by a baseline checkout
// (`--baseline DIR`, e.g. main unpacked with `git archive` and bootstrapped), cold (fresh cache and
// name) and warm (the same build again), alternating rounds; then this checkout's emulated arm64
// build and the two-platform build of the same app (cold and warm), and the share of the
// two-platform build spent on the emulated platform. The builder is an index (amd64 + arm64) over
// the small stack of test/e2e/multiarch.test.ts, made once under the test cache.
//
//   node bench/multiarch.ts --baseline /var/tmp/main-kiln [--rounds 3]
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { opt } from './lib/args.ts';
import { median } from './lib/stats.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const baseline = opt('--baseline', '');
const rounds = Number(opt('--rounds', '3'));
if (!baseline) throw new Error('--baseline DIR: a bootstrapped kiln checkout to compare with (e.g. main)');

const STACK = execFileSync(
  'sed',
  ['-n', '/^const STACK = `/,/^`;/p', path.join(ROOT, 'test/e2e/multiarch.test.ts')],
  {
    encoding: 'utf8',
  },
)
  .replace(/^const STACK = `/, '')
  .replace(/`;\s*$/, '');
const cache = process.env.KILN_TEST_CACHE_DIR || path.join(homedir(), '.cache', 'kiln');
const stackDir = path.join(
  cache,
  'multiarch-stack',
  createHash('sha256').update(STACK).digest('hex').slice(0, 16),
);
const work = mkdtempSync(path.join(tmpdir(), 'kiln-bench-multiarch-'));
const home = path.join(work, 'home');

function kiln(bin: string, args: string[]): number {
  const t = performance.now();
  const r = spawnSync(path.join(bin, 'bin', 'kiln'), args, {
    env: { ...process.env, KILN_HOME: home, CI: '1', NO_COLOR: '1' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${bin} kiln ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return (performance.now() - t) / 1000;
}

try {
  mkdirSync(stackDir, { recursive: true });
  writeFileSync(path.join(stackDir, 'stack.toml'), STACK);
  kiln(ROOT, [
    'stack',
    'create',
    '--config',
    path.join(stackDir, 'stack.toml'),
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${stackDir}/oci`,
  ]);
  const app = path.join(work, 'app');
  cpSync(path.join(ROOT, 'samples', 'static-binary'), app, { recursive: true });
  for (const [arch, cc] of [
    ['amd64', 'musl-gcc'],
    ['arm64', 'aarch64-linux-musl-gcc'],
  ]) {
    mkdirSync(path.join(app, 'bin', arch!), { recursive: true });
    execFileSync(cc!, [
      '-static',
      '-Os',
      '-s',
      '-o',
      path.join(app, 'bin', arch!, 'hello-server'),
      path.join(app, 'hello.c'),
    ]);
  }
  writeFileSync(
    path.join(work, 'builder.toml'),
    `[[buildpacks]]\nuri = "${path.join(ROOT, 'test/e2e/multiarch/static-arch')}"\n[[order]]\n[[order.group]]\nid = "test/static-arch"\n` +
      `[build]\nimage = "oci:${stackDir}/oci:build"\n[[run.images]]\nimage = "oci:${stackDir}/oci:run"\n`,
  );
  kiln(ROOT, [
    'builder',
    'create',
    '--config',
    path.join(work, 'builder.toml'),
    '--platform',
    'linux/amd64,linux/arm64',
    '--output',
    `oci:${work}/builder:b`,
  ]);
  const build = (bin: string, name: string, extra: string[] = []) =>
    kiln(bin, [
      'build',
      `oci:${work}/out:${name}`,
      '--path',
      app,
      '--builder',
      `oci:${work}/builder:b`,
      '--network',
      'none',
      ...extra,
    ]);

  const t: Record<string, number[]> = {};
  const rec = (k: string, v: number) => {
    t[k] ??= [];
    t[k].push(v);
  };
  const load0 = loadavg()[0]!;
  build(ROOT, 'warmup');
  build(baseline, 'warmup-base');
  for (let r = 0; r < rounds; r++) {
    // Alternating which goes first, so neither always meets the other's page cache.
    const order =
      r % 2 === 0
        ? [
            ['this', ROOT],
            ['baseline', baseline],
          ]
        : [
            ['baseline', baseline],
            ['this', ROOT],
          ];
    for (const [who, bin] of order) {
      rec(`${who} amd64 cold`, build(bin!, `${who}-${r}`));
      rec(`${who} amd64 warm`, build(bin!, `${who}-${r}`));
    }
    rec('arm64 cold (emulated)', build(ROOT, `arm-${r}`, ['--platform', 'linux/arm64']));
    rec('arm64 warm (emulated)', build(ROOT, `arm-${r}`, ['--platform', 'linux/arm64']));
    rec('both cold', build(ROOT, `both-${r}`, ['--platform', 'linux/amd64,linux/arm64']));
    rec('both warm', build(ROOT, `both-${r}`, ['--platform', 'linux/amd64,linux/arm64']));
  }
  const m = (k: string) => median(t[k]!);
  const rows = Object.keys(t).map(
    (k) => `| ${k} | ${m(k).toFixed(2)} s | ${t[k]!.map((x) => x.toFixed(2)).join(', ')} |`,
  );
  console.log(
    `load average ${load0.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at end; ${rounds} rounds, medians`,
  );
  console.log('| build | median | rounds |\n| --- | --- | --- |');
  console.log(rows.join('\n'));
  console.log(
    `amd64 cold this/baseline: ${(m('this amd64 cold') / m('baseline amd64 cold')).toFixed(2)}x (target <= 1.0x within noise)`,
  );
  console.log(
    `amd64 warm this/baseline: ${(m('this amd64 warm') / m('baseline amd64 warm')).toFixed(2)}x (target <= 1.0x within noise)`,
  );
  console.log(
    `arm64 (emulated) / amd64 (native), this checkout: cold ${(m('arm64 cold (emulated)') / m('this amd64 cold')).toFixed(2)}x, warm ${(m('arm64 warm (emulated)') / m('this amd64 warm')).toFixed(2)}x`,
  );
  const share = m('arm64 cold (emulated)') / (m('arm64 cold (emulated)') + m('this amd64 cold'));
  console.log(
    `share of a cold two-platform build spent on the emulated platform: ~${(share * 100).toFixed(0)}%`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
