import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_SKIP, installDebLayer, type Universe } from '../../_shared/debian/install.ts';
import { previousLayer, resetLayer, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log } from '../../_shared/main.ts';
import { compareGo, formatGo, type GoVersion, parseGoVersion } from './gomod.ts';

// The download path (HTTP client with TLS, gunzip, tar reader, SBOM writer) loads only when
// go.mod asks for a newer Go than Debian's: on Debian's Node.js 18, which starts every bin/build,
// loading those modules costs more than the rest of a rebuild's own work.

export const TOOL = { name: 'kiln/go', version: '0.1.0' };

/**
 * notForBuilding matches what a Go toolchain carries but building an app never reads: Go's own
 * test suite (test/), the toolchain's sources (src/cmd: its binaries are in pkg/tool), misc/,
 * testdata and *_test.go files of the standard library, and the standard library compiled for
 * the host (pkg/linux_amd64, 240 MB in Debian's Go 1.19): built without -trimpath, which this
 * buildpack always passes, so Go never uses it and compiles what it needs into GOCACHE (Go 1.20+
 * ships none). Half the files of the layer and most of its bytes: every rebuild restores and
 * fingerprints the layer, and a cold build unpacks and stores it.
 */
export function notForBuilding(goroot: string): (p: string) => boolean {
  const prefix = `${goroot}/`;
  return (p) => {
    if (!p.startsWith(prefix)) return false;
    const rel = p.slice(prefix.length);
    return (
      /^(test|misc)(\/|$)/.test(rel) ||
      /^src\/cmd(\/|$)/.test(rel) ||
      /^pkg\/[a-z0-9]+_[a-z0-9]+(_[a-z0-9]+)?(\/|$)/.test(rel) ||
      /(^|\/)testdata(\/|$)/.test(rel) ||
      (rel.startsWith('src/') && rel.endsWith('_test.go'))
    );
  };
}

/** Toolchain is a Go installation usable for the build: its GOROOT and version. */
export interface Toolchain {
  readonly goroot: string;
  readonly version: GoVersion;
  readonly source: string;
}

/** newestDebianGo picks the newest `golang-1.N-go` the configured suites offer. */
export function newestDebianGo(universe: Universe): { name: string; version: GoVersion } {
  let best: { minor: number; name: string } | undefined;
  for (const name of universe.byName.keys()) {
    const m = /^golang-1\.(\d+)-go$/.exec(name);
    if (m && (!best || Number(m[1]) > best.minor)) best = { minor: Number(m[1]), name };
  }
  if (!best)
    throw new BuildpackFailure('kiln/go: the configured Debian suites offer no golang-1.N-go package');
  const deb = universe.byName.get(best.name)![0]!.version;
  return { name: best.name, version: debianGoVersion(best.name, deb) };
}

function debianGoVersion(name: string, deb: string): GoVersion {
  const version = parseGoVersion(deb.replace(/^\d+:/, '').replace(/[-~+].*$/, ''));
  if (!version) throw new BuildpackFailure(`kiln/go: cannot read a Go version from ${name} ${deb}`);
  return version;
}

/**
 * debianToolchain installs Debian's newest Go into the build layer `go`, unless `wanted` is newer
 * and `canDownload`: then it returns the Debian version only (no layer), for the caller to fetch
 * the wanted release instead.
 */
export async function debianToolchain(
  layersDir: string,
  env: NodeJS.ProcessEnv,
  wanted: GoVersion | undefined,
  canDownload: boolean,
): Promise<Toolchain | { readonly tooOld: GoVersion }> {
  let tooOld: GoVersion | undefined;
  const layer = await installDebLayer({
    layersDir,
    layer: 'go',
    packages: (universe) => {
      const newest = newestDebianGo(universe);
      if (wanted && canDownload && compareGo(wanted, newest.version) > 0) {
        tooOld = newest.version;
        return [];
      }
      return [newest.name];
    },
    types: { build: true, cache: true },
    env,
    tool: TOOL,
    // Debian splits GOROOT: usr/lib/go-1.N (binaries, links) and usr/share/go-1.N (sources).
    contents: 'go-build-only-3',
    skip: (p) => DEFAULT_SKIP(p) || notForBuilding(p.replace(/^(usr\/(share|lib)\/go-1\.\d+).*$/, '$1'))(p),
  });
  if (tooOld) return { tooOld };
  const go = layer.packages.find((p) => /^golang-1\.\d+-go$/.test(p.name));
  if (!go) throw new BuildpackFailure('kiln/go: the go layer holds no golang-1.N-go package');
  const minor = /^golang-1\.(\d+)-go$/.exec(go.name)![1]!;
  const version = debianGoVersion(go.name, go.version);
  if (wanted && canDownload && compareGo(wanted, version) > 0) return { tooOld: version };
  return {
    goroot: join(layer.dir, `usr/lib/go-1.${minor}`),
    version,
    source: `Debian ${go.name} ${go.version}`,
  };
}

/**
 * downloadSite checks BP_GO_DOWNLOAD_URL: https, or http to this machine only (a local mirror) —
 * over plain http elsewhere, whoever sits in between could change the index and the archive alike.
 */
export function downloadSite(site: string): string {
  let url: URL;
  try {
    url = new URL(site);
  } catch {
    throw new BuildpackFailure(`kiln/go: BP_GO_DOWNLOAD_URL "${site}" is not a URL`);
  }
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local))
    throw new BuildpackFailure(
      `kiln/go: BP_GO_DOWNLOAD_URL must be an https URL (plain http only to 127.0.0.1), not ${url.protocol}//${url.host}`,
    );
  if (url.username || url.password || url.search || url.hash)
    throw new BuildpackFailure(
      'kiln/go: BP_GO_DOWNLOAD_URL must not carry credentials, a query or a fragment',
    );
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

