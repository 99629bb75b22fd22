// Sandbox start cost per process (target: <= 30 ms per buildpack process).
// 50x /bin/true, side by side in one run:
//   plain spawn            node's child_process, no isolation (the floor)
//   HostExecutor           same env discipline, no namespaces
//   BubblewrapExecutor     the default sandbox: prlimit + setpriv (as root) + bwrap with all namespaces
//   BubblewrapExecutor     with --unshare-net (network none)
//   BubblewrapExecutor     network none without the limits' cgroup, gate and disk watch
//   BubblewrapExecutor     network none without the neutral view (host paths visible in mountinfo)
//   BubblewrapExecutor     network none without the seccomp filter (its cost, side by side)
// plus a system-call-heavy run (dd, 1 byte per read/write) with and without the filter.
// Usage: node bench/sandbox.ts [N]
import { spawn } from 'node:child_process';
import { BubblewrapExecutor } from '../src/sandbox/bubblewrap.ts';
import type { Executor, RunSpec } from '../src/sandbox/executor.ts';
import { HostExecutor } from '../src/sandbox/host.ts';
import { DEFAULT_INIT } from '../src/sandbox/sandbox-init.ts';
import { DEFAULT_SECCOMP_FILTER, SECCOMP_FD } from '../src/sandbox/seccomp.ts';
import { makeHostRootfs } from '../test/helpers/sandbox-rootfs.ts';
import { childCpuMs, plainSpawn } from './lib/process-cost.ts';

const N = Number(process.argv[2] ?? 50);
const hostUid = process.getuid?.() ?? 0;
const fs = await makeHostRootfs();

function report(label: string, wallMs: number, cpuMs: number): void {
  console.log(
    `${label.padEnd(44)} ${(wallMs / N).toFixed(2).padStart(7)} ms wall ${(cpuMs / N).toFixed(2).padStart(7)} ms CPU per process`,
  );
}

async function time(label: string, once: () => Promise<unknown>): Promise<number> {
  await once(); // warm up (page cache, first-exec costs)
  const cpu0 = childCpuMs();
  const own0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await once();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const own = process.cpuUsage(own0);
  report(label, ms, childCpuMs() - cpu0 + (own.user + own.system) / 1000);
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
  // The filter and kiln-init go in on the fds the executor would hand them through (4, then 5).
  const loop = `for i in $(seq ${N}); do ${drop}${quoted.join(' ')} ${SECCOMP_FD}<'${DEFAULT_SECCOMP_FILTER}' ${SECCOMP_FD + 1}<'${DEFAULT_INIT}' || exit 1; done`;
  const cpu0 = childCpuMs();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('/bin/sh', ['-c', loop], { stdio: 'inherit' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap loop exited ${code}`))));
  });
  report(
    'bwrap from a shell loop (peer, no node)',
    Number(process.hrtime.bigint() - t0) / 1e6,
    childCpuMs() - cpu0,
  );
  const shared = await time('BubblewrapExecutor, network host', run(bw, spec('host')));
  const none = await time('BubblewrapExecutor, network none', run(bw, spec('none')));
  // The same without the per-run memory/pids cgroup and disk watch (what the limits cost).
  const unguarded = {
    limits: { memoryBytes: undefined, diskBytes: undefined, diskReserveBytes: undefined },
  } as unknown as Partial<RunSpec>;
  const bare = await time(
    'BubblewrapExecutor, none, no cgroup/disk watch',
    run(bw, { ...spec('none'), ...unguarded }),
  );
  console.log(`limits (cgroup + gate + disk watch) cost: ${(none - bare).toFixed(2)} ms per process`);
  // The neutral view (mount-view.ts: overlay roots, bwrap options through --args) side by side.
  const plainView = new BubblewrapExecutor({ hostUid, neutralView: false });
  const noView = await time(
    'BubblewrapExecutor, network none, no neutral view',
    run(plainView, spec('none')),
  );
  console.log(`neutral view (no host paths in mountinfo): +${(none - noView).toFixed(2)} ms per process`);
  const noFilter = await time(
    'BubblewrapExecutor, network none, no seccomp',
    run(new BubblewrapExecutor({ hostUid, seccomp: false }), spec('none')),
  );
  console.log(
    `sandbox overhead over plain spawn: ${(shared - plain).toFixed(2)} ms (host net), ${(none - plain).toFixed(2)} ms (no net); target <= 30 ms per process`,
  );
  console.log(`seccomp filter start cost: ${(none - noFilter).toFixed(2)} ms per process`);
  // 2 x 1M system calls each, interleaved, best of 7 (other work shares the cores): what the
  // filter costs a syscall-bound process.
  const dd = { ...spec('none'), argv: ['/bin/dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1', 'count=1000000'] };
  const ddRuns = [
    { label: 'dd 2M syscalls, seccomp', e: bw, best: Infinity },
    {
      label: 'dd 2M syscalls, no seccomp',
      e: new BubblewrapExecutor({ hostUid, seccomp: false }),
      best: Infinity,
    },
  ];
  for (let i = 0; i < 7; i++) {
    for (const r of ddRuns) {
      const t0 = process.hrtime.bigint();
      await run(r.e, dd)();
      r.best = Math.min(r.best, Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  for (const r of ddRuns)
    console.log(`${r.label.padEnd(44)} ${r.best.toFixed(1).padStart(7)} ms (best of 7)`);
  const [withF, withoutF] = ddRuns.map((r) => r.best) as [number, number];
  console.log(`seccomp cost per system call: ${(((withF - withoutF) / 2e6) * 1e6).toFixed(0)} ns`);
} finally {
  await fs.cleanup();
}
