import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { checkEmulation, EmulationMissingError } from './emulation.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-binfmt-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const entry = (flags: string, interpreter: string, state = 'enabled') =>
  `${state}\ninterpreter ${interpreter}\nflags: ${flags}\noffset 0\nmagic 7f454c46\nmask ffffffff\n`;

function fails(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof EmulationMissingError, e.message);
    assert.doesNotMatch(e.message, /\n/, 'one line');
    assert.match(e.message, re);
    return true;
  });
}

test('a native build needs no emulation', () => {
  assert.equal(checkEmulation('amd64', 'amd64', path.join(dir, 'absent')), undefined);
});

test('each missing piece is named in one line with the command that fixes it', async () => {
  const b = path.join(dir, 'b');
  fails(
    () => checkEmulation('arm64', 'amd64', b),
    /binfmt_misc is not mounted at .*mount -t binfmt_misc binfmt_misc \/proc\/sys\/fs\/binfmt_misc; update-binfmts --enable qemu-aarch64$/,
  );
  await import('node:fs/promises').then((f) => f.mkdir(b));
  await writeFile(path.join(b, 'status'), 'disabled\n');
  fails(() => checkEmulation('arm64', 'amd64', b), /binfmt_misc is disabled/);
  await writeFile(path.join(b, 'status'), 'enabled\n');
  fails(
    () => checkEmulation('arm64', 'amd64', b),
    /qemu-aarch64 is not registered in binfmt_misc: as root: apt-get install qemu-user-static/,
  );
  await writeFile(path.join(b, 'qemu-aarch64'), entry('P', '/bin/sh'));
  fails(() => checkEmulation('arm64', 'amd64', b), /registered without the F flag/);
  await writeFile(path.join(b, 'qemu-aarch64'), entry('PF', '/bin/sh', 'disabled'));
  fails(() => checkEmulation('arm64', 'amd64', b), /entry is disabled/);
  await writeFile(path.join(b, 'qemu-aarch64'), entry('PF', path.join(dir, 'no-qemu')));
  fails(() => checkEmulation('arm64', 'amd64', b), /interpreter .*no-qemu is missing/);
  await writeFile(path.join(b, 'qemu-aarch64'), entry('PF', '/bin/sh'));
  assert.deepEqual(checkEmulation('arm64', 'amd64', b), { entry: 'qemu-aarch64', interpreter: '/bin/sh' });
  fails(() => checkEmulation('mips64le', 'amd64', b), /knows no qemu-user emulator for mips64le/);
});

test('this machine has arm64 emulation registered (scripts/bootstrap.sh sets it up)', {
  skip: !existsSync('/usr/bin/qemu-aarch64-static') && 'qemu-user-static is not installed',
}, () => {
  assert.equal(checkEmulation('arm64', 'amd64')?.entry, 'qemu-aarch64');
});
