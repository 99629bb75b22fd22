import { readFile } from 'node:fs/promises';
import type { Agent, ClientRequest } from 'node:http';
import { isIP } from 'node:net';
import type { SecureContext } from 'node:tls';
import { type NodeNet, nodeNet } from './node-net.ts';
import { bareHost, defaultPort, proxyAuthorization, type TunnelOptions, tunnelAgent } from './tunnel.ts';

// How one request reaches its server, on node:http and node:https:
//  - direct: a keep-alive Agent per scheme;
//  - an http:// target through a proxy: the request goes to the proxy with the absolute URI as its
//    target (RFC 9112 §3.2.2) and the proxy's credentials in Proxy-Authorization; one keep-alive
//    pool per proxy;
//  - an https:// target through a proxy: a CONNECT tunnel (tunnel.ts) with TLS to the server
//    inside it; one Agent per proxy, pooling tunnels per origin.
// node:http rather than undici, for measured reasons (bench/push.ts and a cold `kiln image
// inspect`, side by side): with undici a push held ~25-30 MB more peak RSS and ~15-35% more CPU, and
// the first request of a process took ~40 ms more (loading it), which a CLI command that checks a
// few blobs (a second push, a rebase) pays every time. A pipe into a ClientRequest streams an
// upload with backpressure just as well (a few socket buffers live, never a whole PATCH chunk).

/** What a Transport is built from; the HTTP client fills in the defaults. */
export interface TransportOptions {
  /** PEM files of extra CAs, trusted next to Node's default roots. */
  readonly caFiles: readonly string[];
  readonly connectTimeoutMs: number;
  /** Connections per origin (per proxy for forwarded http requests). */
  readonly connections: number;
}

/** A request about to be sent: headers are final, the body is still to be written. */
export interface Outgoing {
  readonly url: URL;
  readonly proxy: URL | undefined;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Transport opens ClientRequests along the route of each request, reusing pooled connections. */
export class Transport {
  readonly #o: TransportOptions;
  readonly #agents = new Map<string, Agent>();
  #trust: Promise<SecureContext | undefined> | undefined;
  /** The secure context once built (undefined inside: Node's defaults). */
  #trusted: { readonly context: SecureContext | undefined } | undefined;

  constructor(o: TransportOptions) {
    this.#o = o;
  }

  /**
   * ready prepares what a request along this route needs before it can be opened: the trusted
   * CAs when it speaks TLS (it fails when a CA file is unreadable).
   */
  async ready(url: URL, proxy: URL | undefined): Promise<void> {
    if (this.#trusted !== undefined || (url.protocol !== 'https:' && proxy?.protocol !== 'https:')) return;
    this.#trusted = { context: await this.#secureContext(nodeNet()) };
  }

  /**
   * open starts a request after `ready` (the caller writes and ends it). It is synchronous, so the
   * caller listens for the request's errors before any can be emitted.
   */
  open(r: Outgoing): ClientRequest {
    const n = nodeNet();
    const { url, proxy, method } = r;
    const tls = url.protocol === 'https:' || proxy?.protocol === 'https:';
    if (tls && this.#trusted === undefined) throw new Error('Transport.open before ready');
    const secureContext = tls ? this.#trusted?.context : undefined;
    const pool = {
      keepAlive: true,
      maxSockets: this.#o.connections,
      ...(secureContext ? { secureContext } : {}),
    };
    if (proxy === undefined) {
      const secure = url.protocol === 'https:';
      const agent = this.#agent(`direct ${url.protocol}`, () =>
        secure ? new n.https.Agent(pool) : new n.http.Agent(pool),
      );
      return (secure ? n.https : n.http).request(url, { method, headers: r.headers, agent });
    }
    if (url.protocol === 'http:') {
      const secure = proxy.protocol === 'https:';
      const agent = this.#agent(`forward ${proxy.href}`, () =>
        secure ? new n.https.Agent(pool) : new n.http.Agent(pool),
      );
      const auth = proxyAuthorization(proxy);
      const proxyHost = bareHost(proxy.hostname);
      return (secure ? n.https : n.http).request({
        host: proxyHost,
        port: defaultPort(proxy),
        method,
        path: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
        headers: { ...r.headers, host: url.host, ...(auth ? { 'proxy-authorization': auth } : {}) },
        agent,
        // TLS to an https proxy checks the proxy's name, not the Host header's ('' for an IP).
        ...(secure ? { servername: isIP(proxyHost) === 0 ? proxyHost : '' } : {}),
      });
    }
    const tunnel: TunnelOptions = { secureContext, connectTimeoutMs: this.#o.connectTimeoutMs };
    const agent = this.#agent(`tunnel ${proxy.href}`, () => tunnelAgent(n, 'https:', proxy, pool, tunnel));
    return n.https.request(url, { method, headers: r.headers, agent });
  }

  /** close ends every pooled connection. */
  close(): void {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }

  #agent(key: string, make: () => Agent): Agent {
    let a = this.#agents.get(key);
    if (a === undefined) {
      a = make();
      this.#agents.set(key, a);
    }
    return a;
  }

  // One secure context for every TLS connection of this client: `ca` given per connection would
  // parse the few hundred roots again for each one. Built only when a route first speaks TLS.
  #secureContext(n: NodeNet): Promise<SecureContext | undefined> {
    this.#trust ??= trustedContext(n, this.#o.caFiles);
    const t = this.#trust;
    t.catch(() => {
      if (this.#trust === t) this.#trust = undefined;
    });
    return t;
  }
}

// Extra CAs are added to what Node trusts by default (its bundled roots, NODE_EXTRA_CA_CERTS, the
// system store under --use-system-ca): `ca` replaces the default list, so it is passed whole.
async function trustedContext(n: NodeNet, files: readonly string[]): Promise<SecureContext | undefined> {
  if (files.length === 0) return undefined;
  const extra: string[] = [];
  for (const f of files) {
    try {
      extra.push(await readFile(f, 'utf8'));
    } catch (e) {
      throw new Error(`CA certificate file ${f}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
  }
  const defaults =
    typeof n.tls.getCACertificates === 'function'
      ? n.tls.getCACertificates('default')
      : n.tls.rootCertificates;
  return n.tls.createSecureContext({ ca: [...defaults, ...extra] });
}
