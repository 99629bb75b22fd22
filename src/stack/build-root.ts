import { chmodSync, constants, lchownSync, lstatSync, readdirSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoOf, isAbsent, KilnError } from '../internal/errors.ts';
import { BubblewrapExecutor } from '../sandbox/bubblewrap.ts';
import type { Executor, RunResult } from '../sandbox/executor.ts';
import { leaseIdBlock } from '../sandbox/identity.ts';
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
  /** The sandbox to run them in (default: bubblewrap with the executor's policy). */
  readonly executor?: Executor;
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
 * dpkg database in the unpacked state, runs the maintainer scripts through the sandbox executor
 * (no host network, no capabilities but the file ones of MAINTAINER_SCRIPT_CAPABILITIES, limits,
 * its own session) as root of a user namespace whose ids are a leased block of kiln's range, with
 * the staged tree as `/`, then adds the stack user and home.
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
  const out: string[] = [];
  const onLine = (l: string) => {
    if (l === '') return;
    out.push(l);
    if (out.length > 200) out.shift();
    opts.onOutput?.(l);
  };
  // As root, the scripts' root is no host id: inside ids 0-65535 are a block of kiln's range
  // (sandbox/identity.ts), so they can chown to system groups (mail, shadow, ...) and cannot touch
  // a host file. The staged tree is given to that block first (host 0 -> block+0): capabilities
  // in a user namespace only act on files whose owners it maps. Owners in the image do not come
  // from these files (rootLayer writes 0), so the image is the same. Without root, bubblewrap
  // maps just inside-0 to kiln's uid (chowns to other ids then fail).
  const asRoot = process.getuid?.() === 0;
  const block = asRoot ? await leaseIdBlock(ID_BLOCK) : undefined;
  try {
    if (block) shiftOwners(root, block.uid, block.gid, ID_BLOCK);
    const executor =
      opts.executor ??
      new BubblewrapExecutor({
        hostUid: asRoot ? 0 : (process.getuid?.() ?? 1),
        ...(opts.bwrap ? { bwrap: opts.bwrap } : {}),
      });
    let result: RunResult;
    try {
      result = await executor.run({
        argv: ['/bin/sh', '/kiln-configure.sh'],
        env: {},
        cwd: '/',
        uid: 0,
        gid: 0,
        allowRoot: true,
        rootfs: root,
        writableRootfs: true,
        mounts: [],
        network: 'none',
        hostname: 'kiln',
        ...(block
          ? {
              idRange: { count: ID_BLOCK, hostUid: block.uid, hostGid: block.gid },
              capabilities: MAINTAINER_SCRIPT_CAPABILITIES,
            }
          : {}),
        stdout: onLine,
        stderr: onLine,
        timeoutMs: CONFIGURE_TIMEOUT_MS,
      });
    } catch (e) {
      throw new KilnError(
        `cannot run the maintainer scripts to configure the build image: ${(e as Error).message}`,
      );
    }
    if (result.exitCode !== 0) {
      const why = result.timedOut
        ? `timed out after ${CONFIGURE_TIMEOUT_MS / 60_000} min`
        : `exit ${result.exitCode}`;
      const notes = result.notes.length ? ` [${result.notes.join('; ')}]` : '';
      throw new KilnError(
        `configuring the build image failed (maintainer scripts, ${why})${notes}: ${out.slice(-8).join(' | ')}`,
      );
    }
    // The scripts ran as the block's ids: what kiln writes next must not follow a link they left.
    await finishAfterScripts(root, config);
  } finally {
    await block?.release();
  }
}

/** Inside ids of the maintainer scripts' namespace (0-65535: every Debian system and user id). */
const ID_BLOCK = 65536;

/**
 * What dpkg's maintainer scripts may do as root of their namespace (the file half of Docker's
 * default set): chown/chgrp to system ids, write and chmod files of other owners, keep setgid
 * bits on group-owned dirs (base-files' `chmod 2775` on root:staff). No CAP_SYS_ADMIN, no
 * CAP_SETUID/SETGID (no script of the stack's packages switches users), no network.
 */
export const MAINTAINER_SCRIPT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
];

/** A bound on `dpkg --configure -a` (about 80 s for the full build image on a 2-core machine). */
const CONFIGURE_TIMEOUT_MS = 30 * 60_000;

/**
 * shiftOwners gives every entry of the staged tree owned by a host id below `count` the matching
 * id of the block (host 0 -> block+0), keeping set-id bits (chown clears them, even as root).
 */
function shiftOwners(root: string, uid: number, gid: number, count: number): void {
  const visit = (p: string): void => {
    const st = lstatSync(p);
    if (st.uid < count && st.gid < count) {
      lchownSync(p, uid + st.uid, gid + st.gid);
      if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) chmodSync(p, st.mode & 0o7777);
    }
    if (st.isDirectory()) for (const name of readdirSync(p)) visit(join(p, name));
  };
  visit(root);
}

/**
 * A path of the staged root, checked: every component below `root` exists as a real directory
 * (or is missing), never a symlink, so a root-side write cannot be led out of the tree by a link
 * the scripts planted. Nothing runs as the scripts' ids while kiln checks and writes.
 */
function stagedPath(root: string, rel: string): string {
  let p = root;
  const parts = rel.split('/').filter((x) => x !== '');
  for (const [i, part] of parts.entries()) {
    p = join(p, part);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) break;
    if (st.isSymbolicLink() || (i < parts.length - 1 && !st.isDirectory())) {
      throw new KilnError(
        `configuring the build image: /${parts.slice(0, i + 1).join('/')} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'} after the maintainer scripts: expected a directory or file of the image`,
      );
    }
  }
  return join(root, ...parts);
}

async function finishAfterScripts(root: string, config: StackConfig): Promise<void> {
  for (const p of [
    'kiln-configure.sh',
    'usr/sbin/policy-rc.d',
    'etc',
    'tmp',
    'root',
    'home',
    `home/${config.user.name}`,
  ])
    stagedPath(root, p);
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
    await rm(stagedPath(root, p), { force: true });
  }
}

/**
 * addUser appends the stack user and group to passwd and group, and to shadow and gshadow where
 * the image has them (the `passwd` package makes them; kiln does not invent them).
 */
async function addUser(root: string, config: StackConfig): Promise<void> {
  const u = config.user;
  // Absent (ENOENT) only: an unreadable file is not one the user may be added to as if new.
  const lines = async (file: string) =>
    (
      await readFile(stagedPath(root, file), 'utf8').catch((e: unknown) => {
        if (isAbsent(e)) return undefined;
        throw new KilnError(`cannot read ${file} of the stack root (${errnoOf(e) ?? (e as Error).message})`, {
          cause: e,
        });
      })
    )?.split('\n');
  const add = async (file: string, line: string, create: boolean) => {
    const have = await lines(file);
    if (have === undefined && !create) return;
    if (have?.some((l) => l.startsWith(`${u.name}:`))) return;
    // O_NOFOLLOW: the file itself is no link either (stagedPath checked the dirs above it).
    const fh = await open(
      stagedPath(root, file),
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o644,
    );
    try {
      await fh.appendFile(line);
    } finally {
      await fh.close();
    }
  };
  await add('etc/group', `${u.name}:x:${u.gid}:\n`, true);
  await add('etc/passwd', `${u.name}:x:${u.uid}:${u.gid}:${u.name}:/home/${u.name}:/bin/bash\n`, true);
  // Day 0 as the password change date keeps the file independent of the clock.
  await add('etc/shadow', `${u.name}:*:0:0:99999:7:::\n`, false);
  await add('etc/gshadow', `${u.name}:!::\n`, false);
}
