import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { text as streamText } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { DigestMismatchError, KilnError } from '../internal/errors.ts';
import { tempSibling } from '../internal/temp-name.ts';
import { parseDeb822 } from './deb822.ts';
import { compressionOfName, decompress } from './decompress.ts';
import { type Fetcher, httpGet, httpGetText } from './http.ts';
import { type PackageRecord, packageFromParagraph } from './package.ts';
import { type Keyring, type Release, verifyInRelease } from './release.ts';

/** SuiteSource names one suite of one mirror: `<mirror>/dists/<suite>/InRelease`. */
export interface SuiteSource {
  readonly suite: string;
  readonly mirror: string;
  readonly components: readonly string[];
}

/** SuiteIndex is the verified package list of one suite for one architecture. */
export interface SuiteIndex {
  readonly source: SuiteSource;
  readonly release: Release;
  readonly packages: readonly PackageRecord[];
}

/** ArchiveOptions are the collaborators of index loading. */
export interface ArchiveOptions {
  readonly keyring: Keyring;
  readonly arch: string;
  /** Directory for verified index files, named by their sha256 (shared across runs). */
  readonly cacheDir: string;
  readonly fetcher?: Fetcher;
}

/** joinUrl joins a mirror base and a path under it with exactly one slash. */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

/**
 * loadSuite fetches and verifies `InRelease`, then each component's Packages index (preferring
 * .gz, then .xz, then uncompressed), checking its sha256 against the signed Release before use.
 */
export async function loadSuite(src: SuiteSource, opts: ArchiveOptions): Promise<SuiteIndex> {
  const url = joinUrl(src.mirror, `dists/${src.suite}/InRelease`);
  const text = await httpGetText(url, opts.fetcher);
  const release = await verifyInRelease(text, opts.keyring, url);
  const packages: PackageRecord[] = [];
  for (const comp of src.components) {
    const base = `${comp}/binary-${opts.arch}/Packages`;
    const entry =
      release.files.get(`${base}.gz`) ?? release.files.get(`${base}.xz`) ?? release.files.get(base);
    if (!entry) throw new KilnError(`${url}: no ${base} index listed for suite ${src.suite}`);
    const file = await cachedIndexFile(
      joinUrl(src.mirror, `dists/${src.suite}/${entry.path}`),
      entry.sha256,
      opts,
    );
    const index = await streamText(decompress(compressionOfName(entry.path), createReadStream(file)));
    for (const p of parseDeb822(index)) {
      const rec = packageFromParagraph(p, src.suite);
      if (rec.arch === opts.arch || rec.arch === 'all') packages.push(rec);
    }
  }
  return { source: src, release, packages };
}

/** cachedIndexFile returns the path of the verified index file, downloading it when absent. */
async function cachedIndexFile(url: string, sha256: string, opts: ArchiveOptions): Promise<string> {
  const dir = join(opts.cacheDir, 'indexes');
  const path = join(dir, sha256);
  if (
    await stat(path).then(
      () => true,
      () => false,
    )
  )
    return path;
  await mkdir(dir, { recursive: true });
  await downloadVerified(url, sha256, path, opts.fetcher);
  return path;
}

/**
 * downloadVerified streams `url` to `dest`, hashing as it goes; the file appears under `dest`
 * (by rename) only when its sha256 matches, so interrupted or tampered downloads leave nothing.
 * Returns the number of bytes written.
 */
export async function downloadVerified(
  url: string,
  sha256: string,
  dest: string,
  fetcher?: Fetcher,
  onBytes?: (n: number) => void,
): Promise<number> {
  const tmp = tempSibling(dest);
  try {
    const hash = createHash('sha256');
    let size = 0;
    const body = await httpGet(url, fetcher);
    const counter = async function* (src: Readable) {
      for await (const c of src) {
        hash.update(c as Buffer);
        size += (c as Buffer).length;
        onBytes?.((c as Buffer).length);
        yield c;
      }
    };
    await pipeline(body, counter, createWriteStream(tmp));
    const got = hash.digest('hex');
    if (got !== sha256)
      throw new DigestMismatchError(`${url}: sha256 mismatch: expected ${sha256}, got ${got}`, {
        expected: sha256,
        actual: got,
      });
    await rename(tmp, dest);
    return size;
  } finally {
    await rm(tmp, { force: true });
  }
}