interface DlFile {
  readonly filename: string;
  readonly os: string;
  readonly arch: string;
  readonly sha256: string;
  readonly kind: string;
}
interface DlRelease {
  readonly version: string;
  readonly stable: boolean;
  readonly files: readonly DlFile[];
}

/**
 * downloadedToolchain fetches an official Go build from the Go download site at `site` (the
 * go.dev/dl layout: `?mode=json&include=all` lists releases with sha256 per file): `exact` when
 * go.mod names a toolchain, else the newest release of `atLeast`'s minor line at or above it.
 * The archive's sha256 must match the index. Kept in the `go-dl` layer while the version is the same.
 */
export async function downloadedToolchain(
  layersDir: string,
  env: NodeJS.ProcessEnv,
  site: string,
  atLeast: GoVersion,
  exact: boolean,
): Promise<Toolchain> {
  const base = downloadSite(site);
  const { getJsonConditional } = await import('../../_shared/http.ts');
  let releases: DlRelease[];
  try {
    const answer = await getJsonConditional(`${base}?mode=json&include=all`, { env });
    releases = (answer.status === 200 ? answer.body : []) as DlRelease[];
    if (!Array.isArray(releases)) throw new Error('the index is not a JSON list');
  } catch (e) {
    throw new BuildpackFailure(`Go download site ${base} unreachable: ${(e as Error).message}`);
  }
  const candidates = releases
    .map((r) => ({ r, v: parseGoVersion(r.version) }))
    .filter((c): c is { r: DlRelease; v: GoVersion } => c.v !== undefined)
    .filter(({ r, v }) =>
      exact
        ? compareGo(v, atLeast) === 0
        : v.minor === atLeast.minor && compareGo(v, atLeast) >= 0 && r.stable,
    )
    .sort((a, b) => compareGo(b.v, a.v));
  const pick = candidates[0];
  const file = pick?.r.files.find((f) => f.os === 'linux' && f.arch === 'amd64' && f.kind === 'archive');
  if (!pick || !file || !/^[0-9a-f]{64}$/.test(file.sha256) || !/^go[\w.-]+\.tar\.gz$/.test(file.filename))
    throw new BuildpackFailure(
      `Go download site ${base} has no linux-amd64 archive of Go ${formatGo(atLeast)}${exact ? '' : ' or a newer patch release'}`,
    );
  const prev = await previousLayer(layersDir, 'go-dl');
  const goroot = join(layersDir, 'go-dl', 'go');
  if (prev?.hasContents && prev.metadata.sha256 === file.sha256) {
    log(`  reusing Go ${formatGo(pick.v)} (${file.filename})`);
  } else {
    log(`  Go ${formatGo(pick.v)} from ${base}${file.filename}`);
    const dir = await resetLayer(layersDir, 'go-dl');
    const archive = join(dir, file.filename);
    const [{ untarGz }, { writeSboms }] = await Promise.all([
      import('./untar.ts'),
      import('../../_shared/sbom.ts'),
    ]);
    await fetchChecked(`${base}${file.filename}`, archive, file.sha256, env);
    try {
      await untarGz(archive, dir, notForBuilding('go'));
    } catch (e) {
      if (e instanceof BuildpackFailure) throw e;
      throw new BuildpackFailure(`kiln/go: cannot unpack ${file.filename}: ${(e as Error).message}`);
    } finally {
      await rm(archive, { force: true });
    }
    await writeSboms(
      join(layersDir, 'go-dl'),
      [
        {
          name: 'go',
          version: formatGo(pick.v),
          purl: `pkg:golang/go@${formatGo(pick.v)}`,
          type: 'application',
          ecosystem: 'binary',
          license: 'BSD-3-Clause',
        },
      ],
      TOOL,
      env,
    );
  }
  await writeLayerToml(
    layersDir,
    'go-dl',
    { build: true, cache: true },
    { version: formatGo(pick.v), sha256: file.sha256 },
  );
  return { goroot, version: pick.v, source: `${base}${file.filename}` };
}

/** fetchChecked downloads `url` to `dest` (temp name + rename) only when its sha256 is `sha256`. */
async function fetchChecked(
  url: string,
  dest: string,
  sha256: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const [{ createHash }, { createWriteStream }, { Transform }, { pipeline }, { get }] = await Promise.all([
    import('node:crypto'),
    import('node:fs'),
    import('node:stream'),
    import('node:stream/promises'),
    import('../../_shared/http.ts'),
  ]);
  await mkdir(join(dest, '..'), { recursive: true });
  const tmp = `${dest}.partial`;
  const hash = createHash('sha256');
  try {
    const res = await get(url, { env });
    let size = 0;
    await pipeline(
      res,
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          size += chunk.length;
          if (size > 1024 * 1024 * 1024) return cb(new Error('more than 1 GiB'));
          hash.update(chunk);
          cb(null, chunk);
        },
      }),
      createWriteStream(tmp),
    );
  } catch (e) {
    await rm(tmp, { force: true });
    throw new BuildpackFailure(`GET ${url}: ${(e as Error).message}`);
  }
  const got = hash.digest('hex');
  if (got !== sha256) {
    await rm(tmp, { force: true });
    throw new BuildpackFailure(`${url}: sha256 mismatch: the index says ${sha256}, got ${got}`);
  }
  await rename(tmp, dest);
}
