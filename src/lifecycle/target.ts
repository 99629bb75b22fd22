import type { TargetMetadata } from '../cnb/analyzed-toml.ts';
import type { Target } from '../cnb/buildpack-toml.ts';
import { readTextInRootIfExists, UntrustedFileError } from '../internal/safe-read.ts';

/** RunTarget is the run image's target as the detect and build phases use it. */
export interface RunTarget {
  readonly os: string;
  readonly arch: string;
  readonly variant?: string;
  readonly distro?: { readonly name: string; readonly version: string };
}

/**
 * resolveRunTarget completes the run image target from analyzed.toml the way the lifecycle does:
 * os defaults to linux, arch to the machine's, and a missing distro comes from the build image's
 * `/etc/os-release` (`rootfs` is the build image root on the host).
 */
export async function resolveRunTarget(
  target: TargetMetadata | undefined,
  rootfs: string,
): Promise<RunTarget> {
  const t = target ?? {};
  let distro =
    t.distro && (t.distro.name || t.distro.version)
      ? { name: t.distro.name ?? '', version: t.distro.version ?? '' }
      : undefined;
  if (!distro) distro = await osRelease(rootfs);
  return {
    os: t.os || 'linux',
    arch: t.arch || goArch(process.arch),
    variant: t['arch-variant'] || t.variant || undefined,
    distro,
  };
}

/** targetEnv returns the CNB_TARGET_* variables for Buildpack API 0.10+ (empty optional values are left out). */
export function targetEnv(t: RunTarget): Record<string, string> {
  const env: Record<string, string> = { CNB_TARGET_OS: t.os, CNB_TARGET_ARCH: t.arch };
  if (t.variant) env.CNB_TARGET_ARCH_VARIANT = t.variant;
  if (t.distro?.name) env.CNB_TARGET_DISTRO_NAME = t.distro.name;
  if (t.distro?.version) env.CNB_TARGET_DISTRO_VERSION = t.distro.version;
  return env;
}

/**
 * targetMatches tells whether a buildpack target accepts the run image: an empty field on either
 * side matches; if the buildpack lists distros, one of them must match.
 */
export function targetMatches(run: RunTarget, bp: Target): boolean {
  const m = (a: string | undefined, b: string | undefined) => !a || !b || a === b;
  if (!m(run.os, bp.os) || !m(run.arch, bp.arch) || !m(run.variant, bp.variant)) return false;
  if (!bp.distros || bp.distros.length === 0) return true;
  if (!run.distro) return false;
  return bp.distros.some((d) => m(run.distro!.name, d.name) && m(run.distro!.version, d.version));
}

async function osRelease(rootfs: string): Promise<{ name: string; version: string } | undefined> {
  // /etc/os-release is usually a link to ../usr/lib/os-release: links resolve inside the rootfs.
  const image = { what: "the build image's root filesystem", shown: '/', follow: 'in-root' } as const;
  const read = (rel: string) => {
    try {
      return readTextInRootIfExists(rootfs, rel, image);
    } catch (e) {
      if (e instanceof UntrustedFileError) return undefined;
      throw e;
    }
  };
  const text = read('etc/os-release') ?? read('usr/lib/os-release');
  if (text === undefined) return undefined;
  const get = (k: string) => {
    const m = new RegExp(`^${k}=(.*)$`, 'm').exec(text);
    return m ? m[1]!.trim().replace(/^["']|["']$/g, '') : '';
  };
  const name = get('ID');
  const version = get('VERSION_ID');
  return name || version ? { name, version } : undefined;
}

function goArch(nodeArch: string): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return map[nodeArch] ?? nodeArch;
}
