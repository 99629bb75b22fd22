// The built filter (dist/seccomp/default.bpf) checked instruction by instruction: a classic-BPF
// interpreter runs it over seccomp_data for both architectures. This covers the aarch64 half,
// which an x86_64 host never executes, and every system call number the kernel headers name
// (anything not on filter.c's deny list must be allowed). Syscall numbers come from the kernel's
// uapi headers (linux-libc-dev), not from libseccomp, so the two are checked against each other.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SECCOMP_FILTER } from './seccomp.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

const AUDIT_ARCH = {
  x86_64: 0xc000003e,
  aarch64: 0xc00000b7,
  i386: 0x40000003,
  arm: 0x40000028,
  riscv64: 0xc00000f3,
};
const RET = { killProcess: 0x80000000, allow: 0x7fff0000, errno: (e: number) => (0x00050000 | e) >>> 0 };
const EPERM = 1;
const ENOSYS = 38;

/** What the kernel hands a seccomp filter (struct seccomp_data), little-endian. */
function seccompData(arch: number, nr: number, args: readonly bigint[] = []): Buffer {
  const b = Buffer.alloc(64);
  b.writeInt32LE(nr | 0, 0);
  b.writeUInt32LE(arch, 4);
  for (const [i, a] of args.entries()) b.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i);
  return b;
}

/** A classic BPF interpreter for the instructions seccomp programs may use. */
function runBpf(prog: Buffer, data: Buffer): number {
  let a = 0;
  let x = 0;
  const mem = new Uint32Array(16);
  for (let pc = 0; pc * 8 < prog.length; pc++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    const src = code & 0x08 ? x : k;
    switch (code & 0x07) {
      case 0x00: // LD
        if ((code & 0xe0) === 0x20 && (code & 0x18) === 0) a = data.readUInt32LE(k);
        else if ((code & 0xe0) === 0x00) a = k;
        else if ((code & 0xe0) === 0x60) a = mem[k] ?? 0;
        else throw new Error(`unsupported LD ${code.toString(16)}`);
        break;
      case 0x01: // LDX
        if ((code & 0xe0) === 0x00) x = k;
        else if ((code & 0xe0) === 0x60) x = mem[k] ?? 0;
        else throw new Error(`unsupported LDX ${code.toString(16)}`);
        break;
      case 0x02:
        mem[k] = a;
        break;
      case 0x03:
        mem[k] = x;
        break;
      case 0x04: {
        const op = code & 0xf0;
        if (op === 0x50) a = (a & src) >>> 0;
        else if (op === 0x40) a = (a | src) >>> 0;
        else if (op === 0x00) a = (a + src) >>> 0;
        else if (op === 0x10) a = (a - src) >>> 0;
        else if (op === 0x70) a = a >>> src;
        else if (op === 0x60) a = (a << src) >>> 0;
        else if (op === 0xa0) a = (a ^ src) >>> 0;
        else throw new Error(`unsupported ALU ${code.toString(16)}`);
        break;
      }
      case 0x05: {
        const op = code & 0xf0;
        if (op === 0x00) {
          pc += k;
          break;
        }
        const cond =
          op === 0x10
            ? a === src
            : op === 0x20
              ? a > src
              : op === 0x30
                ? a >= src
                : op === 0x40
                  ? (a & src) !== 0
                  : undefined;
        if (cond === undefined) throw new Error(`unsupported JMP ${code.toString(16)}`);
        pc += cond ? jt : jf;
        break;
      }
      case 0x06:
        return (code & 0x18) === 0x10 ? a : k;
      default:
        if (code === 0x07) x = a;
        else if (code === 0x87) a = x;
        else throw new Error(`unsupported MISC ${code.toString(16)}`);
    }
  }
  throw new Error('the program ran off its end');
}

/** name → number from a kernel uapi header (`#define __NR_name N`, and asm-generic's __NR3264_name). */
function syscallTable(header: string): Map<string, number> {
  const table = new Map<string, number>();
  for (const m of readFileSync(header, 'utf8').matchAll(/^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$/gm)) {
    const [, name, nr] = m;
    if (name && nr && name !== 'syscalls' && !table.has(name)) table.set(name, Number(nr));
  }
  return table;
}

