import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { TRUST_HINT } from './hints.ts';

/**
 * Networking for buildpacks running on Node 18+ inside a build sandbox. Node's fetch ignores proxy
 * variables and SSL_CERT_FILE, so this uses https.request with an explicit CA list and, when
 * HTTPS_PROXY is set, a CONNECT tunnel.
 */

/** HttpOptions carry the environment the proxy and CA settings come from, and extra headers. */
export interface HttpOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly headers?: Readonly<Record<string, string>>;
}

const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);
const NETWORK_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ECONNRESET',
  'ETIMEDOUT',
]);

/** explainNetworkError turns a TLS or connection failure into one line that says what to do. */
export function explainNetworkError(what: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (TLS_TRUST_CODES.has(code)) return new Error(`${what}: ${TRUST_HINT} (${code})`);
  if (NETWORK_CODES.has(code)) {
    return new Error(`${what}: network unavailable (${code}); this download needs the network`);
  }
  return new Error(`${what}: ${(err as Error).message}`);
}

const contexts = new Map<string, tls.SecureContext>();

/**
 * secureContext is built once per CA configuration: parsing a few hundred certificates for every
 * request would cost more than the requests of a warm build.
 */
function secureContext(env: NodeJS.ProcessEnv): tls.SecureContext {
  const key = `${env.SSL_CERT_FILE ?? ''}\0${env.NODE_EXTRA_CA_CERTS ?? ''}`;
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = tls.createSecureContext({ ca: trustedCas(env) });
    contexts.set(key, ctx);
  }
  return ctx;
}

/** trustedCas is Node's bundled roots plus the PEM files named by SSL_CERT_FILE and NODE_EXTRA_CA_CERTS. */
function trustedCas(env: NodeJS.ProcessEnv): string[] {
  const cas = [...tls.rootCertificates];
  for (const name of ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS']) {
    const file = env[name];
    if (!file) continue;
    try {
      cas.push(readFileSync(file, 'utf8'));
    } catch {
      // A missing bundle is not fatal: the connection then fails with an explained TLS error.
    }
  }
  return cas;
}

function envOf(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return env[name] || env[name.toLowerCase()] || undefined;
}

/** bypassesProxy applies NO_PROXY: `*`, exact hosts, and domain suffixes (with or without a dot). */
function bypassesProxy(host: string, env: NodeJS.ProcessEnv): boolean {
  const list = envOf(env, 'NO_PROXY');
  if (!list) return false;
  return list
    .split(',')
    .map((s) => s.trim().toLowerCase().replace(/:\d+$/, ''))
    .filter(Boolean)
    .some((entry) => {
      if (entry === '*') return true;
      const bare = entry.replace(/^\*?\./, '');
      return host === bare || host.endsWith(`.${bare}`);
    });
}

/** proxyFor returns the proxy URL to use for `url`, if any. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv): URL | undefined {
  const raw = url.protocol === 'https:' ? envOf(env, 'HTTPS_PROXY') : envOf(env, 'HTTP_PROXY');
  if (!raw || bypassesProxy(url.hostname.toLowerCase(), env)) return undefined;
  return new URL(raw.includes('://') ? raw : `http://${raw}`);
}

function proxyAuth(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const creds = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(creds).toString('base64')}` };
}

/** tunnel opens a CONNECT tunnel through `proxy` to host:port. */
function tunnel(proxy: URL, host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: proxy.hostname,
      port: Number(proxy.port || 80),
      method: 'CONNECT',
      path: `${host}:${port}`,
      headers: { host: `${host}:${port}`, ...proxyAuth(proxy) },
    });
    req.on('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`proxy ${proxy.host} refused CONNECT to ${host}:${port} (HTTP ${res.statusCode})`));
      }
    });
    req.on('error', reject);
    req.end();
  });
}

