// The arm64 side of kiln's own binaries, on an amd64 machine: scripts/build.d/cross.sh builds the
// launcher, kiln-init and kiln-mountview static for aarch64, byte for byte the same twice, with a
// build-info.json (and so a launcher SBOM) naming arm64; they run under qemu-user. The seccomp
// filter is one program for both architectures, and under emulation the host's (x86_64) half is
// the one that applies, because qemu turns the guest's system calls into host ones: an arm64
// probe in a real sandbox is denied what an amd64 one is, and a control run without the filter
// shows the same calls get through, so no assertion passes by accident.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_LAUNCHER_DIR, launcherSbom, loadLauncher } from '../../src/launcher/index.ts';
import { bufferReader, parseElf } from '../../src/layers/elf.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import { checkEmulation } from '../../src/sandbox/emulation.ts';
import type { RunSpec } from '../../src/sandbox/executor.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const execFileP = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const hostUid = process.getuid?.() ?? 0;
const AARCH64 = 183;
const EPERM = 1;

function emulationMissing(): string | false {
  if (process.arch !== 'x64') return 'these checks are for an amd64 machine building arm64';
  if (!existsSync('/usr/bin/aarch64-linux-musl-gcc'))
    return 'aarch64-linux-musl-gcc missing: run scripts/bootstrap.sh (gcc-aarch64-linux-gnu, musl-dev:arm64)';
  try {
    checkEmulation('arm64', 'amd64');
  } catch (e) {
    return `arm64 emulation unavailable (binfmt_misc cannot be mounted here?): ${(e as Error).message}`;
  }
  return false;
}
const skip = emulationMissing();

describe('cross-built arm64 binaries', { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-cross-'));
    for (const n of ['a', 'b'])
      await execFileP('bash', [path.join(root, 'scripts/build.d/cross.sh')], {
        env: { ...process.env, KILN_CROSS_OUT: path.join(dir, n) },
      });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const BINARIES = ['launcher/launcher', 'init/kiln-init', 'mountview/kiln-mountview'];

  test('launcher, kiln-init and kiln-mountview are static aarch64 executables, the same bytes twice', async () => {
    for (const b of BINARIES) {
      const [x, y] = await Promise.all([readFile(path.join(dir, 'a', b)), readFile(path.join(dir, 'b', b))]);
      assert.ok(x.equals(y), `${b} is reproducible`);
      const elf = parseElf(bufferReader(x));
      assert.equal(elf.machine, AARCH64, `${b} is aarch64`);
      assert.equal(elf.interpreter, undefined, `${b} is static`);
      assert.equal(elf.dynamic, false, `${b} is static`);
      assert.ok(x.length < 200_000, `${b} is small (musl): ${x.length} bytes`);
    }
  });

  test("the launcher's build info and SBOM name arm64; an amd64 launcher is refused for arm64", async () => {
    const l = await loadLauncher(path.join(dir, 'a', 'launcher'), 'arm64');
    assert.equal(l.arch, 'arm64');
    assert.equal(l.musl.arch, 'arm64');
    const cdx = JSON.parse(launcherSbom(l).cdx);
    assert.match(
      cdx.metadata.component.purl,
      /^pkg:generic\/kiln-launcher@[^?]+\?arch=arm64&checksum=sha256:[0-9a-f]{64}$/,
    );
    assert.ok(
      cdx.components.some((c: { purl?: string }) =>
        /^pkg:deb\/debian\/musl@.*\?arch=arm64&/.test(c.purl ?? ''),
      ),
    );
    const spdx = launcherSbom(l).spdx;
    assert.match(spdx, /arch=arm64/);
    await assert.rejects(loadLauncher(DEFAULT_LAUNCHER_DIR, 'arm64'), /is built for amd64, not arm64/);
    await assert.rejects(
      loadLauncher(path.join(dir, 'none'), 'arm64'),
      /arm64 launcher not built: .*musl-dev:arm64/,
    );
  });

  test('the arm64 launcher and kiln-init run under qemu-user', async () => {
    const run = (b: string) =>
      execFileP(path.join(dir, 'a', b), []).then(
        () => ({ code: 0, err: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
      );
    const l = await run('launcher/launcher');
    assert.equal(l.code, 82, l.err);
    assert.match(l.err, /^kiln-launcher: determine start command/);
    const i = await run('init/kiln-init');
    assert.match(i.err, /^kiln-init: usage/);
  });
});

describe('the seccomp filter under arm64 emulation', {
  skip: skip || (hostUid !== 0 && 'needs root to run sandboxes as uid 1000'),
}, () => {
  let fs: HostRootfs;
  const filtered = new BubblewrapExecutor({ hostUid });
  const unfiltered = new BubblewrapExecutor({ hostUid, seccomp: false });
  before(async () => {
    fs = await makeHostRootfs();
    const probe = path.join(fs.workspace, 'probe');
    await execFileP('aarch64-linux-musl-gcc', [
      '-static',
      '-O2',
      '-o',
      probe,
      path.join(root, 'test/multiarch/emulated-probe.c'),
    ]);
    await chmod(probe, 0o755);
  });
  after(() => fs?.cleanup());

  const spec = (argv: string[], out: string[], err: string[]): RunSpec => ({
    argv,
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    rootfs: fs.rootfs,
    mounts: fs.mounts,
    network: 'none',
    timeoutMs: 60_000,
    graceMs: 1000,
    stdout: (l) => out.push(l),
    stderr: (l) => err.push(l),
  });
  async function probe(exec: BubblewrapExecutor): Promise<Map<string, number>> {
    const out: string[] = [];
    const err: string[] = [];
    const r = await exec.run(spec(['/workspace/probe'], out, err));
    assert.equal(r.exitCode, 0, err.join('\n'));
    return new Map(out.map((l) => l.split(' ') as [string, string]).map(([k, v]) => [k, Number(v)]));
  }

  test('an emulated arm64 process is denied what the filter denies; without the filter the calls reach the kernel', async () => {
    const on = await probe(filtered);
    const off = await probe(unfiltered);
    const denied = [...off.keys()].filter((n) => !n.startsWith('ok_'));
    assert.equal(denied.length, 7, 'the probe reported every call');
    const wrong: string[] = [];
    for (const name of denied) {
      if (on.get(name) !== EPERM) wrong.push(`${name}: filtered errno ${on.get(name)}, expected EPERM`);
      if (off.get(name) === EPERM) wrong.push(`${name}: EPERM without the filter too (proves nothing)`);
    }
    assert.deepEqual(wrong, []);
    for (const name of ['unshare', 'kcmp', 'personality_addr_no_randomize'])
      assert.equal(off.get(name), 0, `${name} succeeds unfiltered under emulation`);
    assert.equal(on.get('ok_getppid'), 0, 'allowed calls still work under emulation');
    assert.equal(on.get('ok_socket_unix'), 0);
  });
});
