import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { readdir, readFile, readlink, rm, symlink } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import type { ArchiveOptions, SuiteIndex } from '../../../src/debian/archive.ts';
import type { DebRef } from '../../../src/debian/deb-cache.ts';
import type { PackageRecord } from '../../../src/debian/package.ts';
import type { Universe } from '../../../src/debian/resolver.ts';
import type { HttpClient } from '../../../src/internal/http/client.ts';
import { type LayerTypes, previousLayer, resetLayer, writeLayerToml } from '../layer.ts';
import { BuildpackFailure, log } from '../main.ts';
import type { Component, Tool } from '../sbom.ts';
import { installedPackages } from './dpkg-status.ts';
import { type DebianSource, debianSource } from './source.ts';

// The archive code (HTTP client with TLS, OpenPGP, index parsing, resolver, .deb unpacking) and
// the SBOM writer load only past the fast path: a rebuild that keeps the layer within the
// freshness window needs none of it, and on Debian's Node.js 18 (no startup snapshot, no code
// cache for its own modules) loading them is a good share of a short bin/build.
const archiveCode = () => import('../../../src/debian/archive.ts');
const resolverCode = () => import('../../../src/debian/resolver.ts');

/** DebLayerRequest asks for Debian packages (and what they depend on) unpacked into one layer. */
export interface DebLayerRequest {
  /** `<layers>/<buildpack>` of the calling buildpack. */
  readonly layersDir: string;
  /** Layer name, e.g. `go`; the .debs and indexes are cached in `<name>-debs` (cache only). */
  readonly layer: string;
  /**
   * Package names (optionally `name=version`), resolved against the configured suites; or a
   * function choosing them from what the suites offer (e.g. the newest `golang-1.N-go`); a
   * function returning [] asks for nothing: no layer is made (`packages` comes back empty).
   */
  readonly packages: readonly string[] | ((universe: Universe) => readonly string[]);
  readonly types: LayerTypes;
  /** The build environment (proxies, CA files, KILN_DEBIAN_*). */
  readonly env: NodeJS.ProcessEnv;
  readonly tool: Tool;
  /**
   * Packages already present where the layer is used: name → version. Default: the build
   * image's dpkg status (right for build layers; a launch layer should pass the run image's set).
   */
  readonly installed?: ReadonlyMap<string, string>;
  /** Paths (no leading "/") not to unpack; default: documentation, man pages, locales. */
  readonly skip?: (path: string) => boolean;
  /**
   * Names what the caller's `skip` (and other unpack choices) leave out: part of the layer key,
   * so a buildpack that changes them gets a fresh layer. Default: the library's rules.
   */
  readonly contents?: string;
  /** Extra metadata stored in the layer TOML. */
  readonly metadata?: Record<string, unknown>;
}

/** DebLayer is the unpacked layer: its directory (package paths below it, e.g. `<dir>/usr/bin`) and contents. */
export interface DebLayer {
  readonly dir: string;
  readonly packages: readonly { readonly name: string; readonly version: string; readonly arch: string }[];
  /** True when the layer from the previous build was kept (same package versions). */
  readonly reused: boolean;
}

/** The build image's dpkg database: what a build layer need not carry. */
const DPKG_STATUS = '/var/lib/dpkg/status';

/** DEFAULT_SKIP leaves out documentation, man pages, locales and /etc (combine it with your own). */
export const DEFAULT_SKIP = (p: string): boolean =>
  /^usr\/share\/(doc|man|info|locale|lintian|bug)(\/|$)/.test(p) || /^etc(\/|$)/.test(p);

/**
 * installDebLayer resolves `packages` against the platform's Debian archive (InRelease verified
 * with the keyring, Packages indexes and every .deb checked against the signed hashes), leaves out
 * what the image already has, and unpacks the rest into layer `layer`. The layer is keyed on the
 * resolved set of name=version/arch: the same set keeps the previous layer untouched; a moved
 * suite (a security update) rebuilds it. Unreachable archive + a previous layer: reused with a
 * warning (offline rebuilds). The layer's SBOM lists `pkg:deb` purls.
 */
