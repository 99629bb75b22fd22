/**
 * Host identities of sandboxes. As root, kiln never runs untrusted code as a host id that a real
 * account has (the build user's CNB_USER_ID, typically 1000, is often a person's login): each
 * build and each `kiln run` leases one id of a subordinate-id range reserved for kiln, and bwrap's
 * user namespace maps the build user (inside CNB_USER_ID:CNB_GROUP_ID) onto it. No host user can
 * then signal, ptrace or race the sandbox's processes, and RLIMIT_NPROC, which the kernel counts
 * per host uid, is a budget of that one build. The stack's maintainer scripts lease a whole block
 * instead (inside 0..count-1, see `leaseIdBlock`), so their inside-root is no host id either.
 *
 * The range is `kiln:<start>:<count>` in /etc/subuid and /etc/subgid when present (the files
 * newuidmap and podman use, so an administrator keeps every range in one place), else
 * DEFAULT_ID_RANGE. It is refused when it overlaps an account or group of the host or another
 * subordinate range.
 *
 * Layout of a range: its first block of BLOCK_SIZE ids holds the single-id slots (slot s is
 * start+s, uid and gid alike); the blocks after it are the blocks leased whole. Leases are lock
 * files in a root-only directory (src/internal/lock.ts: owner pid and start time inside, a lock
 * whose owner is gone is taken over), released when the build ends. The lowest free slot is taken,
 * so consecutive builds get the same ids (layer fingerprints cover owners).
 */

import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { KilnError } from '../internal/errors.ts';
import { tryLock } from '../internal/lock.ts';
import { ensureOwnedDir } from '../internal/owned-dir.ts';

/** Host user and group ids. */
export interface HostIds {
  readonly uid: number;
  readonly gid: number;
}

/** Subordinate ids reserved for kiln: uids uidStart..uidStart+count-1, gids likewise. */
export interface IdRange {
  readonly uidStart: number;
  readonly gidStart: number;
  readonly count: number;
  /** Where the range came from, for messages (`/etc/subuid` or `kiln's default`). */
  readonly source: string;
}

/** Ids a block lease maps inside 0..count-1 onto; as a slot block, the first is the slot. */
export const BLOCK_SIZE = 65536;

/**
 * The range used without a `kiln` entry in /etc/subuid: 2^24 ids ending just below 2^31
 * (0x7F000000..0x7FFFFFFF). No distribution allocates accounts there (useradd's SUB_UID_MAX is
 * 600100000, systemd's container ranges end at 0x6FFFFFFF), ids stay below 2^31 for software that
 * keeps them in a signed int, and (uid_t)-1 and 65534 are far away.
 */
export const DEFAULT_ID_RANGE: IdRange = {
  uidStart: 0x7f000000,
  gidStart: 0x7f000000,
  count: 1 << 24,
  source: "kiln's default range",
};

/** Root-only directory of the lease files (tmpfs: leases die with the machine, as their owners do). */
export const DEFAULT_LEASE_DIR = '/run/kiln/id-leases';

/** Files the range is read from and checked against (tests point them elsewhere). */
export interface IdentityFiles {
  readonly subuid: string;
  readonly subgid: string;
  readonly passwd: string;
  readonly group: string;
  readonly leaseDir: string;
}

const SYSTEM_FILES: IdentityFiles = {
  subuid: '/etc/subuid',
  subgid: '/etc/subgid',
  passwd: '/etc/passwd',
  group: '/etc/group',
  leaseDir: DEFAULT_LEASE_DIR,
};

interface SubEntry {
  readonly name: string;
  readonly start: number;
  readonly count: number;
  readonly line: number;
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 is "no change" to chown and setresuid

async function readLines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, 'utf8')).split('\n');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

async function subEntries(file: string): Promise<SubEntry[]> {
  const out: SubEntry[] = [];
  for (const [i, raw] of (await readLines(file)).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [name = '', start = '', count = ''] = line.split(':');
    const s = Number(start);
    const c = Number(count);
    if (!/^\d+$/.test(start) || !/^\d+$/.test(count) || c < 1 || s + c - 1 > MAX_ID) {
      if (name !== 'kiln') continue; // another tool's business
      throw new KilnError(
        `${file} line ${i + 1}: "${line}" is not a valid kiln range: expected kiln:<start>:<count> with ids up to ${MAX_ID}`,
      );
    }
    out.push({ name, start: s, count: c, line: i + 1 });
  }
  return out;
}

/** Ids (field 3) of /etc/passwd or /etc/group. */
async function accountIds(file: string): Promise<{ name: string; id: number }[]> {
  const out: { name: string; id: number }[] = [];
  for (const line of await readLines(file)) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2] ?? '')) out.push({ name: f[0] ?? '', id: Number(f[2]) });
  }
  return out;
}

/**
 * kilnIdRange reads kiln's range from the subordinate-id files (else the default) and checks that
 * no host account, group or other subordinate range falls into it.
 */
