import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  existsInRoot,
  isDirInRoot,
  lstatInRoot,
  readdirInRoot,
  readdirInRootIfExists,
  readFileInRoot,
  readFileInRootIfExists,
  readTextInRoot,
  readTomlInRoot,
  statInRoot,
  UntrustedFileError,
} from './safe-read.ts';

const LAYERS = { what: "the buildpack's layers directory", shown: 'layers' } as const;

function refusal(f: () => unknown): UntrustedFileError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UntrustedFileError, String(e));
    assert.doesNotMatch(e.message, /\n/);
    return e;
  }
  assert.fail('expected a refusal');
}

describe('safe-read', () => {
  let dir: string;
  let root: string;
  let canary: string;
  let secret: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-safe-read-'));
    root = path.join(dir, 'root');
    mkdirSync(path.join(root, 'bp', 'sub'), { recursive: true });
    secret = `CANARY-${randomBytes(12).toString('hex')}`;
    canary = path.join(dir, 'canary.txt');
    writeFileSync(canary, `${secret}\n`);
    chmodSync(canary, 0o600);
    writeFileSync(path.join(root, 'bp', 'ok.toml'), 'a = 1\n');
    writeFileSync(path.join(root, 'bp', 'sub', 'deep.txt'), 'deep');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('reads regular files and directories inside the root', () => {
    assert.equal(readTextInRoot(root, 'bp/sub/deep.txt'), 'deep');
    assert.deepEqual({ ...readTomlInRoot(root, 'bp/ok.toml') }, { a: 1 });
    assert.equal(readFileInRootIfExists(root, 'bp/none.toml'), undefined);
    assert.equal(readFileInRootIfExists(root, 'nodir/none.toml'), undefined);
    assert.deepEqual(
      readdirInRoot(root, 'bp')
        .map((e) => e.name)
        .sort(),
      ['ok.toml', 'sub'],
    );
    assert.equal(isDirInRoot(root, 'bp/sub'), true);
    assert.equal(existsInRoot(root, 'bp/ok.toml'), true);
    assert.equal(existsInRoot(root, 'bp/nope'), false);
    assert.equal(statInRoot(root, '')?.isDirectory(), true);
    const e = refusal(() => readFileInRoot(root, 'bp/missing.toml', LAYERS));
    assert.equal(e.reason, 'missing');
    assert.equal(
      e.message,
      "layers/bp/missing.toml does not exist: expected a regular file inside the buildpack's layers directory",
    );
  });

  test('a symlink at the file is refused, with the same message whether its target exists or not', () => {
    symlinkSync(canary, path.join(root, 'bp', 'store.toml'));
    symlinkSync(path.join(dir, 'no-such-file'), path.join(root, 'bp', 'store2.toml'));
    symlinkSync('ok.toml', path.join(root, 'bp', 'inside.toml'));
    const a = refusal(() => readFileInRoot(root, 'bp/store.toml', LAYERS));
    assert.equal(
      a.message,
      "layers/bp/store.toml is a symbolic link: expected a regular file inside the buildpack's layers directory",
    );
    assert.equal(a.reason, 'symlink');
    const b = refusal(() => readFileInRoot(root, 'bp/store2.toml', LAYERS));
    assert.equal(b.message, a.message.replace('store.toml', 'store2.toml'));
    // Even a link that stays inside the root is refused by default (CNB metadata files are files).
    assert.equal(refusal(() => readTomlInRoot(root, 'bp/inside.toml', LAYERS)).reason, 'symlink');
    assert.equal(refusal(() => statInRoot(root, 'bp/store.toml')).reason, 'symlink');
    assert.equal(lstatInRoot(root, 'bp/store.toml')?.isSymbolicLink(), true);
    for (const m of [a.message, b.message]) {
      assert.doesNotMatch(m, new RegExp(secret));
      assert.doesNotMatch(m, /canary|no-such-file/);
    }
  });

  test('a symlink at any directory component is refused', () => {
    symlinkSync(dir, path.join(root, 'escape'));
    symlinkSync('bp', path.join(root, 'bp-link'));
    const e = refusal(() => readFileInRoot(root, 'escape/canary.txt', LAYERS));
    assert.equal(
      e.message,
      "layers/escape/canary.txt: layers/escape is a symbolic link: expected a directory inside the buildpack's layers directory",
    );
    assert.equal(refusal(() => readFileInRoot(root, 'bp-link/ok.toml')).reason, 'symlink');
    assert.equal(refusal(() => readdirInRoot(root, 'escape')).reason, 'symlink');
    assert.equal(refusal(() => existsInRoot(root, 'escape/canary.txt')).reason, 'symlink');
    assert.equal(refusal(() => readFileInRoot(root, 'bp/ok.toml/x')).reason, 'not-directory');
  });

  test('`..` in a requested path is refused, and absolute paths stay inside the root', () => {
    assert.equal(refusal(() => readFileInRoot(root, '../canary.txt')).reason, 'bad-path');
    assert.equal(refusal(() => readFileInRoot(root, 'bp/../../canary.txt')).reason, 'bad-path');
    assert.equal(readTextInRoot(root, '/bp/sub/deep.txt'), 'deep');
    assert.equal(readFileInRootIfExists(root, canary), undefined);
  });

  test('FIFOs, sockets and devices are refused without blocking; directories are not files', async () => {
    execFileSync('mkfifo', [path.join(root, 'bp', 'fifo.toml')]);
    const e = refusal(() => readFileInRoot(root, 'bp/fifo.toml', LAYERS));
    assert.equal(e.reason, 'not-regular');
    assert.match(e.message, /^layers\/bp\/fifo\.toml is a FIFO: expected a regular file/);
    const sock = path.join(root, 'bp', 'sock.toml');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      assert.match(refusal(() => readFileInRoot(root, 'bp/sock.toml')).message, /is a socket/);
    } finally {
      server.close();
    }
    if (process.getuid?.() === 0) {
      execFileSync('mknod', [path.join(root, 'bp', 'null.toml'), 'c', '1', '3']);
      assert.match(refusal(() => readFileInRoot(root, 'bp/null.toml')).message, /is a character device/);
    }
    assert.match(
      refusal(() => readFileInRoot(root, 'bp/sub')).message,
      /is a directory: expected a regular file/,
    );
    assert.equal(refusal(() => readdirInRoot(root, 'bp/ok.toml')).reason, 'not-directory');
  });

  test('files over the cap are refused; the size is counted, not trusted', () => {
    writeFileSync(path.join(root, 'bp', 'ten'), '0123456789');
    writeFileSync(path.join(root, 'bp', 'eleven'), '0123456789A');
    assert.equal(readTextInRoot(root, 'bp/ten', { maxBytes: 10 }), '0123456789');
    const e = refusal(() => readFileInRoot(root, 'bp/eleven', { maxBytes: 10 }));
    assert.equal(e.reason, 'too-large');
    assert.equal(e.message, 'bp/eleven is larger than 10 bytes, the most kiln reads');
    // /proc files report size 0 but have content: reading to EOF still sees the bytes.
    assert.match(readTextInRoot('/proc/self', 'status'), /^Name:/);
  });

  test('TOML that does not parse is named without echoing its content', () => {
    writeFileSync(path.join(root, 'bp', 'bad.toml'), `${secret} = = "x"\n`);
    const e = refusal(() => readTomlInRoot(root, 'bp/bad.toml', LAYERS));
    assert.equal(e.reason, 'invalid-toml');
    assert.match(e.message, /^layers\/bp\/bad\.toml is not valid TOML \(line 1, column \d+\)$/);
    assert.doesNotMatch(e.message, new RegExp(secret));
  });

  test('in-root mode resolves absolute and `..` targets inside the root, never on the host', () => {
    const img = path.join(dir, 'image');
    mkdirSync(path.join(img, 'etc'), { recursive: true });
    mkdirSync(path.join(img, 'usr', 'lib'), { recursive: true });
    writeFileSync(path.join(img, 'usr', 'lib', 'passwd'), 'cnb:x:1000:1000::/home/cnb:/bin/sh\n');
    symlinkSync('/usr/lib/passwd', path.join(img, 'etc', 'passwd'));
    symlinkSync('../../../../../../../usr/lib/passwd', path.join(img, 'etc', 'passwd-rel'));
    symlinkSync(canary, path.join(img, 'etc', 'shadow'));
    symlinkSync('../../../../../../..' + canary, path.join(img, 'etc', 'shadow-rel'));
    symlinkSync('loop-b', path.join(img, 'etc', 'loop-a'));
    symlinkSync('loop-a', path.join(img, 'etc', 'loop-b'));
    symlinkSync('/', path.join(img, 'etc', 'root'));
    const o = { follow: 'in-root', what: "the image's root filesystem", shown: '/' } as const;
    assert.match(readTextInRoot(img, 'etc/passwd', o), /^cnb:/);
    assert.match(readTextInRoot(img, 'etc/passwd-rel', o), /^cnb:/);
    assert.match(readTextInRoot(img, 'etc/root/etc/root/usr/lib/passwd', o), /^cnb:/);
    // Links to a host file resolve to the same path inside the image, which does not exist.
    assert.equal(readFileInRootIfExists(img, 'etc/shadow', o), undefined);
    assert.equal(readFileInRootIfExists(img, 'etc/shadow-rel', o), undefined);
    const loop = refusal(() => readFileInRoot(img, 'etc/loop-a', o));
    assert.equal(loop.reason, 'too-many-links');
    assert.equal(
      loop.message,
      "/etc/loop-a has more than 40 levels of symbolic links: expected a regular file inside the image's root filesystem",
    );
    assert.equal(readdirInRootIfExists(img, 'etc/root/usr', o)?.[0]?.name, 'lib');
    // The same link is refused by default.
    assert.equal(refusal(() => readFileInRoot(img, 'etc/passwd')).reason, 'symlink');
  });

  test('a writer swapping a directory for a link out of the root never gets a host file read', async () => {
    const race = path.join(dir, 'race');
    mkdirSync(path.join(race, 'real'), { recursive: true });
    writeFileSync(path.join(race, 'real', 'canary.txt'), 'inside\n');
    // The host side of the link: a directory holding a file of the same name with the canary.
    const script = `cd ${race}; while :; do mv -T real tmp; ln -sfn ${dir} real; rm real; mv -T tmp real; done`;
    const writer = spawn('bash', ['-c', script], { stdio: 'ignore' });
    try {
      let read = 0;
      let refused = 0;
      const end = Date.now() + 1500;
      while (Date.now() < end) {
        try {
          const t = readTextInRoot(race, 'real/canary.txt');
          assert.equal(t, 'inside\n');
          read++;
        } catch (e) {
          assert.ok(e instanceof UntrustedFileError, String(e));
          assert.doesNotMatch(e.message, new RegExp(secret));
          refused++;
        }
        await new Promise((r) => setImmediate(r));
      }
      assert.ok(read > 10 && refused > 10, `${read} reads, ${refused} refusals`);
    } finally {
      writer.kill('SIGKILL');
    }
  });
});
