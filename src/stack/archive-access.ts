import { HttpError, joinUrl, loadSuite, type SuiteSource } from '../debian/archive.ts';
import { DebCache, type DebRef, type DownloadProgress } from '../debian/deb-cache.ts';
import { readKeyring } from '../debian/release.ts';
import { resolve, Universe } from '../debian/resolver.ts';
import { type AptSource, mirrorForSuite } from '../debian/sources.ts';
import { KilnError } from '../internal/errors.ts';
import type { HttpClient } from '../internal/http/client.ts';
import { runFlavours, type StackConfig } from './config.ts';
import { inputsDigest, type LockedPackage, lockedFrom, type StackLock } from './lock.ts';

/** MirrorChoice is what the CLI resolved from --mirror / KILN_DEBIAN_MIRROR and friends. */
/** A package the lock names that the archive no longer serves (superseded versions leave it). */
export class PackageGoneError extends KilnError {
  readonly package: string;
  readonly version: string;
  readonly url: string;
  constructor(
    message: string,
    o: { readonly package: string; readonly version: string; readonly url: string; readonly cause?: unknown },
  ) {
    super(message, { cause: o.cause });
    this.name = 'PackageGoneError';
    this.package = o.package;
    this.version = o.version;
    this.url = o.url;
  }
}

export interface MirrorChoice {
  /** Overrides the mirror of every non-security suite. */
  readonly mirror?: string;
  /** Overrides the mirror of `*-security` suites. */
  readonly securityMirror?: string;
  /** The machine's apt sources (the default for every suite). */
  readonly apt: readonly AptSource[];
}

/**
 * mirrorsOf picks a mirror for each suite of the stack: flag/env override, then stack.toml,
 * then the machine's apt configuration. A suite nothing serves is an error naming it.
 */
export function mirrorsOf(config: StackConfig, choice: MirrorChoice): Map<string, string> {
  const out = new Map<string, string>();
  for (const suite of config.archive.suites) {
    const security = suite.endsWith('-security');
    const m =
      (security ? choice.securityMirror : choice.mirror) ??
      (security ? config.archive['security-mirror'] : config.archive.mirror) ??
      mirrorForSuite(choice.apt, suite);
    if (!m) {
      throw new KilnError(
        `no Debian mirror for suite ${suite}: none of the machine's apt sources serves it; pass --mirror${security ? ' / --security-mirror' : ''} (or set KILN_DEBIAN_MIRROR${security ? ' / KILN_DEBIAN_SECURITY_MIRROR' : ''}), or set it in the stack file`,
      );
    }
    out.set(suite, m);
  }
  return out;
}

/** AccessOptions are the collaborators of resolution and downloads. */
export interface AccessOptions {
  readonly mirrors: ReadonlyMap<string, string>;
  /** Keyring path (the stack file's unless overridden). */
  readonly keyring: string;
  /** kiln's cache directory: indexes under debian/, .debs under debs/. */
  readonly cacheDir: string;
  /** The HTTP client (proxies, extra CAs); default: direct. */
  readonly http?: HttpClient;
  readonly parallel?: number;
  readonly progress?: DownloadProgress;
}

/**
 * resolveStack fetches and verifies the suites' indexes and resolves the run and build package
 * lists into a lock. It downloads no .deb.
 */
export async function resolveStack(config: StackConfig, opts: AccessOptions): Promise<StackLock> {
  const keyring = await readKeyring(opts.keyring);
  const sources: SuiteSource[] = config.archive.suites.map((suite) => ({
    suite,
    mirror: opts.mirrors.get(suite)!,
    components: config.archive.components,
  }));
  const indexes = await Promise.all(
    sources.map((s) =>
      loadSuite(s, {
        keyring,
        arch: config.archive.arch,
        cacheDir: `${opts.cacheDir}/debian`,
        ...(opts.http ? { http: opts.http } : {}),
      }),
    ),
  );
  const universe = new Universe(
    indexes.map((i) => i.packages),
    config.archive.suites,
  );
  const [main, ...others] = runFlavours(config).map((f) => ({
    flavour: f.flavour,
    packages: lockedFrom(
      resolve(universe, f.packages, { essential: config.run.essential, exclude: f.exclude }).packages,
    ),
  }));
  const build = resolve(universe, config.build.packages, {
    essential: config.build.essential,
    exclude: config.build.exclude,
  });
  return {
    version: 1,
    inputs: inputsDigest(config),
    run: { packages: main!.packages },
    build: { packages: lockedFrom(build.packages) },
    ...(others.length
      ? { flavours: Object.fromEntries(others.map((f) => [f.flavour, { packages: f.packages }])) }
      : {}),
  };
}

/** debCacheOf is the shared .deb cache under kiln's cache directory. */
export function debCacheOf(cacheDir: string): DebCache {
  return new DebCache(`${cacheDir}/debs`);
}

/** fetchPackages makes sure every locked package is in the .deb cache; returns their paths. */
export async function fetchPackages(pkgs: readonly LockedPackage[], opts: AccessOptions): Promise<string[]> {
  const refs: DebRef[] = pkgs.map((p) => {
    const mirror = opts.mirrors.get(p.suite);
    if (!mirror)
      throw new KilnError(`package ${p.name} comes from suite ${p.suite}, which the stack no longer lists`);
    return {
      name: p.name,
      version: p.version,
      url: joinUrl(mirror, p.filename),
      sha256: p.sha256,
      size: p.size,
    };
  });
  try {
    return await debCacheOf(opts.cacheDir).fetchAll(refs, {
      parallel: opts.parallel ?? 6,
      ...(opts.http ? { http: opts.http } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
    });
  } catch (e) {
    // The archive is live: superseded versions (security updates above all) leave the mirror.
    const gone = e instanceof HttpError && (e.status === 404 || e.status === 410) ? e.url : undefined;
    const p = gone === undefined ? undefined : pkgs.find((x) => gone.endsWith(`/${x.filename}`));
    if (p) {
      throw new PackageGoneError(
        `package ${p.name} ${p.version} of the lock is no longer on the mirror (${gone}): run kiln stack update`,
        { package: p.name, version: p.version, url: gone!, cause: e },
      );
    }
    throw e;
  }
}
