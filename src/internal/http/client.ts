import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { type ProxyEnv, ProxySettings } from './proxy-env.ts';
import {
  DEFAULT_RETRY,
  isRetryableStatus,
  RetryableStatus,
  type RetryPolicy,
  retryAfter,
  withRetry,
} from './retry.ts';
import { Transport } from './transport.ts';

// The one HTTP client for what kiln itself fetches (registries, Debian archives), on node:http and
// node:https (transport.ts says why, and how requests reach a server through a proxy). Nothing of
// node:http/https/tls is loaded before the first request: commands that find everything local do
// not pay for it. Buildpacks fetch with their own client inside the sandbox
// (buildpacks/_shared/http.ts).

/** Response headers, looked up case-insensitively. */
export interface HttpHeaders {
  get(name: string): string | null;
}

/** An HTTP response whose body is a Node stream: read it (bounded), or call `discard()`. */
export interface HttpResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: HttpHeaders;
  /** The URL that answered (after redirects). */
  readonly url: URL;
  readonly body: Readable;
  /** Drops the body (drains a small one so the connection is reused, destroys a large one). */
  discard(): Promise<void>;
}

/** A request. Bodies are bytes, a string, or an async iterable streamed with backpressure. */
export interface HttpRequestInit {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string | AsyncIterable<Uint8Array>;
  /** Idle timeout: the request fails when no byte arrives for this long (default: the client's). */
  readonly timeoutMs?: number;
}

/** Options of an HttpClient; the CLI builds them from kiln's environment and config. */
export interface HttpClientOptions {
  /** The proxy variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, either case); none: direct. */
  readonly env?: ProxyEnv;
  /**
   * PEM files of extra CA certificates (the host bundle, --ca-certs), trusted next to Node's own
   * roots for servers and HTTPS proxies alike. Read at the first request.
   */
  readonly caFiles?: readonly string[];
  /** How long a TCP + TLS connection may take (default 30 s). */
  readonly connectTimeoutMs?: number;
  /** How long a response may go without a byte, headers or body (default 60 s). */
  readonly idleTimeoutMs?: number;
  /** Connections per origin (default 16). */
  readonly connections?: number;
  /** Removes secrets from text put into errors (default: user info of URLs only). */
  readonly redact?: (text: string) => string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * HttpClient sends requests through the route the proxy variables choose, trusting the extra CAs.
 * `request` makes one attempt (GET and HEAD follow up to 5 redirects, dropping Authorization when
 * the origin changes); `get` retries an idempotent GET on network failures and 408/429/5xx.
 * Network failures reject with the socket's error (`ECONNRESET`, `ECONNREFUSED`, `ETIMEDOUT`, a
 * certificate error) or ProxyRefused (a proxy's answer other than 200 to CONNECT).
 */
export class HttpClient {
  readonly #proxies: ProxySettings;
  readonly #opts: HttpClientOptions;
  readonly redact: (text: string) => string;
  #transport: Transport | undefined;

  constructor(opts: HttpClientOptions = {}) {
    this.#opts = opts;
    this.#proxies = new ProxySettings(opts.env ?? {});
    this.redact = opts.redact ?? stripUserInfo;
  }

  /** proxyFor tells which proxy a request to `url` goes through (undefined: direct). */
  proxyFor(url: URL | string): URL | undefined {
    return this.#proxies.proxyFor(new URL(url));
  }

  /** request sends one request (no retry); see the class comment for redirects. */
  async request(input: URL | string, init: HttpRequestInit = {}): Promise<HttpResponse> {
    let url = new URL(input);
    const method = init.method ?? 'GET';
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(init.headers ?? {})) headers[k.toLowerCase()] = v;
    for (let hop = 0; ; hop++) {
      const res = await this.#once(url, method, headers, init.body, init.timeoutMs);
      if (!REDIRECTS.has(res.status) || (method !== 'GET' && method !== 'HEAD') || hop >= 5) return res;
      const loc = res.headers.get('location');
      if (!loc) return res;
      await res.discard();
      const next = new URL(loc, url);
      if (next.protocol !== 'http:' && next.protocol !== 'https:')
        throw new Error(`redirect to unsupported scheme ${next.protocol}`);
      if (next.origin !== url.origin) delete headers.authorization;
      url = next;
    }
  }

  /**
   * get GETs `url`, retrying network failures and temporary statuses (408, 429, 5xx) per
   * `retry`. Returns the first response with another status (2xx, 404, ...); the caller reads
   * or discards it. Only for idempotent requests: that is why there is no `post` with retries.
   */
  async get(
    url: URL | string,
    opts: {
      readonly headers?: Readonly<Record<string, string>>;
      readonly retry?: RetryPolicy;
      readonly onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
    } = {},
  ): Promise<HttpResponse> {
    return withRetry(
      async () => {
        const res = await this.request(url, opts.headers ? { headers: opts.headers } : {});
        if (isRetryableStatus(res.status)) {
          const status = res.status;
          throw new RetryableStatus(status, retryAfter(res.headers.get('retry-after')), async () => {
            await res.discard();
            return new HttpStatusError(status, this.redact(String(url)));
          });
        }
        return res;
      },
      opts.retry ?? DEFAULT_RETRY,
      opts.onRetry,
    );
  }

  /** close ends every pooled connection (tests, and the end of a long-lived process). */
  async close(): Promise<void> {
    this.#transport?.close();
    this.#transport = undefined;
  }

  async #once(
    url: URL,
    method: string,
    headers: Record<string, string>,
    body: HttpRequestInit['body'],
    timeoutMs: number | undefined,
  ): Promise<HttpResponse> {
    this.#transport ??= new Transport({
      caFiles: this.#opts.caFiles ?? [],
      connectTimeoutMs: this.#opts.connectTimeoutMs ?? 30_000,
      connections: this.#opts.connections ?? 16,
    });
    const idle = timeoutMs ?? this.#opts.idleTimeoutMs ?? 60_000;
    const hdrs = { ...headers };
    const buffered = typeof body === 'string' || body instanceof Uint8Array;
    if (buffered && hdrs['content-length'] === undefined)
      hdrs['content-length'] = String(Buffer.byteLength(body));
    const transport = this.#transport;
    const proxy = this.#proxies.proxyFor(url);
    await transport.ready(url, proxy);
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      // Opened and listened to in one go: no error of the request can go unheard.
      const req = transport.open({ url, proxy, method, headers: hdrs });
      req.setTimeout(idle, () =>
        req.destroy(Object.assign(new Error(`no data for ${idle} ms`), { code: 'ETIMEDOUT' })),
      );
      req.on('response', (m) => {
        settled = true;
        resolve(wrap(m, url));
      });
      req.on('error', (e) => {
        if (!settled) {
          settled = true;
          reject(e);
        }
      });
      if (body === undefined) req.end();
      else if (buffered) req.end(body);
      // A pipe writes the next chunk only when the socket drained the last one: a streamed upload
      // holds a few socket buffers, never a whole PATCH chunk.
      else
        pipeline(Readable.from(body, { objectMode: false }), req).catch((e: unknown) => {
          // An early answer (401, 413) ends the request side; anything else fails the request.
          if (!settled) {
            settled = true;
            req.destroy();
            reject(e);
          }
        });
    });
  }
}

