// The seccomp filter (src/sandbox/seccomp/filter.c, dist/seccomp/default.bpf) in real bubblewrap
// sandboxes: a static probe tries every denied system call and must see EPERM (clone3: ENOSYS);
// other ABIs kill the process; ordinary workloads (node with worker threads, npm, python threads,
// bash, gcc) still work; the build step is reproducible; a missing filter refuses to start.
// Controls run the same probes with the filter switched off, so no assertion passes by accident.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KilnError } from '../../src/internal/errors.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { RunSpec } from '../../src/sandbox/executor.ts';
import { DEFAULT_SECCOMP_FILTER, SECCOMP_FD, seccompFilterOf } from '../../src/sandbox/seccomp.ts';
import { makeFixture } from '../conformance/harness.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const execFileP = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const hostUid = process.getuid?.() ?? 0;
const EPERM = 1;
const ENOSYS = 38;

// The calls the deny list must cover (SECURITY.md, seccomp) and Docker's default profile denies; the probe must report each one, so a
// probe that skips a call fails the test instead of shrinking it.
const REQUIRED = [
  'ptrace',
  'ptrace_attach_pid1',
  'process_vm_readv',
  'process_vm_writev',
  'kexec_load',
  'kexec_file_load',
  'bpf',
  'perf_event_open',
  'keyctl',
  'add_key',
  'request_key',
  'userfaultfd',
  'mount',
  'umount2',
  'unshare',
  'setns',
  'open_by_handle_at',
  'name_to_handle_at',
  'init_module',
  'finit_module',
  'delete_module',
  'pivot_root',
  'swapon',
  'swapoff',
  'reboot',
  'acct',
  'settimeofday',
  'clock_settime',
  'clock_adjtime',
  'adjtimex',
  'quotactl',
  'syslog',
  'lookup_dcookie',
  'nfsservctl',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  'kcmp',
  'pidfd_getfd',
  'personality_addr_no_randomize',
  'personality_read_implies_exec',
  'personality_high',
  'clone_newuser',
  'clone_newns',
  'clone_newpid',
  'clone_newnet',
  'clone_newipc',
  'clone_newuts',
  'clone_newcgroup',
  'ioctl_tiocsti',
  'ioctl_tiocsti_high',
  'socket_vsock',
  'unreviewed_statmount',
  ...(process.arch === 'x64' ? ['iopl', 'ioperm', 'uselib', 'modify_ldt'] : []),
];

