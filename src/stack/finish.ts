import { chmod, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { exists } from '../internal/fs.ts';
import { type StackConfig, type StackUser, userOf } from './config.ts';
import { mkdirExact, writeFileExact } from './fsx.ts';

/**
 * caBundle concatenates `/usr/share/ca-certificates/mozilla/*.crt` in byte order: what
 * update-ca-certificates would write to /etc/ssl/certs/ca-certificates.crt with the default
 * selection, made without running it (the run image has no shell).
 */
export async function caBundle(root: string): Promise<string> {
  const dir = join(root, 'usr/share/ca-certificates/mozilla');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.crt'));
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  let out = '';
  for (const n of names) {
    const pem = await readFile(join(dir, n), 'utf8');
    out += pem.endsWith('\n') ? pem : `${pem}\n`;
  }
  return out;
}

/**
 * passwdFiles renders /etc/passwd and /etc/group with root, the image's user (the run user in the
 * run image, the build user in the build image) and nobody. The run image does not list the build
 * user: it owns the app's layers, but nothing ever runs as it there.
 */
export function passwdFiles(
  config: StackConfig,
  shell: string,
  role: 'run' | 'build' = 'build',
): { passwd: string; group: string } {
  const u = userOf(config, role);
  return {
    passwd:
      `root:x:0:0:root:/root:${shell}\n` +
      `${u.name}:x:${u.uid}:${u.gid}:${u.name}:/home/${u.name}:${shell}\n` +
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    group: `root:x:0:\n${u.name}:x:${u.gid}:\nnogroup:x:65534:\n`,
  };
}

/**
 * finishRunRoot turns the unpacked run packages into a distroless-like root: the CA bundle and
 * OpenSSL's default paths pointing at it, users, a UTC timezone, /tmp (1777), the user's home,
 * and nsswitch.conf. No maintainer script runs; this is what they would have done.
 */
export async function finishRunRoot(root: string, config: StackConfig): Promise<void> {
  // A flavour with dash gets /bin/sh (dash's postinst would make it; maintainer scripts never run).
  if ((await exists(join(root, 'usr/bin/dash'))) && !(await exists(join(root, 'usr/bin/sh'))))
    await symlink('dash', join(root, 'usr/bin/sh'));
  const etc = join(root, 'etc');
  await mkdirExact(join(etc, 'ssl/certs'));
  const bundle = await caBundle(root);
  if (bundle) {
    await writeFileExact(join(etc, 'ssl/certs/ca-certificates.crt'), bundle, 0o644);
    await mkdirExact(join(root, 'usr/lib/ssl'));
    if (!(await exists(join(root, 'usr/lib/ssl/certs'))))
      await symlink('/etc/ssl/certs', join(root, 'usr/lib/ssl/certs'));
    if (!(await exists(join(root, 'usr/lib/ssl/cert.pem'))))
      await symlink('/etc/ssl/certs/ca-certificates.crt', join(root, 'usr/lib/ssl/cert.pem'));
  }
  const { passwd, group } = passwdFiles(config, '/usr/sbin/nologin', 'run');
  await writeFileExact(join(etc, 'passwd'), passwd, 0o644);
  await writeFileExact(join(etc, 'group'), group, 0o644);
  await writeFileExact(
    join(etc, 'nsswitch.conf'),
    'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n',
  );
  if (await exists(join(root, 'usr/share/zoneinfo/Etc/UTC'))) {
    await rm(join(etc, 'localtime'), { force: true });
    await symlink('/usr/share/zoneinfo/Etc/UTC', join(etc, 'localtime'));
    await writeFileExact(join(etc, 'timezone'), 'Etc/UTC\n', 0o644);
  }
  await homeAndTmp(root, config, userOf(config, 'run'));
}

/** homeAndTmp creates /tmp (1777), /root (0700) and the image user's home (0755). */
export async function homeAndTmp(
  root: string,
  config: StackConfig,
  user: StackUser = config.user,
): Promise<void> {
  await mkdirExact(join(root, 'tmp'));
  await chmod(join(root, 'tmp'), 0o1777);
  await mkdirExact(join(root, 'root'));
  await chmod(join(root, 'root'), 0o700);
  await mkdirExact(join(root, 'home', user.name));
  await chmod(join(root, 'home', user.name), 0o755);
}
