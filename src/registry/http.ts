import type { Agent, IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';

// The registry client's HTTP layer, on node:http rather than fetch, for two measured reasons:
// - fetch (undici) lets a streamed request body run ahead of the socket when the peer reads
//   fast, holding up to a whole PATCH chunk (tens of MB per parallel upload) in memory; a pipe
//   into node:http keeps it to a few socket buffers;
// - the first fetch in a process costs 150-250 ms (loading undici), a large part of a CLI
//   command that only checks a few blobs (a second push, a rebase).

// node:http and node:https (with TLS) take ~25 ms to load: only commands that make a request pay
// it, not every `kiln build` that finds everything local (kiln build's start-up time).
interface HttpLib {
  readonly lib: typeof import('node:http') | typeof import('node:https');
  readonly agent: Agent;
}
let libs: Record<'http:' | 'https:', HttpLib> | undefined;
function libOf(protocol: string): HttpLib {
  if (libs === undefined) {
    const load = createRequire(import.meta.url);
    const http = load('node:http') as typeof import('node:http');
    const https = load('node:https') as typeof import('node:https');
    libs = {
      'http:': { lib: http, agent: new http.Agent({ keepAlive: true, maxSockets: 16 }) },
      'https:': { lib: https, agent: new https.Agent({ keepAlive: true, maxSockets: 16 }) },
    };
  }
  return protocol === 'https:' ? libs['https:'] : libs['http:'];
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Response headers, looked up case-insensitively. */
export interface HttpHeaders {
  get(name: string): string | null;
}

/** An HTTP response whose body is a Node stream: read it fully, or call `discard()`. */
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
  /** Idle timeout: the request fails when no byte moves for this long (default 60 s). */
  readonly timeoutMs?: number;
}

/**
 * httpRequest sends one request. GET and HEAD follow up to 5 redirects (blob downloads are
 * often redirected to storage), dropping the Authorization header when the origin changes.
 * Network failures reject with the socket's error (`ECONNRESET`, `ECONNREFUSED`, `ETIMEDOUT`).
 */
export async function httpRequest(input: URL | string, init: HttpRequestInit = {}): Promise<HttpResponse> {
  let url = new URL(input);
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(init.headers ?? {})) headers[k.toLowerCase()] = v;
  for (let hop = 0; ; hop++) {
    const res = await once(url, method, headers, init.body, init.timeoutMs ?? 60_000);
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

function once(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: HttpRequestInit['body'],
  timeoutMs: number,
): Promise<HttpResponse> {
  const { lib, agent } = libOf(url.protocol);
  const hdrs = { ...headers };
  const buffered = typeof body === 'string' || body instanceof Uint8Array;
  if (buffered && hdrs['content-length'] === undefined)
    hdrs['content-length'] = String(Buffer.byteLength(body));
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    const req = lib.request(url, { method, headers: hdrs, agent });
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error(`no data for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
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
      const len = Number(m.headers['content-length'] ?? '-1');
      if (len >= 0 && len <= 64 * 1024) {
        m.resume();
        await finished(m).catch(() => {});
      } else m.destroy();
    },
  };
}
