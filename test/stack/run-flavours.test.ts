// Run-image flavours of kiln's bookworm stack: the default stays shell-free and has the libraries
// current Node.js needs (libatomic1); the "shell" flavour adds dash as /bin/sh, bash, coreutils,
// sed and grep. Each has its own lock section, labels, SBOM and the same run user; the shell
// flavour runs a `#!/bin/sh` script and the samples' `#!/usr/bin/env bash` script for real.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, lstat, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import { parseStackConfig, runFlavours } from '../../src/stack/config.ts';
import { StackLabel } from '../../src/stack/image.ts';
import { formatLock, inputsDigest, lockedFlavour, parseLock } from '../../src/stack/lock.ts';
import { sbomOfImage } from '../../src/stack/sbom.ts';
import { podmanRun } from '../helpers/podman.ts';
import { bwrapAsUid1000 } from '../helpers/sandbox-rootfs.ts';
import { ensureTestStack, type TestStack } from '../helpers/stack.ts';

let stack: TestStack;
let work = '';

before(async () => {
  stack = await ensureTestStack({ roles: ['run'] });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-run-flavours-'));
  await chmod(work, 0o755);
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const present = (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );
const canRunSandbox = spawnSync('bwrap', ['--version']).status === 0 && process.getuid?.() === 0;

describe('run-image flavours: definition and lock', () => {
  test('the shipped stack has the default and the shell flavour; the shell one takes back what the default excludes', () => {
    const all = runFlavours(stack.config);
    assert.deepEqual(
      all.map((f) => [f.flavour, f.name]),
      [
        ['default', 'kiln/stacks/bookworm/run'],
        ['shell', 'kiln/stacks/bookworm/run-shell'],
      ],
    );
    const shell = all[1]!;
    for (const p of ['dash', 'bash', 'coreutils']) {
      assert.ok(shell.packages.includes(p), p);
      assert.ok(!shell.exclude.includes(p), `${p} is excluded by [run] but wanted by the flavour`);
      assert.ok(all[0]!.exclude.includes(p));
    }
    // No package manager in any flavour.
    assert.ok(shell.exclude.includes('dpkg'));
    assert.ok(all[0]!.packages.includes('libatomic1'));
  });

  test('the lock has a section per flavour, fresh for the stack file, and keeps it through format/parse', async () => {
    assert.equal(stack.lock.inputs, inputsDigest(stack.config));
    const names = (f: string) => lockedFlavour(stack.lock, f).map((p) => p.name);
    assert.ok(names('default').includes('libatomic1'));
    for (const p of ['dash', 'bash', 'coreutils', 'sed', 'grep', 'libatomic1'])
      assert.ok(names('shell').includes(p), p);
    for (const p of ['dash', 'bash', 'coreutils', 'dpkg', 'perl-base'])
      assert.ok(!names('default').includes(p), p);
    assert.ok(!names('shell').includes('dpkg'));
    const text = await readFile(stack.lockFile, 'utf8');
    assert.match(text, /^\[\[flavours\.shell\.packages\]\]$/m);
    assert.deepEqual(parseLock(formatLock(stack.lock), 'x'), stack.lock);
    assert.throws(() => lockedFlavour(stack.lock, 'nope'), /no packages for the run-image flavour "nope"/);
  });

  test('flavour names are checked; "default" is the [run] image, not a flavour key', () => {
    const base = `id = "x"\n[distro]\nname = "debian"\nversion = "12"\n[archive]\narch = "amd64"\nsuites = ["bookworm"]\n[user]\nname = "cnb"\nuid = 1000\ngid = 1000\n[run]\nname = "r"\npackages = ["libc6"]\n[build]\nname = "b"\npackages = ["bash"]\n`;
    assert.throws(
      () => parseStackConfig(`${base}[run.flavours.default]\nname = "d"\npackages = ["dash"]\n`, 's.toml'),
      /s\.toml: key "run\.flavours": "default" names the \[run\] image itself/,
    );
    assert.throws(
      () => parseStackConfig(`${base}[run.flavours.Shell]\nname = "d"\npackages = ["dash"]\n`, 's.toml'),
      /key "run\.flavours": "Shell": expected a flavour name/,
    );
    // A stack without flavours keeps the lock inputs it had (no "flavours" key in the digest).
    const plain = parseStackConfig(base, 's.toml');
    assert.deepEqual(
      runFlavours(plain).map((f) => f.flavour),
      ['default'],
    );
  });
});

describe('run-image flavours: the images', () => {
  test('both run as the run user 1001:1000 and say which flavour they are', async () => {
    for (const [key, flavour] of [
      ['run', 'default'],
      ['run-shell', 'shell'],
    ] as const) {
      const cfg = await (await stack.image(key)).configFile();
      assert.equal(cfg.config?.User, '1001:1000', key);
      const l = cfg.config?.Labels ?? {};
      assert.equal(l[StackLabel.Flavour], flavour, key);
      assert.equal(l[StackLabel.Role], 'run');
      assert.equal(l['io.buildpacks.rebasable'], 'true');
      assert.equal(l['io.buildpacks.base.id'], 'io.kiln.stacks.bookworm');
    }
    const shell = (await (await stack.image('run-shell')).configFile()).config?.Labels ?? {};
    assert.equal(shell['org.opencontainers.image.title'], 'kiln/stacks/bookworm/run-shell');
  });

  test('default: libatomic.so.1 (current Node.js), still no shell, no coreutils', async () => {
    const root = await stack.rootfs('run');
    assert.ok(await present(path.join(root, 'usr/lib/x86_64-linux-gnu/libatomic.so.1')));
    for (const p of ['usr/bin/sh', 'usr/bin/bash', 'usr/bin/dash', 'usr/bin/env', 'usr/bin/ls'])
      assert.ok(!(await present(path.join(root, p))), `${p} in the default run image`);
  });

  test('shell: /bin/sh is dash; bash, env, ls, sed and grep are there; passwd has the run user', async () => {
    const root = await stack.rootfs('run-shell');
    assert.equal(await readlink(path.join(root, 'usr/bin/sh')), 'dash');
    for (const p of [
      'usr/bin/dash',
      'usr/bin/bash',
      'usr/bin/env',
      'usr/bin/ls',
      'usr/bin/sed',
      'usr/bin/grep',
    ])
      assert.ok(await present(path.join(root, p)), p);
    assert.ok(await present(path.join(root, 'usr/lib/x86_64-linux-gnu/libatomic.so.1')));
    assert.ok(!(await present(path.join(root, 'usr/bin/dpkg'))));
    assert.match(await readFile(path.join(root, 'etc/passwd'), 'utf8'), /^cnb:x:1001:1000:/m);
  });

  test('each flavour has its own SBOM: files and the OCI referrer list its packages', async () => {
    const layout = await Layout.open(stack.layoutDir);
    const digest = (await layout.resolve(stack.tags['run-shell']!)).digest;
    const sbom = (await sbomOfImage(layout, digest, CYCLONEDX_MEDIA_TYPE)) as {
      components?: { name?: string }[];
    };
    const names = (sbom.components ?? []).map((c) => c.name);
    for (const p of ['bash', 'dash', 'coreutils']) assert.ok(names.includes(p), p);
    const file = JSON.parse(await readFile(path.join(stack.sbomDir, 'run-shell.sbom.cdx.json'), 'utf8')) as {
      components: { name: string }[];
    };
    assert.deepEqual(file.components.map((c) => c.name).sort(), [...names].sort());
    const plain = JSON.parse(await readFile(path.join(stack.sbomDir, 'run.sbom.cdx.json'), 'utf8')) as {
      components: { name: string }[];
    };
    assert.ok(plain.components.some((c) => c.name === 'libatomic1'));
    assert.ok(!plain.components.some((c) => c.name === 'bash'));
  });

  test('shell: a #!/bin/sh script and a #!/usr/bin/env bash script run as the run user (bwrap)', {
    skip: !canRunSandbox && 'needs root and bwrap',
  }, async () => {
    const root = await stack.rootfs('run-shell');
    await writeFile(path.join(work, 'hello.sh'), '#!/bin/sh\nset -e\necho "sh: $(id -u) $0"\n', {
      mode: 0o755,
    });
    await writeFile(
      path.join(work, 'sys-info.sh'),
      '#!/usr/bin/env bash\necho "bash $BASH_VERSION"\nexport | sed "s/^/  /" | grep -c declare\n',
      { mode: 0o755 },
    );
    const bind = ['--ro-bind', work, '/home/cnb'];
    const sh = bwrapAsUid1000(root, bind, ['/home/cnb/hello.sh'], 20_000);
    assert.equal(sh.status, 0, sh.stderr);
    assert.equal(sh.stdout.trim(), 'sh: 1000 /home/cnb/hello.sh');
    const bash = bwrapAsUid1000(root, bind, ['/home/cnb/sys-info.sh'], 20_000);
    assert.equal(bash.status, 0, bash.stderr);
    assert.match(bash.stdout, /^bash 5\.2/);
    // The same script on the default flavour: no interpreter.
    const none = bwrapAsUid1000(await stack.rootfs('run'), bind, ['/home/cnb/hello.sh'], 20_000);
    assert.notEqual(none.status, 0);
  });

  test('shell: podman runs a #!/bin/sh script as the run user 1001', async () => {
    const link = path.join(work, 'layoutlink');
    await symlink(stack.layoutDir, link);
    await writeFile(path.join(work, 'p.sh'), '#!/bin/sh\necho "podman sh uid=$(id -u) gid=$(id -g)"\n', {
      mode: 0o755,
    });
    const r = await podmanRun(`oci:${link}:${stack.tags['run-shell']}`, ['/p.sh'], {
      flags: ['-v', `${path.join(work, 'p.sh')}:/p.sh:ro`],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'podman sh uid=1001 gid=1000');
  });
});
