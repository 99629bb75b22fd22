import type { Agent, ClientRequestArgs } from 'node:http';
import type { AgentOptions } from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { NodeNet } from './node-net.ts';
import { isRetryableStatus } from './retry.ts';

// Reaching a server through an HTTP proxy with `CONNECT host:port` (RFC 9110 §9.3.6): the proxy
// opens a TCP connection to the target and relays bytes, so TLS runs end to end between kiln and
// the server, and the proxy never sees the request. An Agent whose createConnection builds such a
// tunnel keeps the tunnelled connections pooled per origin, like any keep-alive connection.

/** What a tunnel needs besides the proxy and the target. */
export interface TunnelOptions {
  /** Trust for TLS to an https proxy and to https targets (undefined: Node's defaults). */
  readonly secureContext: SecureContext | undefined;
  /** How long the proxy may take to connect and answer CONNECT. */
  readonly connectTimeoutMs: number;
}

/** ProxyRefused is a proxy's answer other than 200 to CONNECT (407: credentials, 502: target down). */
export class ProxyRefused extends Error {
  /** The proxy's status; not `status`, which callers read as the server's answer. */
  readonly proxyStatus: number;
  /** 408, 429, 5xx: the proxy or the target may answer next time (read by isTransient). */
  readonly temporary: boolean;
  constructor(proxy: URL, target: string, status: number, statusText: string) {
    // proxy.host never holds the proxy's user info, so the message carries no password.
    super(`proxy ${proxy.host} refused CONNECT ${target}: ${status} ${statusText}`.trim());
    this.name = 'ProxyRefused';
    this.proxyStatus = status;
    this.temporary = isRetryableStatus(status);
  }
}

/** bareHost is a URL's host name without the brackets of an IPv6 literal. */
export function bareHost(hostname: string): string {
  return hostname.replace(/^\[(.*)\]$/, '$1');
}

/** defaultPort is the port of a URL, its scheme's default when it names none. */
export function defaultPort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** proxyAuthorization is the Basic credential in a proxy URL's user info, if it has one. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '' && proxy.password === '') return undefined;
  const user = decodeURIComponent(proxy.username);
  const password = decodeURIComponent(proxy.password);
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** openTunnel asks `proxy` for a byte stream to host:port; it resolves once the proxy said 200. */
export function openTunnel(
  n: NodeNet,
  proxy: URL,
  host: string,
  port: number,
  o: TunnelOptions,
): Promise<Duplex> {
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const auth = proxyAuthorization(proxy);
  const secure = proxy.protocol === 'https:';
  const proxyHost = bareHost(proxy.hostname);
  return new Promise<Duplex>((resolve, reject) => {
    const req = (secure ? n.https : n.http).request({
      host: proxyHost,
      port: defaultPort(proxy),
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, ...(auth ? { 'proxy-authorization': auth } : {}) },
      // The CONNECT itself is never pooled: its socket becomes the tunnel.
      agent: false,
      ...(secure && o.secureContext ? { secureContext: o.secureContext } : {}),
      ...(secure && isIP(proxyHost) === 0 ? { servername: proxyHost } : {}),
    });
    req.setTimeout(o.connectTimeoutMs, () =>
      req.destroy(
        Object.assign(
          new Error(`proxy ${proxy.host}: no answer to CONNECT ${authority} in ${o.connectTimeoutMs} ms`),
          {
            code: 'ETIMEDOUT',
          },
        ),
      ),
    );
    req.once('connect', (res, socket, head) => {
      // The request's idle timer is on this socket; the tunnel's own requests set theirs.
      socket.setTimeout(0);
      socket.removeAllListeners('timeout');
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new ProxyRefused(proxy, authority, res.statusCode ?? 0, res.statusMessage ?? ''));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('error', reject);
    req.end();
  });
}

type Done = (err: Error | null, stream: Duplex) => void;

/**
 * tunnelAgent is a keep-alive Agent for `protocol` targets whose every connection is a CONNECT
 * tunnel through `proxy`, TLS-wrapped for https targets (SNI and certificate checks against the
 * target's name). The Agent pools by target origin, so each origin reuses its own tunnels.
 */
export function tunnelAgent(
  n: NodeNet,
  protocol: 'http:' | 'https:',
  proxy: URL,
  agentOptions: AgentOptions,
  o: TunnelOptions,
): Agent {
  const Base: typeof Agent = protocol === 'https:' ? n.https.Agent : n.http.Agent;
  class TunnelAgent extends Base {
    override createConnection(options: ClientRequestArgs, done?: Done): undefined {
      const host = bareHost(options.host ?? options.hostname ?? 'localhost');
      const port = Number(options.port ?? (protocol === 'https:' ? 443 : 80));
      openTunnel(n, proxy, host, port, o).then(
        (raw) => {
          if (protocol !== 'https:') return done?.(null, raw);
          const s = n.tls.connect({
            socket: raw,
            ...(isIP(host) === 0 ? { servername: host } : {}),
            ...(o.secureContext ? { secureContext: o.secureContext } : {}),
            ALPNProtocols: ['http/1.1'],
          });
          done?.(null, s);
        },
        (e: unknown) => done?.(e as Error, undefined as unknown as Duplex),
      );
      return undefined;
    }
  }
  return new TunnelAgent(agentOptions);
}