/** The deny list as filter.c spells it (one source of truth). */
function deniedNames(): string[] {
  const c = readFileSync(`${root}src/sandbox/seccomp/filter.c`, 'utf8');
  const block = /static const char \*const denied\[\] = \{([\s\S]*?)\};/.exec(c)?.[1] ?? '';
  return [...block.replaceAll(/\/\*[\s\S]*?\*\//g, '').matchAll(/"(\w+)"/g)].map((m) => m[1] ?? '');
}

const HEADERS = {
  x86_64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
  aarch64: '/usr/include/asm-generic/unistd.h',
} as const;

describe('seccomp program (interpreted)', {
  skip: !existsSync(HEADERS.aarch64) && 'kernel headers (linux-libc-dev) missing',
}, () => {
  let prog: Buffer;
  before(() => {
    execFileSync('bash', [`${root}scripts/build.d/seccomp.sh`]);
    prog = readFileSync(DEFAULT_SECCOMP_FILTER);
  });
  const denied = deniedNames();

  test('filter.c denies the calls that reach other processes or the kernel', () => {
    for (const n of [
      'ptrace',
      'process_vm_readv',
      'kexec_load',
      'bpf',
      'perf_event_open',
      'keyctl',
      'userfaultfd',
      'mount',
      'unshare',
      'setns',
      'open_by_handle_at',
      'init_module',
      'io_uring_setup',
    ]) {
      assert.ok(denied.includes(n), n);
    }
    assert.ok(denied.length > 60, `${denied.length} names`);
  });

  for (const arch of ['x86_64', 'aarch64'] as const) {
    describe(arch, { skip: !existsSync(HEADERS[arch]) && `${HEADERS[arch]} missing` }, () => {
      const table = existsSync(HEADERS[arch]) ? syscallTable(HEADERS[arch]) : new Map<string, number>();
      const run = (nr: number, args: readonly bigint[] = []) =>
        runBpf(prog, seccompData(AUDIT_ARCH[arch], nr, args));
      const nrOf = (name: string): number => {
        const nr = table.get(name);
        assert.ok(nr !== undefined, `${name} in ${HEADERS[arch]}`);
        return nr;
      };

      test('every denied call that exists on the architecture returns EPERM', () => {
        const present = denied.filter((n) => table.has(n));
        assert.ok(present.length > 50, `${present.length} denied calls exist on ${arch}`);
        for (const name of present) assert.equal(run(nrOf(name)), RET.errno(EPERM), name);
      });

      test('every other call the headers name is allowed (with zero arguments)', () => {
        const allowed = [...table].filter(([n]) => !denied.includes(n) && n !== 'clone3');
        assert.ok(allowed.length > 250, `${allowed.length} calls`);
        const refused = allowed.filter(([, nr]) => run(nr) !== RET.allow).map(([n]) => n);
        assert.deepEqual(refused, []);
      });

      test('clone: any namespace flag is EPERM, thread/fork/vfork flags pass; clone3 is ENOSYS', () => {
        const clone = nrOf('clone');
        for (const f of [0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000]) {
          assert.equal(run(clone, [BigInt(f | 17)]), RET.errno(EPERM), f.toString(16));
          assert.equal(run(clone, [BigInt(f) | 0x3d0f00n | (1n << 40n)]), RET.errno(EPERM), f.toString(16));
        }
        for (const f of [0x3d0f00, 0x1200011, 0x4111, 17, 0])
          assert.equal(run(clone, [BigInt(f)]), RET.allow, f.toString(16));
        assert.equal(run(nrOf('clone3')), RET.errno(ENOSYS));
      });

      test('calls numbered 457 and up (not reviewed) are ENOSYS; 456 is not', () => {
        for (const nr of [457, 458, 462, 467, 469, 500, 1000, 0x3fffffff])
          assert.equal(run(nr), RET.errno(ENOSYS), String(nr));
        assert.equal(run(456), RET.allow);
      });

      test('personality: only 0, 8, 0x20000, 0x20008 and 0xffffffff pass (single bits, pairs, random values)', () => {
        const personality = nrOf('personality');
        const ok = new Set([0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]);
        const values = new Set<bigint>([...ok, 0x40000n, 0x400000n, 0x100000000n, 0xfffffffen, 0x1ffffffffn]);
        for (let i = 0; i < 32; i++) {
          for (let j = i; j < 32; j++) values.add((1n << BigInt(i)) | (1n << BigInt(j)));
          values.add(0xffffffffn ^ (1n << BigInt(i)));
        }
        let seed = 0x2545f491;
        for (let i = 0; i < 4000; i++) {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          values.add(BigInt(seed) & (i % 2 ? 0xffffffffn : 0x2000fn));
        }
        for (const v of values) {
          assert.equal(
            run(personality, [v]),
            ok.has(v) ? RET.allow : RET.errno(EPERM),
            `0x${v.toString(16)}`,
          );
        }
      });

      test('ioctl TIOCSTI/TIOCLINUX and socket(AF_VSOCK) are EPERM, also with high bits set', () => {
        const ioctl = nrOf('ioctl');
        for (const req of [0x5412n, 0x541cn, 0x5412n | (1n << 32n), 0x541cn | (0xffn << 40n)]) {
          assert.equal(run(ioctl, [0n, req]), RET.errno(EPERM), req.toString(16));
        }
        assert.equal(run(ioctl, [0n, 0x5401n]), RET.allow, 'TCGETS');
        const socket = nrOf('socket');
        assert.equal(run(socket, [40n, 1n]), RET.errno(EPERM));
        assert.equal(run(socket, [40n | (1n << 32n), 1n]), RET.errno(EPERM));
        for (const family of [1n, 2n, 10n, 16n]) assert.equal(run(socket, [family, 1n]), RET.allow);
      });
    });
  }

  test('other ABIs are killed: x32 on x86_64, i386, arm32, riscv64', () => {
    for (const nr of [39, 101, 521]) {
      assert.equal(
        runBpf(prog, seccompData(AUDIT_ARCH.x86_64, 0x40000000 | nr)),
        RET.killProcess,
        `x32 ${nr}`,
      );
    }
    for (const arch of [AUDIT_ARCH.i386, AUDIT_ARCH.arm, AUDIT_ARCH.riscv64]) {
      for (const nr of [0, 1, 20, 26, 500])
        assert.equal(runBpf(prog, seccompData(arch, nr)), RET.killProcess);
    }
  });
});
