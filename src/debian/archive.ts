import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { text as streamText } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { DigestMismatchError, KilnError } from '../internal/errors.ts';
import { HttpClient, type HttpResponse, limitBody, readBody } from '../internal/http/client.ts';
import { describeNetError } from '../internal/http/errors.ts';
import { statusText } from '../internal/http/node-net.ts';
import { tempSibling } from '../internal/temp-name.ts';
import { parseDeb822 } from './deb822.ts';
import { compressionOfName, decompress } from './decompress.ts';
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
  /** The HTTP client (proxies, extra CAs); default: direct. */
  readonly http?: HttpClient;
}

/** The most an InRelease file may hold (Debian's main suites have ~200 KB). */
const IN_RELEASE_MAX = 16 * 1024 * 1024;

let directClient: HttpClient | undefined;
function clientOf(http: HttpClient | undefined): HttpClient {
  if (http) return http;
  directClient ??= new HttpClient();
  return directClient;
}

/** HttpError is a GET the archive answered with an error status (after retries where they help). */
export class HttpError extends KilnError {
  readonly url: string;
  readonly status: number;
  constructor(url: string, status: number, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'HttpError';
    this.url = url;
    this.status = status;
  }
}

/**
 * archiveGet GETs `url` from a Debian archive, retrying connection errors and 408/429/5xx answers
 * with backoff. A 404 or other status throws a KilnError naming the URL at once.
 */
export async function archiveGet(url: string, http?: HttpClient): Promise<HttpResponse> {
  const client = clientOf(http);
  let res: HttpResponse;
  try {
    res = await client.get(url);
  } catch (e) {
    const status = (e as { status?: unknown }).status;
    if (typeof status === 'number')
      throw new HttpError(
        url,
        status,
        client.redact(`GET ${url} failed: HTTP ${status} ${statusText(status)}`.trim()),
        e,
      );
    throw new KilnError(client.redact(`GET ${url} failed: ${describeNetError(e)}`), { cause: e });
  }
  if (!res.ok) {
    await res.discard();
    throw new HttpError(
      url,
      res.status,
      client.redact(`GET ${url} failed: HTTP ${res.status} ${statusText(res.status)}`.trim()),
    );
  }
  return res;
}

/** archiveGetText GETs a small text document (InRelease), bounded. */
async function archiveGetText(url: string, http?: HttpClient): Promise<string> {
  const res = await archiveGet(url, http);
  const bytes = await readBody(res, IN_RELEASE_MAX, url).catch((e: unknown) => {
    throw new KilnError(clientOf(http).redact(`GET ${url} failed: ${describeNetError(e)}`), {
      cause: e,
    });
  });
  return bytes.toString('utf8');
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
  const text = await archiveGetText(url, opts.http);
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
      entry.size,
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
async function cachedIndexFile(
  url: string,
  sha256: string,
  size: number,
  opts: ArchiveOptions,
): Promise<string> {
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
  await downloadVerified(url, sha256, size, path, opts.http);
  return path;
}

/**
 * downloadVerified streams `url` to `dest`, hashing as it goes; the file appears under `dest`
 * (by rename) only when its sha256 matches, so interrupted or tampered downloads leave nothing.
 * A body longer than `size` (what the signed index says) is cut off and fails. Returns the number
 * of bytes written.
 */
export async function downloadVerified(
  url: string,
  sha256: string,
  size: number,
  dest: string,
  http?: HttpClient,
  onBytes?: (n: number) => void,
): Promise<number> {
  const tmp = tempSibling(dest);
  try {
    const hash = createHash('sha256');
    let written = 0;
    const { body } = await archiveGet(url, http);
    const counter = async function* (src: AsyncIterable<Uint8Array>) {
      for await (const c of limitBody(src, size, url)) {
        hash.update(c);
        written += c.length;
        onBytes?.(c.length);
        yield c;
      }
    };
    await pipeline(body, counter, createWriteStream(tmp)).catch((e: unknown) => {
      if (e instanceof KilnError) throw e;
      throw new KilnError(clientOf(http).redact(`GET ${url} failed: ${describeNetError(e)}`), {
        cause: e,
      });
    });
    const got = hash.digest('hex');
    if (got !== sha256)
      throw new DigestMismatchError(`${url}: sha256 mismatch: expected ${sha256}, got ${got}`, {
        expected: sha256,
        actual: got,
      });
    await rename(tmp, dest);
    return written;
  } finally {
    await rm(tmp, { force: true });
  }
}
