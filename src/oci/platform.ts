import { KilnError, UsageError } from '../internal/errors.ts';
import { oneLine } from '../internal/one-line.ts';
import type { ConfigFile, Descriptor, Platform } from './schema.ts';

// The platform (os/architecture/variant) an image is for, as one value: parsed once from a flag or
// the host, then handed to everything that reads images, so that no reader picks an index entry
// by a default of its own. The one default (linux/amd64) is used only where a caller gave none.

/** The platform readers pick when their caller named none (kiln's images before multi-arch). */
export const DEFAULT_PLATFORM: Platform = Object.freeze({ os: 'linux', architecture: 'amd64' });

/** Node's process.arch to the OCI (Go) architecture and variant. */
const NODE_ARCH: Readonly<Record<string, { architecture: string; variant?: string }>> = {
  x64: { architecture: 'amd64' },
  // arm64's only variant is v8: left out so that indexes without variants match as they are.
  arm64: { architecture: 'arm64' },
  arm: { architecture: 'arm', variant: 'v7' },
  ia32: { architecture: '386' },
  ppc64: { architecture: 'ppc64le' },
  riscv64: { architecture: 'riscv64' },
  s390x: { architecture: 's390x' },
};

/** hostPlatform is the platform of the machine kiln runs on (`nodeArch`: process.arch). */
export function hostPlatform(nodeArch: string): Platform {
  const a = NODE_ARCH[nodeArch] ?? { architecture: nodeArch };
  return { os: 'linux', architecture: a.architecture, ...(a.variant ? { variant: a.variant } : {}) };
}

/** parsePlatform parses `os/arch[/variant]` (a `--platform` value). */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p)))
    throw new UsageError(`invalid platform "${s}": expected os/arch[/variant], e.g. linux/arm64`);
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return p;
}

/** parsePlatforms parses a comma-separated `--platform` list; duplicates are refused. */
export function parsePlatforms(s: string): Platform[] {
  const out = s
    .split(',')
    .filter((x) => x.trim() !== '')
    .map(parsePlatform);
  if (out.length === 0) throw new UsageError(`invalid platform list "${s}": expected os/arch[/variant],…`);
  const seen = new Set<string>();
  for (const p of out) {
    const k = platformString(p);
    if (seen.has(k)) throw new UsageError(`--platform ${s}: ${k} is listed twice`);
    seen.add(k);
  }
  return out;
}

/** platformString is `os/arch[/variant]`. */
export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/**
 * platformTag is the name of one platform's image next to the index named `tag` (`run` ->
 * `run-linux-arm64`, `app:latest` -> `app:latest-linux-arm64`): per-platform tags, caches and
 * builders.
 */
export function platformTag(tag: string, p: Platform): string {
  return `${tag}-${p.os}-${p.architecture}${p.variant ? `-${p.variant}` : ''}`;
}

/** configPlatform is the platform an image config declares. */
export function configPlatform(cfg: Pick<ConfigFile, 'os' | 'architecture' | 'variant'>): Platform {
  return { os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) };
}

/**
 * platformMatches compares os, architecture and, when wanted, variant (arm64's v8 is its only
 * variant, so an absent one and v8 are the same there).
 */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (have === undefined || have.os !== want.os || have.architecture !== want.architecture) return false;
  if (!want.variant) return true;
  const v = (p: Platform) => p.variant ?? (p.architecture === 'arm64' ? 'v8' : undefined);
  return v(have) === v(want);
}

/** MissingPlatformError: an image or index has nothing for the platform asked for. */
export class MissingPlatformError extends KilnError {
  readonly platform: Platform;
  /** What the image or index has instead (`os/arch[/variant]`). */
  readonly has: readonly string[];
  constructor(what: string, want: Platform, has: readonly string[]) {
    super(
      oneLine(
        `${what} has no ${platformString(want)} image (it has ${has.slice(0, 10).join(', ') || 'no platform'})`,
      ),
    );
    this.name = 'MissingPlatformError';
    this.platform = want;
    this.has = has;
  }
}

/**
 * pickManifest is the entry of an index's `manifests` for `want`: the first that matches (an
 * exact variant is preferred). Throws MissingPlatformError naming `what` and what it has.
 */
export function pickManifest(manifests: readonly Descriptor[], want: Platform, what: string): Descriptor {
  const matching = manifests.filter((d) => platformMatches(d.platform, want));
  const exact = matching.find((d) => d.platform?.variant === want.variant);
  const pick = exact ?? matching[0];
  if (pick) return pick;
  throw new MissingPlatformError(
    what,
    want,
    manifests.map((d) => (d.platform ? platformString(d.platform) : '(none)')),
  );
}

/**
 * checkPlatform fails with one line when a single-platform image (its config) is not for `want`:
 * a builder or run image read by tag holds one platform, and using it for another is an
 * "exec format error" later.
 */
export function checkPlatform(
  cfg: Pick<ConfigFile, 'os' | 'architecture' | 'variant'>,
  want: Platform,
  what: string,
): void {
  const have = configPlatform(cfg);
  if (!platformMatches(have, want)) throw new MissingPlatformError(what, want, [platformString(have)]);
}
