// The run image of kiln's bookworm stack: distroless (no shell, no package manager), run user 1001
// (not the build user 1000),
// scanners' dpkg entries, a valid OS-package SBOM, reproducible, and real programs run in it.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createGunzip } from 'node:zlib';
import { readTar, type TarHeader } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import { DEFAULT_EPOCH } from '../../src/oci/memory.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import { SPDX_MEDIA_TYPE } from '../../src/sbom/spdx.ts';
import { createStack } from '../../src/stack/create.ts';
import { sbomOfImage } from '../../src/stack/sbom.ts';
import { buildStaticHello, podmanRun } from '../helpers/podman.ts';
import { bwrapAsUid1000 } from '../helpers/sandbox-rootfs.ts';
import { cyclonedxValidator, validateSpdx } from '../helpers/sbom-schemas.ts';
import { ensureTestStack, layerFile, type TestStack, testAccess } from '../helpers/stack.ts';

let stack: TestStack;
const entries = new Map<string, TarHeader>();
let tarBytes = 0;
let work = '';

before(async () => {
  stack = await ensureTestStack({ roles: ['run'] });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-run-image-'));
  await chmod(work, 0o755);
  const gunzip = createReadStream(await layerFile(stack, 'run')).pipe(createGunzip());
  gunzip.on('data', (c: Buffer) => {
    tarBytes += c.length;
  });
  for await (const e of readTar(gunzip)) entries.set(e.header.path.replace(/\/$/, ''), e.header);
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const canRunSandbox = spawnSync('bwrap', ['--version']).status === 0 && process.getuid?.() === 0;

describe('run image', () => {
  test('config: run user 1001:1000 (not the build user), PATH, CNB base image labels, fixed creation time', async () => {
    const cfg = await (await stack.image('run')).configFile();
    assert.equal(cfg.config?.User, '1001:1000');
    assert.equal(stack.config['run-user']?.uid, 1001);
    assert.notEqual(stack.config['run-user']?.uid, stack.config.user.uid);
    assert.equal(cfg.config?.WorkingDir, '/home/cnb');
    // CNB_USER_ID names the build user, which only the build image declares.
    assert.ok(!cfg.config?.Env?.some((e) => e.startsWith('CNB_USER_ID=') || e.startsWith('CNB_GROUP_ID=')));
    assert.ok(cfg.config?.Env?.some((e) => e.startsWith('PATH=/usr/local/sbin:')));
    assert.equal(cfg.created, '1980-01-01T00:00:01Z');
    assert.equal(cfg.os, 'linux');
    assert.equal(cfg.architecture, 'amd64');
    const l = cfg.config?.Labels ?? {};
    assert.equal(l['io.buildpacks.rebasable'], 'true');
    assert.equal(l['io.buildpacks.base.id'], 'io.kiln.stacks.bookworm');
    assert.equal(l['io.buildpacks.stack.id'], 'io.kiln.stacks.bookworm');
    assert.equal(l['io.buildpacks.base.distro.name'], 'debian');
    assert.equal(l['io.buildpacks.base.distro.version'], '12');
    assert.ok(l['io.buildpacks.base.maintainer']);
    assert.equal(l['org.opencontainers.image.created'], '1980-01-01T00:00:01Z');
  });

  test('has no shell, no dpkg, no apt, no docs or man pages; stays under 25 MB', () => {
    for (const p of [
      'bin/sh',
      'usr/bin/sh',
      'usr/bin/bash',
      'usr/bin/dash',
      'usr/bin/dpkg',
      'usr/bin/apt',
      'usr/bin/apt-get',
      'usr/bin/perl',
    ]) {
      assert.equal(entries.has(p), false, `${p} must not be in the run image`);
    }
    assert.equal([...entries.keys()].filter((p) => p.startsWith('usr/share/man/')).length, 0);
    assert.equal(
      [...entries.keys()].filter((p) => /^usr\/share\/doc\/[^/]+\/(?!copyright$)/.test(p)).length,
      0,
    );
    assert.equal(entries.get('bin')?.type, 'symlink');
    assert.ok(tarBytes <= 25 * 1024 * 1024, `uncompressed size ${tarBytes} bytes`);
  });

  test("owners are root except the run user's home; /tmp is 1777; users and CA bundle are there", async () => {
    for (const [p, h] of entries) {
      const home = p === 'home/cnb' || p.startsWith('home/cnb/');
      assert.equal(h.uid, home ? 1001 : 0, p);
      assert.equal(h.gid, home ? 1000 : 0, p);
    }
    assert.equal(entries.get('home/cnb')!.mode, 0o755);
    assert.equal(entries.get('tmp')!.mode, 0o1777);
    const rootfs = await stack.rootfs('run');
    const passwd = await readFile(path.join(rootfs, 'etc/passwd'), 'utf8');
    assert.match(passwd, /^root:x:0:0:/m);
    assert.match(passwd, /^cnb:x:1001:1000:cnb:\/home\/cnb:\/usr\/sbin\/nologin$/m);
    assert.match(passwd, /^nobody:x:65534:65534:/m);
    // The build user owns the app's layers but never runs here: it is not listed.
    assert.doesNotMatch(passwd, /^[^:]*:x:1000:/m);
    assert.match(await readFile(path.join(rootfs, 'etc/group'), 'utf8'), /^cnb:x:1000:$/m);
    const bundle = await readFile(path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt'), 'utf8');
    assert.ok((bundle.match(/BEGIN CERTIFICATE/g) ?? []).length > 100);
  });

  test('every package has a dpkg status.d entry, and the SBOM lists exactly those packages', async () => {
    const rootfs = await stack.rootfs('run');
    const statusD = (await readdir(path.join(rootfs, 'var/lib/dpkg/status.d'))).filter(
      (n) => !n.includes('.'),
    );
    const locked = stack.lock.run.packages.map((p) => p.name).sort();
    assert.deepEqual(statusD.sort(), locked);
    const libc = await readFile(path.join(rootfs, 'var/lib/dpkg/status.d/libc6'), 'utf8');
    assert.match(libc, /^Package: libc6\nStatus: install ok installed\n/);

    const cdx = JSON.parse(await readFile(path.join(stack.sbomDir, 'run.sbom.cdx.json'), 'utf8'));
    const spdx = JSON.parse(await readFile(path.join(stack.sbomDir, 'run.sbom.spdx.json'), 'utf8'));
    assert.deepEqual(cyclonedxValidator()(cdx), []);
    assert.deepEqual(validateSpdx(spdx), []);
    const cdxNames = (cdx.components as { name: string; purl: string }[]).map((c) => c.name).sort();
    assert.deepEqual(cdxNames, statusD.sort());
    for (const c of cdx.components as { purl: string }[])
      assert.match(c.purl, /^pkg:deb\/debian\/[^@]+@[^?]+\?arch=(amd64|all)&distro=debian-12$/);
    const spdxNames = (spdx.packages as { name: string; primaryPackagePurpose: string }[])
      .filter((p) => p.primaryPackagePurpose === 'LIBRARY')
      .map((p) => p.name)
      .sort();
    assert.deepEqual(spdxNames, statusD.sort());
    // Licences where the package says so machine-readably (zlib1g's DEP-5 copyright says Zlib).
    const zlib = (cdx.components as { name: string; licenses?: { license: { id?: string } }[] }[]).find(
      (c) => c.name === 'zlib1g',
    );
    assert.deepEqual(zlib?.licenses, [{ license: { id: 'Zlib' } }]);
  });

  test('the SBOMs are attached to the image as OCI referrers in the layout', async () => {
    const layout = await Layout.open(stack.layoutDir);
    const digest = (await layout.resolve(stack.tags.run)).digest;
    const cdx = await sbomOfImage(layout, digest, CYCLONEDX_MEDIA_TYPE);
    const spdx = await sbomOfImage(layout, digest, SPDX_MEDIA_TYPE);
    assert.equal((cdx as { specVersion: string }).specVersion, '1.6');
    assert.equal((spdx as { spdxVersion: string }).spdxVersion, 'SPDX-2.3');
    const hashes = (cdx as { metadata: { component: { hashes: { content: string }[] } } }).metadata.component
      .hashes;
    assert.equal(`sha256:${hashes[0]!.content}`, digest);
  });

  test('two creations from the same lock in other directories, umask and time give the same digests', async () => {
    const layoutDir = path.join(work, 'layout');
    const old = process.umask(0o077);
    try {
      const made = await createStack(stack.config, {
        lock: stack.lock,
        access: await testAccess(stack.config),
        layout: await Layout.init(layoutDir),
        tags: { run: 'run', build: 'build' },
        epoch: DEFAULT_EPOCH,
        roles: ['run'],
        workDir: path.join(work, 'staging'),
        sbomDir: path.join(work, 'sbom'),
      });
      const first = await (await Layout.open(stack.layoutDir)).resolve(stack.tags.run);
      assert.equal(made.run!.reused, false);
      assert.equal(made.run!.descriptor.digest, first.digest);
      assert.equal(
        await readFile(path.join(work, 'sbom/run.sbom.cdx.json'), 'utf8'),
        await readFile(path.join(stack.sbomDir, 'run.sbom.cdx.json'), 'utf8'),
      );
    } finally {
      process.umask(old);
    }
  });

  test('a static binary and the official Node.js build run in it as uid 1000', {
    skip: !canRunSandbox && 'needs root and bubblewrap',
  }, async () => {
    const rootfs = await stack.rootfs('run');
    const src = path.join(work, 'hello.c');
    await writeFile(
      src,
      '#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("uid=%d gid=%d\\n", getuid(), getgid());return 0;}\n',
    );
    const bin = path.join(work, 'hello');
    execFileSync('musl-gcc', ['-static', '-O2', '-o', bin, src]);
    const sandbox = (extra: string[], cmd: string[]) => bwrapAsUid1000(rootfs, extra, cmd, 60_000);
    const hello = sandbox(['--ro-bind', bin, '/tmp/hello'], ['/tmp/hello']);
    assert.equal(hello.status, 0, hello.stderr);
    assert.equal(hello.stdout, 'uid=1000 gid=1000\n');

    const script =
      "const fs=require('fs');const cp=require('child_process');let shell='none';try{cp.execSync('true');shell='yes'}catch{}" +
      "console.log(JSON.stringify({uid:process.getuid(),certs:fs.readFileSync('/etc/ssl/certs/ca-certificates.crt','utf8').length>0,tz:fs.readlinkSync('/etc/localtime'),shell,hash:require('crypto').createHash('sha256').update('x').digest('hex').slice(0,8)}))";
    const node = sandbox(['--ro-bind', process.execPath, '/tmp/node'], ['/tmp/node', '-e', script]);
    assert.equal(node.status, 0, node.stderr);
    assert.deepEqual(JSON.parse(node.stdout), {
      uid: 1000,
      certs: true,
      tz: '/usr/share/zoneinfo/Etc/UTC',
      shell: 'none',
      hash: '2d711642',
    });

    const sh = sandbox([], ['/bin/sh', '-c', 'true']);
    assert.notEqual(sh.status, 0, 'there is no shell to run');
  });

  test('podman runs the run image from the layout as its run user (1001:1000)', {
    skip: !canRunSandbox && 'needs root',
  }, async () => {
    const bin = path.join(work, 'hello-podman');
    await buildStaticHello(bin);
    // podman names the image after the layout's path, which must then be a valid reference
    // (the cache path has a ".cache" component): go through a plain symlink.
    const link = path.join(work, 'layoutlink');
    await symlink(stack.layoutDir, link);
    const r = await podmanRun(`oci:${link}:${stack.tags.run}`, ['/hello', 'from', 'podman'], {
      flags: ['-v', `${bin}:/hello:ro`],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'hello uid=1001 gid=1000 from podman');
  });
});
