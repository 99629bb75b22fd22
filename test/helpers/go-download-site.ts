import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, lstat, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { joinUrl, loadSuite } from '../../src/debian/archive.ts';
import { extractDebData } from '../../src/debian/deb.ts';
import { DebCache } from '../../src/debian/deb-cache.ts';
import { readKeyring } from '../../src/debian/release.ts';
import { compareVersions } from '../../src/debian/version.ts';
import { HttpClient } from '../../src/internal/http/client.ts';
import { listenOnLoopback } from './loopback-server.ts';

// A Go download site (the go.dev/dl layout: `?mode=json&include=all` and the archives) on
// 127.0.0.1, filled with a real Go toolchain newer than bookworm's golang-1.19: Debian's
// golang-1.22 from bookworm-backports (InRelease verified with the archive keyring, .debs checked
// against the index) laid out as an official `go/` archive. Built once per machine under `cacheDir`.

/** GoArchive is one toolchain archive: its Go version ("1.22.12"), file and sha256. */
export interface GoArchive {
  readonly version: string;
  readonly file: string;
  readonly sha256: string;
}

/**
 * debianGoArchive builds (or reuses) `go<version>.linux-amd64.tar.gz` from Debian's golang-1.<minor>
 * packages of `suite` on `mirror`.
 */
export async function debianGoArchive(o: {
  mirror: string;
  suite: string;
  minor: number;
  keyring: string;
  cacheDir: string;
  env: Readonly<Record<string, string | undefined>>;
}): Promise<GoArchive> {
  const caFiles = [o.env.SSL_CERT_FILE, o.env.NODE_EXTRA_CA_CERTS].filter((f): f is string => !!f);
  const http = new HttpClient({ env: o.env, caFiles });
  const index = await loadSuite(
    { suite: o.suite, mirror: o.mirror, components: ['main'] },
    { keyring: await readKeyring(o.keyring), arch: 'amd64', cacheDir: o.cacheDir, http },
  );
  const newest = (name: string) =>
    index.packages.filter((p) => p.name === name).sort((a, b) => compareVersions(b.version, a.version))[0];
  const go = newest(`golang-1.${o.minor}-go`);
  const src = newest(`golang-1.${o.minor}-src`);
  if (!go || !src) throw new Error(`${o.suite} has no golang-1.${o.minor}`);
  const version = go.version.replace(/[-~+].*$/, '');
  const file = path.join(o.cacheDir, `go${version}.linux-amd64.tar.gz`);
  if (
    !(await access(file).then(
      () => true,
      () => false,
    ))
  ) {
    const debs = new DebCache(path.join(o.cacheDir, 'debs'));
    const [goDeb, srcDeb] = await debs.fetchAll(
      [go, src].map((p) => ({
        name: p.name,
        version: p.version,
        url: joinUrl(o.mirror, p.filename),
        sha256: p.sha256,
        size: p.size,
      })),
      { http },
    );
    const stage = await mkdtemp(path.join(o.cacheDir, 'stage-'));
    try {
      const skip = (p: string) =>
        p.startsWith('usr/share/doc') || p.startsWith('usr/share/man') || /\/testdata(\/|$)/.test(p);
      await extractDebData(goDeb!, stage, { skip });
      await extractDebData(srcDeb!, stage, { skip });
      const goroot = path.join(stage, 'go');
      await rename(path.join(stage, `usr/lib/go-1.${o.minor}`), goroot);
      // Debian splits GOROOT between /usr/lib (with symlinks into /usr/share) and /usr/share: put
      // the shared part back inside, merging directories both have (pkg/).
      await mergeInto(path.join(stage, `usr/share/go-1.${o.minor}`), goroot);
      const tmp = `${file}.partial`;
      execFileSync('tar', ['-C', stage, '-I', 'gzip -1', '-cf', tmp, 'go']);
      await rename(tmp, file);
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
  }
  const hash = createHash('sha256');
  for await (const c of createReadStream(file)) hash.update(c as Buffer);
  return { version, file, sha256: hash.digest('hex') };
}

/** mergeInto moves the entries of `from` into `to`: a symlink or file in `to` is replaced, directories merge. */
async function mergeInto(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from)) {
    const src = path.join(from, entry);
    const dst = path.join(to, entry);
    const [a, b] = await Promise.all([lstat(src), lstat(dst).catch(() => undefined)]);
    if (a.isDirectory() && b?.isDirectory()) {
      await mergeInto(src, dst);
      continue;
    }
    await rm(dst, { recursive: true, force: true });
    await rename(src, dst);
  }
}

/** GoDownloadSite is a running site; `url` is what BP_GO_DOWNLOAD_URL gets. */
export interface GoDownloadSite {
  readonly url: string;
  readonly port: number;
  readonly requests: string[];
  close(): Promise<void>;
}

/** startGoDownloadSite serves `archives` with a go.dev/dl-style JSON index on 127.0.0.1. */
export async function startGoDownloadSite(archives: readonly GoArchive[]): Promise<GoDownloadSite> {
  const byName = new Map(archives.map((a) => [`go${a.version}.linux-amd64.tar.gz`, a]));
  const index = await Promise.all(
    archives.map(async (a) => ({
      version: `go${a.version}`,
      stable: true,
      files: [
        {
          filename: `go${a.version}.linux-amd64.tar.gz`,
          os: 'linux',
          arch: 'amd64',
          version: `go${a.version}`,
          sha256: a.sha256,
          size: (await stat(a.file)).size,
          kind: 'archive',
        },
      ],
    })),
  );
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url.pathname + url.search);
    if (url.pathname === '/' && url.searchParams.get('mode') === 'json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(index));
      return;
    }
    const a = byName.get(url.pathname.slice(1));
    if (!a) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    createReadStream(a.file).pipe(res);
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    close,
  };
}
