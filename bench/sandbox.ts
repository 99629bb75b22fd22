// Sandbox start cost per process (issue 4 target: <= 30 ms per buildpack process).
// 50x /bin/true, side by side in one run:
//   plain spawn            node's child_process, no isolation (the floor)
//   HostExecutor           same env discipline, no namespaces
//   BubblewrapExecutor     the default sandbox: prlimit + setpriv (as root) + bwrap with all namespaces
//   BubblewrapExecutor     with --unshare-net (network none)
// Usage: node bench/sandbox.ts [N]
import { spawn } from 'node:child_process';
import { BubblewrapExecutor } from '../src/sandbox/bubblewrap.ts';
import type { Executor, RunSpec } from '../src/sandbox/executor.ts';
import { HostExecutor } from '../src/sandbox/host.ts';
import { makeHostRootfs } from '../test/helpers/sandbox-rootfs.ts';

const N = Number(process.argv[2] ?? 50);
const hostUid = process.getuid?.() ?? 0;
const fs = await makeHostRootfs();

function plainSpawn(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: 'ignore', env: {} });
    c.on('error', reject);
    c.on('exit', () => resolve());
  });
}

async function time(label: string, once: () => Promise<unknown>): Promise<number> {
  await once(); // warm up (page cache, first-exec costs)
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await once();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(
    `${label.padEnd(44)} ${(ms / N).toFixed(2).padStart(7)} ms/process   (${N}x in ${ms.toFixed(0)} ms)`,
  );
  return ms / N;
}

const spec = (network: 'none' | 'host'): RunSpec => ({
  argv: ['/bin/true'],
  env: { PATH: '/usr/bin:/bin' },
  cwd: '/workspace',
  uid: 1000,
  gid: 1000,
  rootfs: fs.rootfs,
  mounts: fs.mounts,
  network,
});
const run = (e: Executor, s: RunSpec) => async () => {
  const r = await e.run(s);
  if (r.exitCode !== 0) throw new Error(`${e.name}: exit ${r.exitCode}`);
};

try {
  console.log(`sandbox start cost, ${N}x /bin/true (host uid ${hostUid})`);
  const plain = await time('plain spawn (no isolation)', plainSpawn);
  const hostSpec = { ...spec('host'), rootfs: '/', mounts: [], cwd: '/' };
  await time(
    'HostExecutor',
    run(new HostExecutor({ hostUid }), { ...hostSpec, uid: hostUid === 0 ? 1000 : hostUid }),
  );
  const bw = new BubblewrapExecutor({ hostUid });
  // Peer figure: the same bwrap command line run N times by a shell loop (no node, no prlimit).
  const cmd = bw.commandFor(spec('none'));
  const bwrapArgs =
    cmd.file === 'prlimit' ? cmd.args.slice(cmd.args.indexOf('--') + 1) : [cmd.file, ...cmd.args];
  const quoted = bwrapArgs
    .filter((a, i, all) => !(a === '--info-fd' || all[i - 1] === '--info-fd'))
    .map((a) => `'${a}'`);
  const drop = hostUid === 0 ? 'setpriv --reuid=1000 --regid=1000 --clear-groups ' : '';
  const loop = `for i in $(seq ${N}); do ${drop}${quoted.join(' ')} || exit 1; done`;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('/bin/sh', ['-c', loop], { stdio: 'inherit' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap loop exited ${code}`))));
  });
  const raw = Number(process.hrtime.bigint() - t0) / 1e6 / N;
  console.log(
    `${'bwrap from a shell loop (peer, no node)'.padEnd(44)} ${raw.toFixed(2).padStart(7)} ms/process`,
  );
  const shared = await time('BubblewrapExecutor, network host', run(bw, spec('host')));
  const none = await time('BubblewrapExecutor, network none', run(bw, spec('none')));
  console.log(
    `sandbox overhead over plain spawn: ${(shared - plain).toFixed(2)} ms (host net), ${(none - plain).toFixed(2)} ms (no net); target <= 30 ms per process`,
  );
} finally {
  await fs.cleanup();
}
