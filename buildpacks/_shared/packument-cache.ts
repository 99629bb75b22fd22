import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readJsonIfExists, writeFileAtomic } from './fsutil.ts';
import type { JsonAnswer } from './http.ts';
import {
  type NpmRegistry,
  type Packument,
  packumentUrl,
  requestPackument,
  slimPackument,
} from './npm-registry.ts';

/**
 * A private HTTP cache (RFC 9111) for registry metadata, kept in a cache layer the way npm keeps
 * its own: an answer is used without a request while it is fresh (Cache-Control max-age, else
 * Expires, else a heuristic lifetime), then revalidated with If-None-Match / If-Modified-Since
 * (304: the cached copy is used again). Only the slimmed document, its validators and its age are
 * stored: no request headers, so no credentials.
 */

/** FORMAT changes when the stored entry's shape does; entries of another format are ignored. */
const FORMAT = 1;

/**
 * HEURISTIC_LIFETIME_S is the freshness given to an answer without Cache-Control or Expires
 * (RFC 9111 §4.2.2 allows a heuristic): the npm registry itself sends max-age=300, mirrors and
 * proxies often send nothing. With Last-Modified it is at most 10% of the time since then.
 */
export const HEURISTIC_LIFETIME_S = 300;

/** Freshness is how long an answer may be used without asking, and how old it was on arrival. */
export interface Freshness {
  /** False for `no-store`: the answer must not be kept. */
  readonly store: boolean;
  /** Freshness lifetime in seconds (0: revalidate on every use). */
  readonly lifetime: number;
  /** The Age header: seconds the answer had already spent in caches upstream. */
  readonly age: number;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function seconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*"?\d+"?\s*$/.test(value)) return undefined;
  return Number(value.replace(/"/g, ''));
}

/** freshnessOf reads Cache-Control, Expires, Date, Last-Modified and Age of an answer (RFC 9111 §4.2). */
export function freshnessOf(headers: Headers): Freshness {
  const directives = new Map<string, string | undefined>();
  for (const part of (header(headers, 'cache-control') ?? '').split(',')) {
    const [name, value] = part.split('=', 2) as [string, string | undefined];
    if (name.trim()) directives.set(name.trim().toLowerCase(), value?.trim());
  }
  const age = seconds(header(headers, 'age')) ?? 0;
  const store = !directives.has('no-store');
  if (directives.has('no-cache')) return { store, lifetime: 0, age };
  const maxAge = seconds(directives.get('max-age'));
  if (maxAge !== undefined) return { store, lifetime: maxAge, age };
  const date = Date.parse(header(headers, 'date') ?? '');
  const expires = header(headers, 'expires');
  if (expires !== undefined) {
    // An invalid Expires (e.g. "0") means already expired.
    const at = Date.parse(expires);
    return {
      store,
      lifetime: Number.isNaN(at) || Number.isNaN(date) ? 0 : Math.max(0, (at - date) / 1000),
      age,
    };
  }
  const modified = Date.parse(header(headers, 'last-modified') ?? '');
  if (!Number.isNaN(modified) && !Number.isNaN(date)) {
    return { store, lifetime: Math.min(HEURISTIC_LIFETIME_S, Math.max(0, (date - modified) / 10_000)), age };
  }
  return { store, lifetime: HEURISTIC_LIFETIME_S, age };
}

/** CacheEntry is what is stored for one package: the slim document, its validators and freshness. */
interface CacheEntry {
  readonly format: number;
  /** The document's URL, without any `user:password@` (the token is never part of it). */
  readonly url: string;
  /** When the answer arrived, in ms since the epoch (this machine's clock). */
  readonly receivedAt: number;
  readonly age: number;
  readonly lifetime: number;
  readonly etag?: string;
  readonly lastModified?: string;
  readonly packument: Packument;
}

/** Verdict is what a caller can do with a cached document: use it as it is, only while fresh, or not. */
export type Verdict = 'use' | 'if-fresh' | 'refresh';

/** CachedPackument is a package's document and where it came from. */
export interface CachedPackument {
  readonly packument: Packument;
  /** registry: a full answer; revalidated: a 304 to a conditional request; cache: no request. */
  readonly source: 'registry' | 'revalidated' | 'cache';
  /** Age of the cached copy in seconds (cache only; 0 otherwise). */
  readonly age: number;
}

/** PackumentCacheOptions: the environment for requests, the cache directory and the clock. */
export interface PackumentCacheOptions {
  readonly env: NodeJS.ProcessEnv;
  /** A cache layer's directory (created when missing). */
  readonly dir: string;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /**
   * verdict judges a cached document for this request (default: `if-fresh`): `use` when it
   * answers the request however old it is (a pinned version's tarball and integrity never change),
   * `refresh` when it cannot answer it (a version newer than the copy may exist).
   */
  readonly verdict?: (packument: Packument) => Verdict | Promise<Verdict>;
}

/** withoutCredentials drops `user:password@` from a URL: the cache keys on the registry, not the login. */
function withoutCredentials(href: string): string {
  try {
    const url = new URL(href);
    if (!url.username && !url.password) return href;
    url.username = '';
    url.password = '';
    return url.href;
  } catch {
    return href;
  }
}

function entryPath(dir: string, name: string): string {
  return join(dir, `${encodeURIComponent(name)}.json`);
}

async function readEntry(dir: string, name: string, url: string): Promise<CacheEntry | undefined> {
  let entry: CacheEntry | undefined;
  try {
    entry = (await readJsonIfExists(entryPath(dir, name))) as CacheEntry | undefined;
  } catch {
    return undefined; // a damaged entry is a miss
  }
  if (
    !entry ||
    entry.format !== FORMAT ||
    entry.url !== url ||
    typeof entry.receivedAt !== 'number' ||
    !entry.packument?.versions
  ) {
    return undefined;
  }
  return entry;
}

/** ageOf is the current age of a stored answer (RFC 9111 §4.2.3, without the Date-based estimate). */
function ageOf(entry: CacheEntry, now: number): number {
  // Only this machine's clock is used (the VM clock may disagree with the server's Date); a clock
  // that went backwards makes the entry stale rather than forever young.
  const resident = (now - entry.receivedAt) / 1000;
  return resident < 0 ? Number.POSITIVE_INFINITY : entry.age + resident;
}

function validatorsOf(entry: CacheEntry): Record<string, string> {
  return {
    ...(entry.etag ? { 'if-none-match': entry.etag } : {}),
    ...(entry.lastModified ? { 'if-modified-since': entry.lastModified } : {}),
  };
}

/**
 * cachedPackument returns a package's registry document from the cache in `options.dir` while it
 * is fresh (or when `verdict` says the copy answers the request anyway), else asks the registry,
 * conditionally when a copy is there. Network errors are thrown as they are.
 */
export async function cachedPackument(
  registry: NpmRegistry,
  name: string,
  options: PackumentCacheOptions,
): Promise<CachedPackument> {
  const url = withoutCredentials(packumentUrl(registry, name));
  const entry = await readEntry(options.dir, name, url);
  if (entry) {
    const verdict = (await options.verdict?.(entry.packument)) ?? 'if-fresh';
    const age = ageOf(entry, options.now());
    if (verdict === 'use' || (verdict === 'if-fresh' && age < entry.lifetime)) {
      return { packument: entry.packument, source: 'cache', age: Number.isFinite(age) ? age : 0 };
    }
  }
  const answer: JsonAnswer = await requestPackument(
    registry,
    name,
    options.env,
    entry ? validatorsOf(entry) : {},
  );
  const receivedAt = options.now();
  const freshness = freshnessOf(answer.headers);
  if (answer.status === 304) {
    if (!entry) throw new Error(`${url}: 304 Not Modified to an unconditional request`);
    // RFC 9111 §4.3.4: the 304's headers update the stored ones (freshness, validators).
    await store(options.dir, name, freshness, {
      ...entry,
      receivedAt,
      age: freshness.age,
      lifetime: freshness.lifetime,
      ...validatorsFrom(answer.headers, entry),
    });
    return { packument: entry.packument, source: 'revalidated', age: 0 };
  }
  const packument = slimPackument(answer.body, url);
  await store(options.dir, name, freshness, {
    format: FORMAT,
    url,
    receivedAt,
    age: freshness.age,
    lifetime: freshness.lifetime,
    ...validatorsFrom(answer.headers),
    packument,
  });
  return { packument, source: 'registry', age: 0 };
}

function validatorsFrom(headers: Headers, previous?: CacheEntry): { etag?: string; lastModified?: string } {
  const etag = header(headers, 'etag') ?? previous?.etag;
  const lastModified = header(headers, 'last-modified') ?? previous?.lastModified;
  return { ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) };
}

async function store(dir: string, name: string, freshness: Freshness, entry: CacheEntry): Promise<void> {
  const path = entryPath(dir, name);
  if (!freshness.store) {
    await rm(path, { force: true });
    return;
  }
  await writeFileAtomic(path, JSON.stringify(entry));
}

/** describeSource is the build log's word on where a document came from. */
export function describeSource(result: CachedPackument): string {
  if (result.source === 'registry') return 'from the registry';
  if (result.source === 'revalidated')
    return 'from the cache, revalidated with the registry (304 Not Modified)';
  return `from the cache (${Math.round(result.age)} s old, no request)`;
}