describe('seccomp filter in the bubblewrap sandbox', {
  skip: hostUid !== 0 && 'needs root to run sandboxes as uid 1000',
}, () => {
  let fs: HostRootfs;
  const filtered = new BubblewrapExecutor({ hostUid });
  const unfiltered = new BubblewrapExecutor({ hostUid, seccomp: false });

  before(async () => {
    // The filter under test is the build step's output.
    await execFileP('bash', [path.join(root, 'scripts/build.d/seccomp.sh')]);
    fs = await makeHostRootfs();
    const probe = path.join(fs.workspace, 'probe');
    await execFileP('musl-gcc', [
      '-static',
      '-O2',
      '-o',
      probe,
      path.join(root, 'test/sandbox/seccomp-probe.c'),
    ]);
    await chmod(probe, 0o755);
  });
  after(() => fs.cleanup());

  const spec = (argv: string[], over: Partial<RunSpec> = {}): RunSpec => ({
    argv,
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', npm_config_update_notifier: 'false' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    rootfs: fs.rootfs,
    mounts: fs.mounts,
    network: 'none',
    timeoutMs: 30_000,
    graceMs: 1000,
    ...over,
  });
  async function run(exec: BubblewrapExecutor, argv: string[], over: Partial<RunSpec> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const r = await exec.run(spec(argv, { stdout: (l) => out.push(l), stderr: (l) => err.push(l), ...over }));
    return { ...r, out, err };
  }
  async function probeCalls(exec: BubblewrapExecutor, mode: string): Promise<Map<string, number>> {
    const r = await run(exec, ['/workspace/probe', mode]);
    assert.equal(r.exitCode, 0, r.err.join('\n'));
    assert.equal(r.timedOut, false, 'the sandbox ran to its end');
    return new Map(r.out.map((l) => l.split(' ') as [string, string]).map(([k, v]) => [k, Number(v)]));
  }

  test('every denied system call fails with EPERM, clone3 with ENOSYS; allowed calls still work', async () => {
    const got = await probeCalls(filtered, 'calls');
    for (const name of REQUIRED) assert.ok(got.has(name), `the probe reported ${name}`);
    const wrong: string[] = [];
    for (const [name, errno] of got) {
      if (name.startsWith('ok_')) {
        if (errno === EPERM) wrong.push(`${name}: EPERM, expected allowed`);
      } else if (name === 'clone3' || name.startsWith('unreviewed_')) {
        if (errno !== ENOSYS) wrong.push(`${name}: errno ${errno}, expected ENOSYS`);
      } else if (errno !== EPERM) {
        wrong.push(`${name}: errno ${errno}, expected EPERM`);
      }
    }
    assert.deepEqual(wrong, []);
    assert.equal(got.get('ok_fork'), 0, 'a plain fork (clone without namespace flags) works');
    assert.equal(got.get('ok_personality_query'), 0);
    assert.equal(got.get('ok_socket_unix'), 0);
  });

  test('control: without the filter the same probes get through', async () => {
    // ptrace is left out: unfiltered, it stops the sandbox's pid 1 (the sandbox then hangs instead of failing).
    const got = await probeCalls(unfiltered, 'calls-without-ptrace');
    assert.equal(got.get('process_vm_readv'), 0);
    assert.equal(got.get('unshare'), 0, 'unshare(0) is a no-op that succeeds');
    assert.equal(got.get('personality_addr_no_randomize'), 0, 'turning ASLR off works unfiltered');
    assert.notEqual(got.get('clone3'), ENOSYS);
    // statmount exists since Linux 6.8: unfiltered, a bad pointer is EFAULT, not ENOSYS.
    const [major = 0, minor = 0] = (/^(\d+)\.(\d+)/.exec(release()) ?? []).slice(1).map(Number);
    if (major * 1000 + minor >= 6008) {
      assert.notEqual(got.get('unreviewed_statmount'), ENOSYS);
    }
    assert.notEqual(got.get('clone_newuser'), EPERM, 'bwrap --disable-userns alone says ENOSPC');
  });

  test("the filter is on for the command and the sandbox's pid 1; unshare(1) fails", async () => {
    const r = await run(filtered, [
      '/bin/bash',
      '-c',
      'grep -h "^Seccomp:" /proc/self/status /proc/1/status; unshare -U /bin/true 2>&1; echo unshare=$?',
    ]);
    assert.deepEqual(r.out.slice(0, 2), ['Seccomp:\t2', 'Seccomp:\t2']);
    assert.match(r.out.join('\n'), /unshare failed: Operation not permitted\nunshare=1/);
    const off = await run(unfiltered, ['/bin/bash', '-c', 'grep "^Seccomp:" /proc/self/status']);
    assert.deepEqual(off.out, ['Seccomp:\t0']);
  });

  test('a debugger cannot trace anything in the sandbox (strace of a child, gdb attaching to pid 1)', {
    skip: !existsSync('/usr/bin/strace') && 'strace is not installed',
  }, async () => {
    const strace = await run(filtered, ['/usr/bin/strace', '-f', '-o', '/dev/null', '/bin/true']);
    assert.notEqual(strace.exitCode, 0);
    assert.match(strace.err.join('\n'), /Operation not permitted/);
    const control = await run(unfiltered, ['/usr/bin/strace', '-f', '-o', '/dev/null', '/bin/true']);
    assert.equal(control.exitCode, 0, `strace works without the filter: ${control.err.join('\n')}`);
    if (existsSync('/usr/bin/gdb')) {
      const gdb = await run(filtered, ['/usr/bin/gdb', '-nx', '-batch', '-p', '1', '-ex', 'detach']);
      assert.match([...gdb.out, ...gdb.err].join('\n'), /ptrace: Operation not permitted/);
    }
  });

  test('other ABIs are killed: an i386 call (int 0x80) and an x32 call end with SIGSYS', {
    skip: process.arch !== 'x64' && 'x86_64 only',
  }, async () => {
    for (const mode of ['int80', 'x32']) {
      const r = await run(filtered, ['/workspace/probe', mode]);
      assert.equal(r.signal, 'SIGSYS', `${mode}: ${r.out.join('\n')} ${r.err.join('\n')}`);
      assert.equal(r.exitCode, 128 + 31);
      assert.deepEqual(r.out, [], `${mode} printed nothing after the call`);
    }
    const control = await run(unfiltered, ['/workspace/probe', 'int80']);
    assert.equal(control.exitCode, 0, 'int 0x80 works without the filter');
  });

  test('ordinary workloads run under the filter: bash, node with worker threads, npm, python threads, gcc', async () => {
    const node = await run(filtered, [
      '/usr/bin/node',
      '-e',
      "const { Worker } = require('node:worker_threads'); const w = new Worker('require(\"node:worker_threads\").parentPort.postMessage(6 * 7)', { eval: true }); w.on('message', (m) => { console.log('worker', m); w.terminate(); }); require('node:child_process').exec('echo child', (e, o) => console.log(o.trim()));",
    ]);
    assert.equal(node.exitCode, 0, node.err.join('\n'));
    assert.deepEqual(node.out.sort(), ['child', 'worker 42']);

    const npm = await run(filtered, ['/usr/bin/npm', '--version']);
    assert.equal(npm.exitCode, 0, npm.err.join('\n'));
    assert.match(npm.out.join('\n'), /^\d+\.\d+\.\d+$/m);

    const py = await run(filtered, [
      '/usr/bin/python3',
      '-c',
      'import threading, subprocess\nout = []\nts = [threading.Thread(target=lambda i=i: out.append(i * i)) for i in range(8)]\n[t.start() for t in ts]\n[t.join() for t in ts]\nprint(sum(out), subprocess.run(["/bin/echo", "sub"], capture_output=True, text=True).stdout.strip())',
    ]);
    assert.equal(py.exitCode, 0, py.err.join('\n'));
    assert.deepEqual(py.out, ['140 sub']);

    const bash = await run(filtered, [
      '/bin/bash',
      '-c',
      'x=$(echo sub); (exit 3); echo "$x $? $((6*7))" | cat',
    ]);
    assert.deepEqual(bash.out, ['sub 3 42']);

    const gcc = await run(filtered, [
      '/bin/bash',
      '-c',
      'command -v gcc >/dev/null || { echo no-gcc; exit 0; }; cd /tmp && printf "#include <stdio.h>\\nint main(void){puts(\\"compiled\\");return 0;}\\n" > t.c && gcc -O2 -pthread -o t t.c && ./t',
    ]);
    assert.equal(gcc.exitCode, 0, gcc.err.join('\n'));
    assert.match(gcc.out.join('\n'), /^(compiled|no-gcc)$/m);
  });

  test('fail closed: a missing or damaged filter refuses to start the sandbox with one line', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kiln-seccomp-'));
    try {
      const missing = path.join(dir, 'default.bpf');
      const exec = new BubblewrapExecutor({ hostUid, seccomp: missing });
      await assert.rejects(exec.run(spec(['/bin/true'])), (e: unknown) => {
        assert.ok(e instanceof KilnError);
        assert.equal(
          e.message,
          `seccomp filter ${missing} is missing: build it with scripts/build.sh (it needs libseccomp-dev); sandboxes do not start without it`,
        );
        return true;
      });
      await writeFile(missing, 'seven b');
      await assert.rejects(
        exec.run(spec(['/bin/true'])),
        /seccomp filter .* is not a BPF program \(7 bytes;/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('buildpack detect and build run under the filter', {
  skip: hostUid !== 0 && 'needs root (build as uid 1000)',
}, () => {
  test('detect passes only with the filter on; build cannot ptrace pid 1 or make a user namespace', async () => {
    const f = await makeFixture();
    try {
      await execFileP('musl-gcc', [
        '-static',
        '-O2',
        '-o',
        path.join(f.app, 'probe'),
        path.join(root, 'test/sandbox/seccomp-probe.c'),
      ]);
      const bp = await f.inline({
        id: 'hostile/seccomp',
        detect: 'grep -q "^Seccomp:[[:space:]]*2$" /proc/self/status || exit 100',
        build:
          'layers="$1"; { grep "^Seccomp:" /proc/self/status; /workspace/probe calls | grep -E "^(ptrace_attach_pid1|ptrace|clone_newuser|unshare|clone3) "; } > "$layers/seccomp.txt"',
      });
      await f.detectAndBuild([bp.id]);
      assert.equal(
        await f.layerFile(bp.id, 'seccomp.txt'),
        `Seccomp:\t2\nptrace_attach_pid1 ${EPERM}\nptrace ${EPERM}\nunshare ${EPERM}\nclone_newuser ${EPERM}\nclone3 ${ENOSYS}\n`,
      );
    } finally {
      await f.cleanup();
    }
  });
});

describe('seccomp filter setting and build step', () => {
  test('on by default; KILN_SECCOMP=off is the only way off besides the executor option; typos are refused', () => {
    assert.equal(seccompFilterOf(undefined, {}), DEFAULT_SECCOMP_FILTER);
    assert.equal(seccompFilterOf(undefined, { KILN_SECCOMP: 'on' }), DEFAULT_SECCOMP_FILTER);
    assert.equal(seccompFilterOf(undefined, { KILN_SECCOMP: 'off' }), false);
    assert.equal(seccompFilterOf(false, {}), false);
    assert.equal(seccompFilterOf('/x.bpf', { KILN_SECCOMP: 'off' }), '/x.bpf');
    assert.throws(
      () => seccompFilterOf(undefined, { KILN_SECCOMP: 'false' }),
      /KILN_SECCOMP=false is not understood/,
    );
    const rootfs = '/';
    const spec: RunSpec = {
      argv: ['/bin/true'],
      env: {},
      cwd: '/',
      uid: 1000,
      gid: 1000,
      rootfs,
      mounts: [],
      network: 'none',
    };
    const args = new BubblewrapExecutor({ hostUid: 0, disableUserns: true }).commandFor(spec).args;
    const at = args.indexOf('--seccomp');
    assert.equal(args[at + 1], String(SECCOMP_FD));
    assert.ok(at < args.lastIndexOf('--'), 'a bwrap option, before the command');
    const off = new BubblewrapExecutor({ hostUid: 0, disableUserns: true, seccomp: false }).commandFor(
      spec,
    ).args;
    assert.equal(off.includes('--seccomp'), false);
  });

  test('without libseccomp-dev the build step stops with one line saying what to install', {
    skip: hostUid !== 0 && 'needs root (hides the header in a private mount namespace)',
  }, async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'kiln-seccomp-nodev-'));
    try {
      // /dev/null bound over the header: to this build step, libseccomp-dev is not installed.
      const r = await execFileP(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          'bash',
          '-c',
          'mount --bind /dev/null /usr/include/seccomp.h && bash scripts/build.d/seccomp.sh; echo "exit=$?"',
        ],
        { cwd: root, env: { ...process.env, KILN_SECCOMP_OUT: out } },
      );
      assert.match(r.stdout, /^exit=1$/m);
      assert.equal(
        r.stderr.trim(),
        "error: libseccomp-dev is not installed; the sandbox's seccomp filter needs it: apt-get install libseccomp-dev (or run scripts/bootstrap.sh)",
      );
      assert.equal(existsSync(path.join(out, 'default.bpf')), false);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  test('the build step writes the same bytes every time (different umask and time zone)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kiln-seccomp-build-'));
    try {
      const outs = [path.join(dir, 'a'), path.join(dir, 'b')];
      for (const [i, out] of outs.entries()) {
        await execFileP('bash', ['-c', `umask ${i === 0 ? '022' : '077'}; bash scripts/build.d/seccomp.sh`], {
          cwd: root,
          env: { ...process.env, KILN_SECCOMP_OUT: out, TZ: i === 0 ? 'UTC' : 'Asia/Tokyo' },
        });
      }
      const [a, b] = await Promise.all(outs.map((o) => readFile(path.join(o, 'default.bpf'))));
      assert.ok(a && b);
      assert.ok(a.length > 0 && a.length % 8 === 0, `${a.length} bytes of BPF instructions`);
      assert.ok(a.equals(b), 'byte-identical across two builds');
      assert.ok(
        a.equals(await readFile(DEFAULT_SECCOMP_FILTER)),
        'and identical to dist/seccomp/default.bpf',
      );
      const listing = await readFile(path.join(outs[0] ?? '', 'default.txt'), 'utf8');
      assert.match(listing, /filter for arch x86_64/);
      assert.match(listing, /filter for arch aarch64/);
      assert.match(listing, /invalid architecture action\naction KILL_PROCESS;/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
