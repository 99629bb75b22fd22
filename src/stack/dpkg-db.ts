import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalName } from '../debian/deb822.ts';
import { mkdirExact, writeFileExact } from './fsx.ts';
import { mergedUsr, type UnpackedPackage } from './rootfs.ts';

/** statusParagraph is the package's control paragraph with `Status:` (and optional extra fields). */
export function statusParagraph(
  u: UnpackedPackage,
  status: string,
  extra: readonly [string, string][] = [],
): string {
  const lines = u.control.controlText.replace(/\n+$/, '').split('\n');
  const out: string[] = [];
  for (const l of lines) {
    out.push(l);
    if (/^Package:/i.test(l)) out.push(`Status: ${status}`);
  }
  for (const [k, v] of extra) {
    const vs = v.split('\n');
    out.push(`${canonicalName(k.toLowerCase())}:${vs[0] ? ` ${vs[0]}` : ''}`);
    for (const x of vs.slice(1)) out.push(` ${x}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * writeStatusD writes distroless-style `/var/lib/dpkg/status.d/<pkg>` entries (the control
 * paragraph marked installed) plus `<pkg>.md5sums`, which is where image scanners (Trivy,
 * Grype, Syft) look for packages in images without a dpkg database.
 */
export async function writeStatusD(root: string, pkgs: readonly UnpackedPackage[]): Promise<void> {
  const dir = join(root, 'var/lib/dpkg/status.d');
  await mkdirExact(dir);
  for (const u of pkgs) {
    await writeFileExact(join(dir, u.pkg.name), statusParagraph(u, 'install ok installed'), 0o644);
    const md5 = u.control.files.get('md5sums');
    if (md5) await writeFileExact(join(dir, `${u.pkg.name}.md5sums`), md5.data, 0o644);
  }
}

/** infoName is the dpkg database name of a package: `pkg:arch` for Multi-Arch: same packages. */
export function infoName(u: UnpackedPackage): string {
  const ma = u.control.control.get('multi-arch');
  return ma === 'same' ? `${u.pkg.name}:${u.pkg.arch}` : u.pkg.name;
}

const INFO_MEMBERS = [
  'preinst',
  'postinst',
  'prerm',
  'postrm',
  'config',
  'templates',
  'triggers',
  'shlibs',
  'symbols',
  'md5sums',
  'conffiles',
];

/**
 * writeDpkgDatabase writes a full dpkg database for packages unpacked by kiln, in the state dpkg
 * itself leaves after `dpkg --unpack`: every package `install ok unpacked` with its conffiles
 * and their hashes, `info/<pkg>.list` and the maintainer scripts, ready for `dpkg --configure -a`.
 */
export async function writeDpkgDatabase(
  root: string,
  pkgs: readonly UnpackedPackage[],
  arch: string,
): Promise<void> {
  const db = join(root, 'var/lib/dpkg');
  for (const d of ['info', 'updates', 'triggers', 'alternatives', 'parts']) {
    await mkdirExact(join(db, d));
  }
  await writeFileExact(join(db, 'info/format'), '1\n');
  await writeFileExact(join(db, 'arch'), `${arch}\n`);
  await writeFileExact(join(db, 'available'), '');
  await writeFileExact(join(db, 'diversions'), '');
  await writeFileExact(join(db, 'statoverride'), '');
  const status: string[] = [];
  for (const u of pkgs) {
    const name = infoName(u);
    const extra: [string, string][] = [];
    const conffiles = u.control.files
      .get('conffiles')
      ?.data.toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    if (conffiles && conffiles.length > 0) {
      const lines = conffiles.map((c) => {
        const path = c.trim().replace(/^remove-on-upgrade\s+/, '');
        let hash = 'newconffile';
        try {
          hash = createHash('md5')
            .update(readFileSync(join(root, mergedUsr(path.replace(/^\//, '')))))
            .digest('hex');
        } catch {
          // A conffile the profile dropped (or a package that ships none at that path).
        }
        return `${path} ${hash}`;
      });
      extra.push(['Conffiles', `\n${lines.join('\n')}`]);
    }
    status.push(statusParagraph(u, 'install ok unpacked', extra));
    await writeFileExact(join(db, 'info', `${name}.list`), `${u.paths.join('\n')}\n`);
    for (const m of INFO_MEMBERS) {
      const f = u.control.files.get(m);
      if (!f) continue;
      const p = join(db, 'info', `${name}.${m}`);
      await writeFileExact(p, f.data, f.mode);
    }
  }
  await writeFileExact(join(db, 'status'), status.join('\n'));
}
