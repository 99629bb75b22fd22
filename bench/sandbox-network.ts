import { BubblewrapExecutor } from '../src/sandbox/bubblewrap.ts';
import type { RunSpec } from '../src/sandbox/executor.ts';
import { SandboxNetwork } from '../src/sandbox/network.ts';
import { makeHostRootfs } from '../test/helpers/sandbox-rootfs.ts';
import { opt } from './lib/args.ts';
import { childCpuMs, plainSpawn } from './lib/process-cost.ts';

const N = Number(opt('--n', '50'));
const ROUNDS = Number(opt('--rounds', '3'));
const hostUid = process.getuid?.() ?? 0;
if (hostUid !== 0) {
  console.log('sandbox-network: needs root (a root-owned network namespace); skipped');
  process.exit(0);
}
const fs = await makeHostRootfs();

interface Figure {
  wall: number;
  cpu: number;
}

async function measure(once: () => Promise<unknown>, n: number): Promise<Figure> {
  const cpu0 = childCpuMs();
  const own0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await once();
  const wall = Number(process.hrtime.bigint() - t0) / 1e6 / n;
  const own = process.cpuUsage(own0);
  return { wall, cpu: (childCpuMs() - cpu0 + (own.user + own.system) / 1000) / n };
}

const spec = (network: RunSpec['network']): RunSpec => ({
  argv: ['/bin/true'],
  env: { PATH: '/usr/bin:/bin' },
  cwd: '/workspace',
  uid: 1000,
  gid: 1000,
  rootfs: fs.rootfs,
  mounts: fs.mounts,
  network,
});
const bw = new BubblewrapExecutor({ hostUid });
const sandboxed = (network: RunSpec['network']) => async () => {
  const r = await bw.run(spec(network));
  if (r.exitCode !== 0)
    throw new Error(`bwrap (${typeof network === 'string' ? network : 'isolated'}): exit ${r.exitCode}`);
};

const net = await SandboxNetwork.create({ hostUid });
try {
  const cases: [string, () => Promise<void>][] = [
    ['plain spawn (no isolation)', plainSpawn],
    ['bwrap, no netns (network host)', sandboxed('host')],
    ['bwrap, network none (--unshare-net)', sandboxed('none')],
    ['bwrap, isolated (build netns + slirp4netns)', sandboxed(net.attachment)],
  ];
  const best = new Map<string, Figure>();
  for (const [, once] of cases) await once(); // warm up (page cache, first-exec costs)
  let setup: Figure | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, once] of cases) {
      const f = await measure(once, N);
      const prev = best.get(label);
      if (!prev || f.wall < prev.wall) best.set(label, f);
    }
    // Once per build: create the isolated network and tear it down again.
    const s = await measure(async () => {
      const n = await SandboxNetwork.create({ hostUid });
      await n.close();
    }, 5);
    if (!setup || s.wall < setup.wall) setup = s;
  }

  console.log(`sandbox start per process, ${N}x /bin/true, best of ${ROUNDS} rounds (interleaved)`);
  const plain = best.get(cases[0]![0])!;
  const noNetns = best.get(cases[1]![0])!;
  for (const [label] of cases) {
    const f = best.get(label)!;
    console.log(
      `${label.padEnd(46)} ${f.wall.toFixed(2).padStart(7)} ms wall ${f.cpu.toFixed(2).padStart(7)} ms CPU` +
        `  +${(f.wall - plain.wall).toFixed(2).padStart(6)} ms over plain  ${(f.wall / noNetns.wall).toFixed(2)}x bwrap-no-netns`,
    );
  }
  console.log(
    `${'isolated network setup + teardown (per build)'.padEnd(46)} ${setup!.wall.toFixed(2).padStart(7)} ms wall ${setup!.cpu.toFixed(2).padStart(7)} ms CPU`,
  );
  const isolated = best.get(cases[3]![0])!;
  const over = isolated.wall - plain.wall;
  console.log(
    `isolated over plain spawn: ${over.toFixed(2)} ms per process (target <= 40 ms: ${over <= 40 ? 'met' : 'MISSED'}); over bwrap without netns: ${(isolated.wall - noNetns.wall).toFixed(2)} ms`,
  );
} finally {
  await net.close();
  await fs.cleanup();
}