export async function installDebLayer(req: DebLayerRequest): Promise<DebLayer> {
  const source = debianSource(req.env);
  const cacheLayer = `${req.layer}-debs`;
  const cacheDir = join(req.layersDir, cacheLayer);
  const prev = await previousLayer(req.layersDir, req.layer);
  // The image's dpkg status counts by its bytes here; it is parsed only when resolving (parsing
  // it is most of the work of a rebuild that keeps the layer).
  const image = req.installed ? undefined : await readFile(DPKG_STATUS).catch(() => Buffer.alloc(0));
  const keep = async (why: string, update: Record<string, unknown> = {}): Promise<DebLayer> => {
    log(`  ${why}`);
    await writeLayerToml(req.layersDir, cacheLayer, { cache: true }, {});
    await writeLayerToml(req.layersDir, req.layer, req.types, {
      ...prev!.metadata,
      ...req.metadata,
      ...update,
    });
    const packages = prev!.metadata.packages as DebLayer['packages'];
    return { dir: join(req.layersDir, req.layer), packages, reused: true };
  };
  const reusable = prev?.hasContents === true && Array.isArray(prev.metadata.packages);
  const local = await localInputs(source, req, image);
  // Within the freshness window the previous check stands: no request at all (the archive moves
  // a few times a day; BP_DEBIAN_INDEX_MAX_AGE=0 checks every build).
  const maxAge = Number(req.env.BP_DEBIAN_INDEX_MAX_AGE ?? 300);
  const age = (Date.now() - Number(prev?.metadata.checked ?? 0)) / 1000;
  if (reusable && prev!.metadata.local === local && age >= 0 && age < maxAge)
    return keep(`reusing the ${req.layer} layer (Debian archive checked ${Math.round(age)} s ago)`);
  const http = await httpClient(req.env);
  let inputs: string;
  try {
    // The same signed InRelease files, request and image packages give the same resolution: the
    // previous layer is kept without reading the (large) Packages indexes again.
    inputs = await resolutionInputs(source, http, local);
  } catch (e) {
    // Only fetching failed here (nothing was verified yet): offline, the previous layer is all
    // there is, and it was verified when it was made.
    if (!reusable) throw failure(e);
    return keep(
      `WARNING: Debian archive unreachable (${(e as Error).message}); reusing the previous ${req.layer} layer`,
    );
  }
  const checked = Date.now();
  if (reusable && prev!.metadata.inputs === inputs)
    return keep(`reusing the ${req.layer} layer (Debian archive unchanged)`, { local, checked });
  let indexes: SuiteIndex[];
  try {
    indexes = await loadIndexes(source, cacheDir, http);
  } catch (e) {
    throw failure(e);
  }
  const { resolve, Universe } = await resolverCode();
  const universe = new Universe(
    indexes.map((i) => i.packages),
    indexes.map((i) => i.source.suite),
  );
  // A chooser's own failure is the caller's message, not the archive's.
  const names = typeof req.packages === 'function' ? req.packages(universe) : req.packages;
  if (names.length === 0) {
    // Nothing wanted (the chooser found a better source): no layer, the indexes stay cached.
    await writeLayerToml(req.layersDir, cacheLayer, { cache: true }, {});
    return { dir: join(req.layersDir, req.layer), packages: [], reused: false };
  }
  const installed = req.installed ?? (await installedPackages(DPKG_STATUS));
  let chosen: readonly PackageRecord[];
  try {
    chosen = resolve(universe, names, { exclude: [...installed.keys()] }).packages;
  } catch (e) {
    throw failure(e);
  }
  const packages = chosen.map((p) => ({ name: p.name, version: p.version, arch: p.arch }));
  const key = createHash('sha256')
    .update(packages.map((p) => `${p.name}=${p.version}/${p.arch}`).join('\n'))
    .update(`\n${req.contents ?? 'default-2'}`)
    .digest('hex');
  const metadata = { ...req.metadata, key, inputs, local, checked, packages };
  const reused = prev?.hasContents === true && prev.metadata.key === key;
  if (reused) {
    log(`  reusing the ${req.layer} layer (${packages.length} Debian packages unchanged)`);
  } else {
    await unpack(req, source, chosen, cacheDir, http);
    const { writeSboms } = await import('../sbom.ts');
    await writeSboms(join(req.layersDir, req.layer), packages.map(purlComponent(source)), req.tool, req.env);
  }
  await writeLayerToml(req.layersDir, cacheLayer, { cache: true }, {});
  await writeLayerToml(req.layersDir, req.layer, req.types, metadata);
  return { dir: join(req.layersDir, req.layer), packages, reused };
}

