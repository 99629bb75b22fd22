import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

// Streamed request bodies go through node:http rather than fetch: fetch (undici) lets a streamed
// body run ahead of the socket when the peer reads fast, holding up to a whole chunk (tens of MB
// per parallel upload) in memory; node:http's pipe keeps it to a few socket buffers.

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });

/**
 * streamRequest sends `body` (an async iterable of bytes) with backpressure and returns the
 * answer as a fetch Response, so callers treat both paths alike. If the server answers before
 * the body is fully sent (an early 401 or 413), the rest of the body is dropped.
 */
export function streamRequest(
  url: URL,
  method: string,
  headers: Headers,
  body: AsyncIterable<Uint8Array>,
  signal?: AbortSignal,
): Promise<Response> {
  const lib = url.protocol === 'https:' ? https : http;
  const agent = url.protocol === 'https:' ? httpsAgent : httpAgent;
  const hdrs: Record<string, string> = {};
  headers.forEach((v, k) => {
    hdrs[k] = v;
  });
  return new Promise<Response>((resolve, reject) => {
    const req = lib.request(url, { method, headers: hdrs, agent, ...(signal ? { signal } : {}) });
    let settled = false;
    req.on('response', (res) => {
      settled = true;
      const status = res.statusCode ?? 0;
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) for (const x of v) h.append(k, x);
        else if (v !== undefined) h.set(k, v);
      }
      const nullBody = status === 204 || status === 205 || status === 304 || method === 'HEAD';
      if (nullBody) res.resume();
      resolve(
        new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
          status,
          statusText: res.statusMessage ?? '',
          headers: h,
        }),
      );
    });
    req.on('error', (e) => {
      if (!settled) reject(e);
    });
    pipeline(Readable.from(body, { objectMode: false }), req).catch((e: unknown) => {
      // An early answer closes the request side; anything else is a transfer failure.
      if (!settled) reject(e);
    });
  });
}
