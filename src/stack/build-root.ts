import { spawn } from 'node:child_process';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KilnError } from '../cnb/exit-codes.ts';
import type { StackConfig } from './config.ts';
import { infoName, writeDpkgDatabase } from './dpkg-db.ts';
import { homeAndTmp } from './finish.ts';
import { writeFileExact } from './fsx.ts';
import { STACK_PATH } from './image.ts';
import type { UnpackedPackage } from './rootfs.ts';

/** SandboxOptions say how to run maintainer scripts inside the staged root. */
export interface SandboxOptions {
  /** bubblewrap binary (default "bwrap" on PATH). */
  readonly bwrap?: string;
  /** Called with each line the scripts print (dpkg's progress), for --verbose logs. */
  readonly onOutput?: (line: string) => void;
}

/**
 * configureScript is the shell script run as root inside the sandbox: each package's `preinst
 * install` in dependency-free name order for the packages that have one (dpkg would run them
 * during unpack, which kiln did itself), then `dpkg --configure -a`, which orders the postinsts
 * by dependencies and runs triggers.
 */
export function configureScript(pkgs: readonly UnpackedPackage[], arch: string, epoch: number): string {
  const lines = [
    'set -e',
    // The caller's umask must not leak into modes of files the scripts create.
    'umask 022',
    'export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8 LANG=C.UTF-8',
    `export PATH=${STACK_PATH} HOME=/root`,
    // SOURCE_DATE_EPOCH makes py3compile write hash-checked .pyc files (PEP 552) instead of
    // ones that embed the unpack time of their sources; other tools honour it too.
    `export SOURCE_DATE_EPOCH=${epoch}`,
  ];
  // base-passwd's preinst must come first: it creates /etc/passwd and /etc/group that the
  // others' scripts (chown, adduser) need.
  const ordered = [...pkgs].sort((a, b) =>
    a.pkg.name === 'base-passwd' ? -1 : b.pkg.name === 'base-passwd' ? 1 : 0,
  );
  for (const u of ordered) {
    if (!u.control.files.has('preinst')) continue;
    const name = infoName(u);
    lines.push(
      `DPKG_MAINTSCRIPT_PACKAGE=${u.pkg.name} DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_ARCH=${arch} DPKG_ROOT= DPKG_ADMINDIR=/var/lib/dpkg /var/lib/dpkg/info/${name}.preinst install`,
    );
  }
  lines.push('dpkg --configure -a --force-unsafe-io');
  return `${lines.join('\n')}\n`;
}

/**
 * finishBuildRoot makes the unpacked build packages a configured Debian system: it writes the
 * dpkg database in the unpacked state, runs the maintainer scripts as root inside a user
 * namespace with the staged tree as `/` (bubblewrap), then adds the stack user and home.
 */
export async function finishBuildRoot(
  root: string,
  pkgs: readonly UnpackedPackage[],
  config: StackConfig,
  opts: SandboxOptions & { epoch: number },
): Promise<void> {
  await writeDpkgDatabase(root, pkgs, config.archive.arch);
  await writeFileExact(
    join(root, 'kiln-configure.sh'),
    configureScript(pkgs, config.archive.arch, opts.epoch),
    0o755,
  );
  // policy-rc.d forbids starting services while configuring (no init system here anyway).
  await writeFileExact(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', 0o755);
  const bwrapArgs = [
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-net',
    '--hostname',
    'kiln',
    '--bind',
    root,
    '/',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/tmp',
    '--die-with-parent',
    '--clearenv',
    '/bin/sh',
    '/kiln-configure.sh',
  ];
  const out: string[] = [];
  const bwrap = opts.bwrap ?? 'bwrap';
  // As root, a user namespace mapping ids 0-65535 onto themselves lets maintainer scripts chown
  // to system groups (mail, shadow, ...), which a single-id mapping refuses. unshare(1) can only
  // map ranges through newuidmap and /etc/subuid, so kiln writes the maps itself while the
  // child waits on stdin. Without root, bubblewrap maps just uid 0 (such chowns then fail).
  const ranged = process.getuid?.() === 0;
  const cmd = ranged ? 'unshare' : bwrap;
  const args = ranged
    ? ['--user', '--', '/bin/sh', '-c', 'read -r go && exec "$@"', 'sh', bwrap, ...bwrapArgs]
    : ['--unshare-user', '--uid', '0', '--gid', '0', ...bwrapArgs];
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    if (ranged) {
      mapIds(child.pid!).then(
        () => child.stdin.end('go\n'),
        (e: Error) => {
          child.kill();
          reject(
            new KilnError(`cannot set up the user namespace to configure the build image: ${e.message}`),
          );
        },
      );
    } else child.stdin.end();
    const onData = (d: Buffer) => {
      for (const l of d.toString('utf8').split('\n')) {
        if (l === '') continue;
        out.push(l);
        if (out.length > 200) out.shift();
        opts.onOutput?.(l);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) =>
      reject(new KilnError(`cannot start bubblewrap to configure the build image: ${e.message}`)),
    );
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0) {
    throw new KilnError(
      `configuring the build image failed (maintainer scripts, exit ${code}): ${out.slice(-8).join(' | ')}`,
    );
  }
  await rm(join(root, 'kiln-configure.sh'), { force: true });
  await rm(join(root, 'usr/sbin/policy-rc.d'), { force: true });
  await addUser(root, config);
  await homeAndTmp(root, config);
  // Caches and logs that dpkg and the scripts leave behind only make the layer differ run to run.
  for (const p of [
    'var/cache/debconf/config.dat-old',
    'var/cache/debconf/templates.dat-old',
    'var/lib/dpkg/status-old',
    'var/lib/dpkg/diversions-old',
    'var/log/dpkg.log',
    'var/log/alternatives.log',
    // ldconfig's cache of inode numbers and mtimes: different on every run, rebuilt on demand.
    'var/cache/ldconfig/aux-cache',
    'var/lib/dpkg/available-old',
  ]) {
    await rm(join(root, p), { force: true });
  }
}

/** mapIds waits until `pid` is in its own user namespace, then maps ids 0-65535 onto themselves. */
async function mapIds(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const cur = await readFile(`/proc/${pid}/uid_map`, 'utf8');
    if (cur.trim() === '') break;
    if (Date.now() > deadline) throw new Error('child did not enter a new user namespace');
    await new Promise((r) => setTimeout(r, 2));
  }
  await writeFile(`/proc/${pid}/uid_map`, '0 0 65536\n');
  await writeFile(`/proc/${pid}/gid_map`, '0 0 65536\n');
}

/**
 * addUser appends the stack user and group to passwd and group, and to shadow and gshadow where
 * the image has them (the `passwd` package makes them; kiln does not invent them).
 */
async function addUser(root: string, config: StackConfig): Promise<void> {
  const u = config.user;
  const lines = async (file: string) =>
    (await readFile(join(root, file), 'utf8').catch(() => undefined))?.split('\n');
  const add = async (file: string, line: string, create: boolean) => {
    const have = await lines(file);
    if (have === undefined && !create) return;
    if (have?.some((l) => l.startsWith(`${u.name}:`))) return;
    await appendFile(join(root, file), line);
  };
  await add('etc/group', `${u.name}:x:${u.gid}:\n`, true);
  await add('etc/passwd', `${u.name}:x:${u.uid}:${u.gid}:${u.name}:/home/${u.name}:/bin/bash\n`, true);
  // Day 0 as the password change date keeps the file independent of the clock.
  await add('etc/shadow', `${u.name}:*:0:0:99999:7:::\n`, false);
  await add('etc/gshadow', `${u.name}:!::\n`, false);
}
