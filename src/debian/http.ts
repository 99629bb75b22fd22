import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { KilnError } from '../internal/errors.ts';

/** Fetcher is the HTTP GET seam (globalThis.fetch by default) so callers can pass their own agent. */
export type Fetcher = (url: string, init?: RequestInit) => Promise<Response>;

const RETRIES = 3;

/** HttpError is a GET the server answered with an error status (after retries where they help). */
export class HttpError extends KilnError {
  readonly url: string;
  readonly status: number;
  constructor(url: string, status: number, statusText: string) {
    super(`GET ${url} failed: HTTP ${status} ${statusText}`);
    this.name = 'HttpError';
    this.url = url;
    this.status = status;
  }
}

/**
 * httpGet GETs `url`, retrying connection errors and 5xx/429 answers with backoff. A 404 or other
 * 4xx throws a KilnError naming the URL at once. The body is returned as a Node stream.
 */
export async function httpGet(url: string, fetcher: Fetcher = fetch): Promise<Readable> {
  let last: string | Response = '';
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    let res: Response;
    try {
      res = await fetcher(url, { redirect: 'follow' });
    } catch (e) {
      const cause = (e as Error & { cause?: Error }).cause;
      last = cause ? `${(e as Error).message}: ${cause.message}` : (e as Error).message;
      continue;
    }
    if (res.ok && res.body) return Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
    await res.body?.cancel().catch(() => {});
    last = res;
    if (res.status !== 429 && res.status < 500) break;
  }
  if (typeof last !== 'string') throw new HttpError(url, last.status, last.statusText);
  throw new KilnError(`GET ${url} failed: ${last}`);
}

/** httpGetText GETs a small text document (InRelease). */
export async function httpGetText(url: string, fetcher: Fetcher = fetch): Promise<string> {
  return text(await httpGet(url, fetcher));
}
