import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { globRegExp, removeSource } from '../../buildpacks/_shared/app-source.ts';
import { goModInfo } from '../../buildpacks/go/src/buildinfo.ts';
import { compareGo, goModRequest, parseGoVersion } from '../../buildpacks/go/src/gomod.ts';
import { downloadSite, notForBuilding } from '../../buildpacks/go/src/toolchain.ts';
import { untarGz } from '../../buildpacks/go/src/untar.ts';
import { entryHeader, type TarEntry } from '../../src/layers/tar-writer.ts';
import { goSumLines, hash1 } from '../helpers/go-proxy.ts';

const execFileP = promisify(execFile);

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-go-units-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('go.mod and Go versions', () => {
  test('goModRequest reads the module, go and toolchain lines (comments and quotes allowed)', () => {
    const r = goModRequest(
      '// x\nmodule "example.com/a" // c\n\ngo 1.22\ntoolchain go1.22.3\nrequire x v1\n',
    );
    assert.equal(r.module, 'example.com/a');
    assert.deepEqual(r.go, { major: 1, minor: 22, patch: 0, pre: '' });
    assert.deepEqual(r.toolchain, { major: 1, minor: 22, patch: 3, pre: '' });
    assert.equal(goModRequest('module x\ntoolchain default\n').toolchain, undefined);
  });
  test('compareGo orders releases and pre-releases', () => {
    const v = (s: string) => parseGoVersion(s)!;
    assert.ok(compareGo(v('1.22'), v('1.19.8')) > 0);
    assert.ok(compareGo(v('1.22rc1'), v('1.22.0')) < 0);
    assert.ok(compareGo(v('go1.21.13'), v('1.21.2')) > 0);
    assert.equal(parseGoVersion('2.0'), undefined);
  });
});

describe('toolchain contents', () => {
  test('notForBuilding leaves out the precompiled standard library, tests and tool sources, never the tools or headers', () => {
    const skip = notForBuilding('usr/lib/go-1.19');
    for (const p of [
      'usr/lib/go-1.19/pkg/linux_amd64',
      'usr/lib/go-1.19/pkg/linux_amd64/fmt.a',
      'usr/lib/go-1.19/pkg/linux_amd64_race/net.a',
      'usr/lib/go-1.19/test/x.go',
      'usr/lib/go-1.19/src/cmd/go/main.go',
      'usr/lib/go-1.19/src/fmt/print_test.go',
    ])
      assert.equal(skip(p), true, p);
    for (const p of [
      'usr/lib/go-1.19/pkg/tool/linux_amd64/compile',
      'usr/lib/go-1.19/pkg/include/textflag.h',
      'usr/lib/go-1.19/bin/go',
      'usr/lib/go-1.19/src/fmt/print.go',
      'usr/lib/go-1.190/pkg/linux_amd64/fmt.a',
    ])
      assert.equal(skip(p), false, p);
  });
});

describe('BP_GO_DOWNLOAD_URL', () => {
  test('https anywhere, plain http only to this machine, no credentials', () => {
    assert.equal(downloadSite('https://go.example/dl'), 'https://go.example/dl/');
    assert.equal(downloadSite('http://127.0.0.1:8080/'), 'http://127.0.0.1:8080/');
    assert.throws(() => downloadSite('http://go.example/dl/'), /must be an https URL/);
    assert.throws(() => downloadSite('file:///etc/'), /must be an https URL/);
    assert.throws(() => downloadSite('https://u:p@go.example/'), /must not carry credentials/);
    assert.throws(() => downloadSite('not a url'), /is not a URL/);
  });
});

describe('no source in the image', () => {
  test('removeSource empties the workspace except kept globs, never following links', async () => {
    const app = path.join(tmp, 'app');
    const outside = path.join(tmp, 'outside');
    await mkdir(path.join(app, 'cmd/web'), { recursive: true });
    await mkdir(path.join(app, 'static/css'), { recursive: true });
    await mkdir(outside);
    await writeFile(path.join(outside, 'keep-me'), 'x');
    for (const f of ['main.go', 'go.mod', 'cmd/web/main.go', 'static/css/a.css', 'static/x.go', 'README.md'])
      await writeFile(path.join(app, f), 'x');
    await symlink(outside, path.join(app, 'link'));
    const removed = await removeSource(app, ['static/**/*.css', 'README.md']);
    assert.ok(removed >= 4);
    assert.deepEqual((await readdir(app)).sort(), ['README.md', 'static']);
    assert.deepEqual(await readdir(path.join(app, 'static')), ['css']);
    assert.deepEqual(await readdir(outside), ['keep-me'], 'the link was removed, not followed');
    assert.ok(globRegExp('static').test('static/css/a.css'));
    assert.ok(!globRegExp('*.md').test('docs/a.md'));
  });
});