function once(url: URL, options: HttpOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const proxy = proxyFor(url, options.env);
    // One request per connection: nothing is reused, and no idle socket keeps the process alive.
    const headers = { 'user-agent': 'kiln-buildpack', connection: 'close', ...(options.headers ?? {}) };
    let tunnelSocket: Socket | undefined;
    const onResponse = (res: http.IncomingMessage) => {
      // A tunnel's raw socket is ours, not an agent's: close it with the response.
      if (tunnelSocket) res.on('close', () => tunnelSocket?.destroy());
      resolve(res);
    };
    const send = (req: http.ClientRequest) => {
      req.setTimeout(60_000, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end();
    };
    const start = async () => {
      if (url.protocol === 'http:') {
        // Plain HTTP through a proxy: absolute-form request to the proxy.
        const target = proxy ?? url;
        send(
          http.request(
            {
              host: target.hostname,
              port: Number(target.port || 80),
              path: proxy ? url.href : `${url.pathname}${url.search}`,
              headers: { ...headers, ...(proxy ? proxyAuth(proxy) : {}), host: url.host },
            },
            onResponse,
          ),
        );
        return;
      }
      const port = Number(url.port || 443);
      const socket = proxy ? await tunnel(proxy, url.hostname, port) : undefined;
      tunnelSocket = socket;
      const context = secureContext(options.env);
      // secureContext is a tls.connect option the https agent passes through.
      const requestOptions: https.RequestOptions & { secureContext: tls.SecureContext } = {
        host: url.hostname,
        port,
        path: `${url.pathname}${url.search}`,
        headers,
        secureContext: context,
        servername: url.hostname,
        ...(socket
          ? {
              agent: false,
              createConnection: () =>
                tls.connect({ socket, servername: url.hostname, secureContext: context }),
            }
          : {}),
      };
      send(https.request(requestOptions, onResponse));
    };
    start().catch(reject);
  });
}

async function readBody(res: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > limit) break;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * get performs a GET, following up to 5 redirects; non-2xx answers become errors naming the URL,
 * except 304 Not Modified when `notModified` is set (the answer to a conditional request).
 */
export async function get(
  href: string,
  options: HttpOptions,
  notModified = false,
): Promise<http.IncomingMessage> {
  let url = new URL(href);
  for (let hop = 0; hop < 6; hop++) {
    let res: http.IncomingMessage;
    try {
      res = await once(url, options);
    } catch (err) {
      throw explainNetworkError(`GET ${url.origin}${url.pathname}`, err);
    }
    const status = res.statusCode ?? 0;
    if (status === 304 && notModified) {
      res.resume();
      return res;
    }
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url);
      continue;
    }
    if (status < 200 || status >= 300) {
      const body = (await readBody(res, 2048)).replace(/\s+/g, ' ').slice(0, 200);
      throw new Error(`GET ${url.origin}${url.pathname}: HTTP ${status}${body ? `: ${body}` : ''}`);
    }
    return res;
  }
  throw new Error(`GET ${href}: too many redirects`);
}

/** JsonAnswer is a parsed JSON document with its response headers, or a 304 (no body). */
export type JsonAnswer =
  | { readonly status: 200; readonly headers: http.IncomingHttpHeaders; readonly body: unknown }
  | { readonly status: 304; readonly headers: http.IncomingHttpHeaders };

/**
 * getJsonConditional fetches a JSON document (bounded to 64 MiB) and keeps the response headers,
 * for HTTP caches: a 304 to a conditional request (If-None-Match / If-Modified-Since in
 * `options.headers`) is returned as such, without a body.
 */
export async function getJsonConditional(href: string, options: HttpOptions): Promise<JsonAnswer> {
  const res = await get(
    href,
    { ...options, headers: { accept: 'application/json', ...(options.headers ?? {}) } },
    true,
  );
  if (res.statusCode === 304) return { status: 304, headers: res.headers };
  const text = await readBody(res, 64 * 1024 * 1024);
  try {
    return { status: 200, headers: res.headers, body: JSON.parse(text) };
  } catch {
    throw new Error(`GET ${href}: answer is not JSON`);
  }
}

/**
 * download streams `href` into `dest` (through a temporary name) and returns the sha512 digest
 * (base64, as used by SRI integrity strings) computed in the same pass.
 */
export async function download(href: string, dest: string, options: HttpOptions): Promise<string> {
  const res = await get(href, options);
  const hash = createHash('sha512');
  const tmp = `${dest}.partial`;
  try {
    await pipeline(
      res,
      new Transform({
        transform(chunk, _enc, cb) {
          hash.update(chunk as Buffer);
          cb(null, chunk);
        },
      }),
      createWriteStream(tmp),
    );
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw explainNetworkError(`GET ${href}`, err);
  }
  return hash.digest('base64');
}
