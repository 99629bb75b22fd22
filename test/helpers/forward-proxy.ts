// Test helper: a small HTTP proxy on 127.0.0.1 that does what corporate proxies do for kiln's own
// traffic: CONNECT tunnels (https targets) and plain forwarding of absolute-URI requests (http
// targets). It counts what it carried, so a test can tell whether a request went through it, and
// can demand Proxy-Authorization. Every byte goes on to the real target.

import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** One request the proxy carried: a CONNECT tunnel or a forwarded request. */
export interface ProxiedCall {
  readonly kind: 'connect' | 'forward';
  /** host:port of the target. */
  readonly target: string;
  /** The forwarded request's method and path (forward only). */
  readonly method?: string;
  readonly path?: string;
}

export interface ForwardProxy {
  /** `http://127.0.0.1:PORT` (with `user:password@` when started with auth). */
  readonly url: string;
  readonly port: number;
  readonly calls: ProxiedCall[];
  stop(): Promise<void>;
}

/**
 * startForwardProxy starts the proxy; with `auth` it answers 407 to requests without it. With
 * `connectTo` (host:port) it plays a hostile proxy: every CONNECT tunnel leads there, whatever
 * target it names. With `tls` (a certificate and key) clients speak TLS to the proxy itself.
 */
export async function startForwardProxy(
  auth?: { user: string; password: string },
  opts: { connectTo?: string; tls?: { cert: string; key: string } } = {},
): Promise<ForwardProxy> {
  const calls: ProxiedCall[] = [];
  const sockets = new Set<Duplex>();
  const expected = auth
    ? `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`
    : undefined;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (expected && req.headers['proxy-authorization'] !== expected) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end();
      return;
    }
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end('absolute URI expected');
      return;
    }
    calls.push({ kind: 'forward', target: target.host, method: req.method ?? '', path: target.pathname });
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const up = http.request(
      {
        host: target.hostname,
        port: target.port || 80,
        method: req.method,
        path: `${target.pathname}${target.search}`,
        headers,
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };
  const server = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
  server.on('connect', (req, client, head) => {
    if (expected && req.headers['proxy-authorization'] !== expected) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
      return;
    }
    const target = req.url ?? '';
    calls.push({ kind: 'connect', target });
    const to = opts.connectTo ?? target;
    const i = to.lastIndexOf(':');
    const up = net.connect(Number(to.slice(i + 1)), to.slice(0, i).replace(/^\[(.*)\]$/, '$1'), () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    for (const s of [up, client]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        up.destroy();
        client.destroy();
      });
    }
  });
  server.on('connection', (s: Duplex) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const cred = auth ? `${auth.user}:${auth.password}@` : '';
  return {
    url: `${opts.tls ? 'https' : 'http'}://${cred}127.0.0.1:${port}`,
    port,
    calls,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