function tarGz(entries: (TarEntry & { data?: string })[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    blocks.push(entryHeader(e, e.path, 0));
    if (e.data !== undefined) {
      const b = Buffer.from(e.data);
      blocks.push(b, Buffer.alloc((512 - (b.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}
const file = (p: string, data: string): TarEntry & { data: string } => ({
  path: p,
  type: 'file',
  mode: 0o755,
  uid: 0,
  gid: 0,
  size: Buffer.byteLength(data),
  data,
});
const link = (p: string, to: string): TarEntry => ({
  path: p,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname: to,
});

describe('untarGz() (toolchain archives)', () => {
  test('unpacks files and inner symlinks', async () => {
    const a = path.join(tmp, 'ok.tar.gz');
    await writeFile(a, tarGz([file('go/bin/go', 'ELF'), link('go/bin/go2', 'go')]));
    const dir = path.join(tmp, 'ok');
    await mkdir(dir);
    assert.equal(await untarGz(a, dir), 1);
    assert.equal(await readFile(path.join(dir, 'go/bin/go'), 'utf8'), 'ELF');
    assert.equal(await readlink(path.join(dir, 'go/bin/go2')), 'go');
    assert.equal((await lstat(path.join(dir, 'go/bin/go'))).mode & 0o777, 0o755);
  });
  for (const [name, entries, why] of [
    ['dotdot', [file('go/../../evil', 'x')], /path contains \.\./],
    ['absolute', [file('/etc/evil', 'x')], /absolute path/],
    ['link out', [link('go/l', '../../etc')], /leaves the tree/],
    ['through a link', [link('go/l', '.'), file('go/l/x', 'x')], /goes through a symlink/],
    [
      'hard link',
      [{ path: 'go/h', type: 'link', mode: 0o644, uid: 0, gid: 0, linkname: '/etc/passwd' } as TarEntry],
      /link entries are not allowed/,
    ],
  ] as const) {
    test(`refuses ${name}`, async () => {
      const a = path.join(tmp, `${name.replace(/ /g, '-')}.tar.gz`);
      await writeFile(a, tarGz([...entries]));
      const dir = path.join(tmp, name.replace(/ /g, '-'));
      await mkdir(dir);
      await assert.rejects(untarGz(a, dir), why);
    });
  }
});

describe('Go module hashes (test helper)', () => {
  test("hash1 gives go.sum's h1: for a known go.mod (github.com/google/uuid v1.6.0)", () => {
    assert.equal(
      hash1([{ name: 'go.mod', data: Buffer.from('module github.com/google/uuid\n') }]),
      'h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=',
    );
    assert.match(
      goSumLines({ path: 'a.example/m', version: 'v1.0.0', files: { 'go.mod': 'module a.example/m\n' } }),
      /^a\.example\/m v1\.0\.0 h1:\S+=\na\.example\/m v1\.0\.0\/go\.mod h1:\S+=\n$/,
    );
  });
});

describe('build info read from the binary', () => {
  const GOROOT = '/usr/lib/go-1.19';
  const goBin = path.join(GOROOT, 'bin', 'go');
  const hasGo = existsSync(goBin);
  const modLines = (text: string) =>
    text
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((w) => w[0] === 'mod' || w[0] === 'dep' || w[0] === '=>')
      .map((w) => w.slice(0, 3).join(' '));

  test('goModInfo gives the module lines `go version -m` prints (main module, a replaced dependency)', {
    skip: hasGo ? false : `needs ${GOROOT} (apt-get install golang-1.19-go)`,
  }, async () => {
    const app = path.join(tmp, 'bi-app');
    const dep = path.join(tmp, 'bi-dep');
    await mkdir(app, { recursive: true });
    await mkdir(dep, { recursive: true });
    await writeFile(path.join(dep, 'go.mod'), 'module example.com/dep\n\ngo 1.19\n');
    await writeFile(path.join(dep, 'dep.go'), 'package dep\n\nfunc Hello() string { return "hi" }\n');
    await writeFile(
      path.join(app, 'go.mod'),
      `module example.com/app\n\ngo 1.19\n\nrequire example.com/dep v1.2.3\n\nreplace example.com/dep v1.2.3 => ${dep}\n`,
    );
    await writeFile(
      path.join(app, 'main.go'),
      'package main\n\nimport "example.com/dep"\n\nfunc main() { println(dep.Hello()) }\n',
    );
    const env = {
      PATH: process.env.PATH,
      HOME: tmp,
      GOROOT,
      GOCACHE: path.join(tmp, 'bi-cache'),
      GOPATH: path.join(tmp, 'bi-gopath'),
      CGO_ENABLED: '0',
      GOENV: 'off',
      GOFLAGS: '-mod=mod',
      GOPROXY: 'off',
      GOTOOLCHAIN: 'local',
    };
    const bin = path.join(tmp, 'bi-out', 'app');
    await execFileP(goBin, ['build', '-trimpath', '-buildvcs=false', '-ldflags=-s -w', '-o', bin, '.'], {
      cwd: app,
      env,
    });
    const info = goModInfo(bin);
    assert.ok(info !== undefined, 'build info found in a stripped static binary');
    const { stdout } = await execFileP(goBin, ['version', '-m', bin], { env });
    assert.deepEqual(modLines(info), modLines(stdout));
    assert.ok(modLines(info).includes('dep example.com/dep v1.2.3'), info);
  });

  test('goModInfo answers undefined (the caller asks go) for what is not a Go ELF binary', async () => {
    const write = async (name: string, bytes: Buffer) => {
      const f = path.join(tmp, name);
      await writeFile(f, bytes);
      return f;
    };
    assert.equal(goModInfo(path.join(tmp, 'absent')), undefined);
    assert.equal(goModInfo(await write('script', Buffer.from('#!/bin/sh\necho hi\n'))), undefined);
    // An ELF64 header whose section table points past the end of the file.
    const elf = Buffer.alloc(64);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2;
    elf[5] = 1;
    elf.writeBigUInt64LE(1n << 40n, 0x28);
    elf.writeUInt16LE(64, 0x3a);
    elf.writeUInt16LE(3, 0x3c);
    elf.writeUInt16LE(1, 0x3e);
    assert.equal(goModInfo(await write('bad-elf', elf)), undefined);
    assert.equal(goModInfo('/bin/ls'), undefined, 'an ELF binary without Go build info');
  });
});
