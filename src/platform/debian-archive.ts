import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

// The Debian archive builds may install packages from (kiln/go's toolchain, kiln/python's pip):
// the stack's mirrors, suites and keyring, passed to buildpacks the way the npm registry is —
// as variables in the detect/build process env (buildpacks/_shared/debian/source.ts reads them),
// plus the keyring copied into `<platform>/kiln/` (the build image has none: the stack verified
// its own packages with the host's). The suites follow the build image's release
// (VERSION_CODENAME of its os-release): `<codename>`, `-updates`, `-security`, as the stack has them.

/** DebianArchiveChoice is what the CLI resolved: mirror overrides, the apt sources' answer, the keyring. */
export interface DebianArchiveChoice {
  /** KILN_DEBIAN_MIRROR / config debian-mirror: the mirror of every non-security suite. */
  readonly mirror?: string | undefined;
  /** KILN_DEBIAN_SECURITY_MIRROR: the mirror of `*-security`. */
  readonly securityMirror?: string | undefined;
  /** The machine's apt sources: the mirror serving a suite, if any. */
  readonly aptMirror: (suite: string) => string | undefined;
  /** The archive keyring file on the host (the stack's, by default Debian's). */
  readonly keyring: string;
  readonly components?: readonly string[];
  readonly arch?: string;
}

/**
 * debianArchiveEnv returns the KILN_DEBIAN_* variables for one build and copies the keyring into
 * the platform dir; {} (with `why`) when the build image names no release, no mirror serves it or
 * the keyring is missing — buildpacks that need Debian packages then fail saying so.
 */
export async function debianArchiveEnv(
  choice: DebianArchiveChoice,
  buildRootfs: string,
  platformDir: string,
  platformMount: string,
): Promise<{ env: Record<string, string>; why?: string }> {
  const osRelease = await readFile(path.join(buildRootfs, 'etc/os-release'), 'utf8').catch(() => '');
  const codename = /^VERSION_CODENAME="?([a-z0-9]+)"?$/m.exec(osRelease)?.[1];
  if (!codename) return { env: {}, why: 'the build image names no Debian release (VERSION_CODENAME)' };
  const suites: string[] = [];
  for (const suite of [codename, `${codename}-updates`, `${codename}-security`]) {
    const security = suite.endsWith('-security');
    const mirror = (security ? choice.securityMirror : choice.mirror) ?? choice.aptMirror(suite);
    if (mirror === undefined) {
      if (suite === codename) return { env: {}, why: `no Debian mirror serves ${codename}` };
      continue;
    }
    suites.push(`${suite}=${mirror}`);
  }
  let keyring: Buffer;
  try {
    keyring = await readFile(choice.keyring);
  } catch {
    return { env: {}, why: `Debian archive keyring ${choice.keyring} not found` };
  }
  await mkdir(path.join(platformDir, 'kiln'), { recursive: true, mode: 0o755 });
  await writeFile(path.join(platformDir, 'kiln', 'debian-archive-keyring.gpg'), keyring, { mode: 0o644 });
  return {
    env: {
      KILN_DEBIAN_SUITES: suites.join(' '),
      KILN_DEBIAN_COMPONENTS: (choice.components ?? ['main']).join(' '),
      KILN_DEBIAN_ARCH: choice.arch ?? 'amd64',
      KILN_DEBIAN_KEYRING: `${platformMount}/kiln/debian-archive-keyring.gpg`,
    },
  };
}