/** localInputs digests what decides the resolution besides the archive: source, keyring, request, image packages. */
async function localInputs(
  source: DebianSource,
  req: DebLayerRequest,
  imageStatus: Buffer | undefined,
): Promise<string> {
  const hash = createHash('sha256');
  for (const s of source.suites) hash.update(`${s.suite}=${s.mirror}\n`);
  // Another keyring must verify the archive again.
  hash.update(
    createHash('sha256')
      .update(await readFile(source.keyring).catch(() => ''))
      .digest('hex'),
  );
  const request =
    typeof req.packages === 'function' ? `fn:${req.packages.toString()}` : req.packages.join(' ');
  hash.update(
    `\n${source.arch} ${source.components.join(' ')}\n${request}\n${req.contents ?? 'default-2'}\n`,
  );
  if (imageStatus) hash.update(`dpkg-status ${createHash('sha256').update(imageStatus).digest('hex')}\n`);
  else for (const [n, v] of [...req.installed!].sort()) hash.update(`${n}=${v}\n`);
  return hash.digest('hex');
}

/** resolutionInputs adds every suite's InRelease bytes (fetched now) to the local inputs. */
async function resolutionInputs(source: DebianSource, http: HttpClient, local: string): Promise<string> {
  const { archiveGet, joinUrl } = await archiveCode();
  const { readBody } = await import('../../../src/internal/http/client.ts');
  const hash = createHash('sha256').update(local);
  const texts = await Promise.all(
    source.suites.map(async (s) => {
      const url = joinUrl(s.mirror, `dists/${s.suite}/InRelease`);
      return readBody(await archiveGet(url, http), 16 * 1024 * 1024, url);
    }),
  );
  for (const t of texts) hash.update(createHash('sha256').update(t).digest('hex'));
  return hash.digest('hex');
}

async function loadIndexes(source: DebianSource, cacheDir: string, http: HttpClient): Promise<SuiteIndex[]> {
  quietEd25519Warning();
  const [{ loadSuite }, { readKeyring }] = await Promise.all([
    archiveCode(),
    import('../../../src/debian/release.ts'),
  ]);
  // Index files are cached by their sha256 (src/debian/archive.ts trusts the name): check the bytes.
  const indexDir = join(cacheDir, 'indexes');
  for (const f of await readdir(indexDir).catch(() => [] as string[]))
    await dropIfAltered(join(indexDir, f), f);
  const opts: ArchiveOptions = {
    keyring: await readKeyring(source.keyring),
    arch: source.arch,
    cacheDir,
    http,
  };
  return Promise.all(
    source.suites.map((s) =>
      loadSuite({ suite: s.suite, mirror: s.mirror, components: source.components }, opts),
    ),
  );
}

async function unpack(
  req: DebLayerRequest,
  source: DebianSource,
  chosen: readonly PackageRecord[],
  cacheDir: string,
  http: HttpClient,
): Promise<void> {
  const [{ joinUrl }, { DebCache }, { extractDebData }] = await Promise.all([
    archiveCode(),
    import('../../../src/debian/deb-cache.ts'),
    import('../../../src/debian/deb.ts'),
  ]);
  const mirrors = new Map(source.suites.map((s) => [s.suite, s.mirror]));
  const refs: DebRef[] = chosen.map((p) => ({
    name: p.name,
    version: p.version,
    url: joinUrl(mirrors.get(p.suite)!, p.filename),
    sha256: p.sha256,
    size: p.size,
  }));
  const debs = new DebCache(join(cacheDir, 'debs'));
  // The cache layer is writable by everything that runs in the build: a cached file counts only
  // when its bytes still have the hash the signed index gives (else it is fetched again).
  for (const r of refs) await dropIfAltered(debs.pathOf(r.sha256), r.sha256);
  let fetched = 0;
  const paths = await debs
    .fetchAll(refs, { http, parallel: 4, progress: { onDone: (_r, cached) => void (cached || fetched++) } })
    .catch((e: unknown) => {
      throw failure(e);
    });
  log(
    `  ${req.layer}: ${chosen.length} Debian packages (${fetched} downloaded): ${chosen.map((p) => `${p.name} ${p.version}`).join(', ')}`,
  );
  const dir = await resetLayer(req.layersDir, req.layer);
  const skip = req.skip ?? DEFAULT_SKIP;
  // A fixed order decides who wins a path two packages ship.
  for (const [i, deb] of paths.entries()) {
    try {
      await extractDebData(deb, dir, { skip });
    } catch (e) {
      throw new BuildpackFailure(
        `cannot unpack ${chosen[i]!.name} ${chosen[i]!.version}: ${(e as Error).message}`,
      );
    }
  }
  await relativizeLinks(dir, dir);
  // Only the current set stays in the cache layer: superseded versions would pile up.
  const keep = new Set(refs.map((r) => `${r.sha256}.deb`));
  for (const f of await readdir(debs.dir)) if (!keep.has(f)) await rm(join(debs.dir, f), { force: true });
}