/** HttpStatusError is a GET that still answered a temporary status after the last retry. */
export class HttpStatusError extends Error {
  readonly status: number;
  constructor(status: number, url: string) {
    super(`GET ${url}: ${status}`);
    this.name = 'HttpStatusError';
    this.status = status;
  }
}

/** BodyTooLarge is a response body longer than the reader allowed. */
export class BodyTooLarge extends Error {
  readonly limit: number;
  constructor(what: string, limit: number) {
    super(`${what}: response body larger than ${limit} bytes`);
    this.name = 'BodyTooLarge';
    this.limit = limit;
  }
}

/**
 * readBody reads a whole response body, refusing (BodyTooLarge, body dropped) one longer than
 * `maxBytes`: for manifests, indexes, tokens, never for a layer, which is streamed.
 */
export async function readBody(res: HttpResponse, maxBytes: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? '-1');
  if (declared > maxBytes) {
    await res.discard();
    throw new BodyTooLarge(what, maxBytes);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res.body as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > maxBytes) throw new BodyTooLarge(what, maxBytes);
      chunks.push(c);
    }
  } finally {
    await res.discard();
  }
  return Buffer.concat(chunks, n);
}

/** limitBody passes a streamed body through, failing it once more than `maxBytes` went by. */
export async function* limitBody(
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  what: string,
): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > maxBytes) throw new BodyTooLarge(what, maxBytes);
    yield c;
  }
}

/** stripUserInfo removes `user:password@` from URLs in a text. */
export function stripUserInfo(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1[REDACTED]@');
}

function wrap(m: IncomingMessage, url: URL): HttpResponse {
  const status = m.statusCode ?? 0;
  return {
    status,
    ok: status >= 200 && status < 300,
    url,
    body: m,
    headers: {
      get(name: string): string | null {
        const v = m.headers[name.toLowerCase()];
        if (v === undefined) return null;
        return Array.isArray(v) ? v.join(', ') : v;
      },
    },
    async discard() {
      if (m.readableEnded || m.destroyed) return;
      // A small body is read so the connection goes back to the pool; a large one costs more to
      // read than a new connection does.
      const len = Number(m.headers['content-length'] ?? '-1');
      if (len >= 0 && len <= 64 * 1024) {
        m.resume();
        // Draining a small body only keeps the connection reusable.
        await finished(m).catch(() => {});
      } else m.destroy();
    },
  };
}