export async function kilnIdRange(files: Partial<IdentityFiles> = {}): Promise<IdRange> {
  const f = { ...SYSTEM_FILES, ...files };
  const sub = { uid: await subEntries(f.subuid), gid: await subEntries(f.subgid) };
  const mine = { uid: sub.uid.find((e) => e.name === 'kiln'), gid: sub.gid.find((e) => e.name === 'kiln') };
  if ((mine.uid === undefined) !== (mine.gid === undefined)) {
    const [has, lacks] = mine.uid ? [f.subuid, f.subgid] : [f.subgid, f.subuid];
    throw new KilnError(
      `${has} has a kiln range but ${lacks} has none: expected a kiln:<start>:<count> line in both`,
    );
  }
  const range: IdRange =
    mine.uid && mine.gid
      ? {
          uidStart: mine.uid.start,
          gidStart: mine.gid.start,
          count: Math.min(mine.uid.count, mine.gid.count),
          source: `${f.subuid}`,
        }
      : DEFAULT_ID_RANGE;
  const checks = [
    { kind: 'uid', start: range.uidStart, file: f.passwd, what: 'account', subs: sub.uid, subFile: f.subuid },
    { kind: 'gid', start: range.gidStart, file: f.group, what: 'group', subs: sub.gid, subFile: f.subgid },
  ] as const;
  for (const c of checks) {
    const end = c.start + range.count - 1;
    if (c.start < 1 || end > MAX_ID) {
      throw new KilnError(`kiln's ${c.kind} range ${c.start}-${end} is outside 1-${MAX_ID}`);
    }
    const clash = (await accountIds(c.file)).find((a) => a.id >= c.start && a.id <= end);
    if (clash) {
      throw new KilnError(
        `kiln's ${c.kind} range ${c.start}-${end} (${range.source}) contains ${c.what} ${clash.name} (${clash.id}) of ${c.file}: expected ids no host ${c.what} uses (set kiln:<start>:<count> in ${c.subFile})`,
      );
    }
    const other = c.subs.find((e) => e.name !== 'kiln' && e.start <= end && e.start + e.count - 1 >= c.start);
    if (other) {
      throw new KilnError(
        `kiln's ${c.kind} range ${c.start}-${end} (${range.source}) overlaps ${other.name}'s range on line ${other.line} of ${c.subFile}: expected a range of kiln's own`,
      );
    }
  }
  return range;
}

/** A leased identity; `release()` gives it back (idempotent). */
export interface IdLease extends HostIds {
  release(): Promise<void>;
}

/** A leased block: host ids uid..uid+count-1 (and gid..) for inside ids 0..count-1. */
export interface IdBlockLease extends IdLease {
  readonly count: number;
}

/** The lease directory: created root-only; anything else there (a link, another owner) is refused. */
async function leaseDir(dir: string): Promise<string> {
  // /run/kiln and everything above it too: whoever can rename them can swap the leases.
  ensureOwnedDir(dir, { what: "kiln's id leases" });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new KilnError(
      `${dir}: expected a directory owned by root and writable only by it (kiln's id leases)`,
    );
  }
  return dir;
}

async function lease(
  dir: string,
  prefix: string,
  slots: number,
  what: string,
  first?: number,
): Promise<{ slot: number; release(): Promise<void> }> {
  const order = first === undefined ? [] : [first];
  for (let slot = 0; slot < slots; slot++) if (slot !== first) order.push(slot);
  for (const slot of order) {
    const held = await tryLock(path.join(dir, `${prefix}-${slot}`));
    if (held) return { slot, release: () => held.release() };
  }
  throw new KilnError(`all ${slots} ${what} of kiln's id range are in use by running builds`);
}

/** Options of the lease functions. */
export interface LeaseOptions {
  /** Default: kilnIdRange() of the system files. */
  readonly range?: IdRange;
  readonly files?: Partial<IdentityFiles>;
  /**
   * The slot to take when it is free (leaseHostIds: its host ids), else the lowest free one as
   * always: e.g. the owner of the layers the previous build of the same cache kept, which then
   * need no chown (and no new fingerprint). Ids outside the range or of no slot are ignored.
   */
  readonly prefer?: HostIds;
}

/**
 * leaseHostIds leases one slot of kiln's range: the host uid:gid one build (or `kiln run`) runs
 * its sandboxed processes as. Needs root (only root can switch to it).
 */
export async function leaseHostIds(opts: LeaseOptions = {}): Promise<IdLease> {
  const range = opts.range ?? (await kilnIdRange(opts.files));
  const dir = await leaseDir(opts.files?.leaseDir ?? DEFAULT_LEASE_DIR);
  const slots = Math.min(range.count, BLOCK_SIZE);
  const p = opts.prefer;
  const slot = p ? p.uid - range.uidStart : -1;
  const first = p && slot >= 0 && slot < slots && p.gid - range.gidStart === slot ? slot : undefined;
  const l = await lease(dir, `${range.uidStart}-id`, slots, 'build identities', first);
  return { uid: range.uidStart + l.slot, gid: range.gidStart + l.slot, release: l.release };
}

/**
 * leaseIdBlock leases a block of `count` (at most BLOCK_SIZE) contiguous host ids after the slot
 * block: a user namespace maps its inside ids 0..count-1 onto them (dpkg's maintainer scripts
 * chown files to system users), so its root is no host id.
 */
export async function leaseIdBlock(count: number, opts: LeaseOptions = {}): Promise<IdBlockLease> {
  if (!Number.isInteger(count) || count < 1 || count > BLOCK_SIZE) {
    throw new KilnError(`id block of ${count} ids: expected 1 to ${BLOCK_SIZE}`);
  }
  const range = opts.range ?? (await kilnIdRange(opts.files));
  const blocks = Math.floor(range.count / BLOCK_SIZE) - 1;
  if (blocks < 1) {
    throw new KilnError(
      `kiln's id range (${range.source}) holds ${range.count} ids: a block of ${count} needs at least ${2 * BLOCK_SIZE}`,
    );
  }
  const dir = await leaseDir(opts.files?.leaseDir ?? DEFAULT_LEASE_DIR);
  const l = await lease(dir, `${range.uidStart}-block`, blocks, 'id blocks');
  const offset = BLOCK_SIZE * (1 + l.slot);
  return { uid: range.uidStart + offset, gid: range.gidStart + offset, count, release: l.release };
}