/** dropIfAltered removes `file` unless its sha256 is `sha256` (absent: nothing to do). */
async function dropIfAltered(file: string, sha256: string): Promise<void> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch {
    await rm(file, { force: true, recursive: true });
    return;
  }
  if (hash.digest('hex') !== sha256) {
    log(`  WARNING: cached ${file} does not match its sha256; fetching it again`);
    await rm(file, { force: true });
  }
}

/**
 * relativizeLinks makes every symlink point into the layer, read as a root filesystem would read
 * it: absolute targets (Debian ships some, e.g. into /usr/lib) and relative ones with more `..`
 * than the path is deep (a root's `/..` is `/` itself) are rewritten relative to the layer, so the
 * tree works wherever the layer is mounted and never reaches another layer or the image's files.
 */
export async function relativizeLinks(root: string, dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await relativizeLinks(root, p);
    else if (e.isSymbolicLink()) {
      const target = await readlink(p);
      const from = relative(root, dir);
      const plain = posix.normalize(posix.join(from, target));
      if (!target.startsWith('/') && plain !== '..' && !plain.startsWith('../')) continue;
      // As the kernel resolves it in a root: `..` above `/` stays at `/`.
      const inRoot = target.startsWith('/')
        ? posix.normalize(target)
        : posix.normalize(posix.join('/', from, target));
      const inLayer = join(root, inRoot);
      await rm(p);
      await symlink(relative(dir, inLayer) || '.', p);
    }
  }
}

function purlComponent(source: DebianSource) {
  return (p: { name: string; version: string; arch: string }): Component => ({
    name: p.name,
    version: p.version,
    purl: `pkg:deb/debian/${p.name}@${encodeURIComponent(p.version)}?arch=${p.arch}&distro=debian-${codename(source)}`,
    type: 'library',
    ecosystem: 'deb',
  });
}

function codename(_source: DebianSource): string {
  // purls name the distro as the stack's SBOM does: debian-<VERSION_ID of the build image>.
  const text = (() => {
    try {
      return readFileSync('/etc/os-release', 'utf8');
    } catch {
      return '';
    }
  })();
  return /^VERSION_ID="?([0-9.]+)"?$/m.exec(text)?.[1] ?? '12';
}

/**
 * Debian's Node.js 18 calls Web Crypto's Ed25519 "experimental" when openpgp probes it: a
 * warning on every build that says nothing about the build. Other warnings still show.
 */
function quietEd25519Warning(): void {
  const emit = process.emitWarning.bind(process) as (w: string | Error, ...rest: unknown[]) => void;
  process.emitWarning = ((w: string | Error, ...rest: unknown[]) => {
    if (String(w instanceof Error ? w.message : w).includes('Ed25519')) return;
    emit(w, ...rest);
  }) as typeof process.emitWarning;
}

/** httpClient routes archive requests through the build's proxies and trusts its extra CAs. */
async function httpClient(env: NodeJS.ProcessEnv): Promise<HttpClient> {
  const { HttpClient } = await import('../../../src/internal/http/client.ts');
  const caFiles = [env.SSL_CERT_FILE, env.NODE_EXTRA_CA_CERTS].filter((f): f is string => !!f);
  return new HttpClient({ env, caFiles });
}

function failure(e: unknown): BuildpackFailure {
  return new BuildpackFailure(`Debian packages: ${(e as Error).message}`);
}

export type { Universe } from '../../../src/debian/resolver.ts';
