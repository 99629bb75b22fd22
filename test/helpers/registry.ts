// Test helpers that start real registry parts on 127.0.0.1 with random ports:
//  - startRegistry: the Debian `docker-registry` (Docker Distribution 2.8) with filesystem storage
//    in a temp dir, optionally behind bearer-token auth served by startTokenServer;
//  - startTokenServer: the docker token flow (realm/service/scope, basic-auth user check) issuing
//    RS256 JWTs signed by a throw-away key whose self-signed certificate the registry trusts;
//  - startProxy / startCountingProxy: an HTTP forwarder in front of a registry that counts the
//    bytes of blob uploads and can inject faults (status codes, truncated or corrupted bodies,
//    connection resets) into chosen requests.
// Nothing here is a mock: every byte still goes through the real registry.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** A running registry. `host` is `127.0.0.1:PORT`, `url` is `http://127.0.0.1:PORT`. */
export interface RegistryHandle {
  readonly host: string;
  readonly url: string;
  /** Storage root of the registry (filesystem driver), for tests that inspect it. */
  readonly storageDir: string;
  /** Present when started with `auth: 'token'`. */
  readonly tokenServer?: TokenServerHandle;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Refresh (identity) tokens the token server accepts, by user (token auth only). */
  refreshTokens?: Readonly<Record<string, string>>;
  /**
   * 'none' (default): anonymous push and pull. 'token': bearer tokens from a token server.
   * 'basic': HTTP basic auth against an htpasswd file made from `users` (htpasswd -B).
   */
  auth?: 'none' | 'token' | 'basic';
  /** Users accepted with 'token' or 'basic' auth. Default `{ kiln: 'secret' }`. */
  users?: Readonly<Record<string, string>>;
  /** Let anonymous callers get pull tokens (token auth only). Default false. */
  anonymousPull?: boolean;
  /**
   * Send Docker Distribution notifications (the JSON event envelope) to `url` on every push and
   * pull, with `Authorization: Bearer <token>` when a token is given.
   */
  notifications?: { readonly url: string; readonly token?: string };
}

// Children we started, killed if the test process exits without stopping them.
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** freePort asks the kernel for an unused port on 127.0.0.1 (raced by design: retry on bind error). */
export async function freePort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/**
 * startRegistry runs `docker-registry serve CONFIG` on 127.0.0.1 and a random port, with storage
 * in a fresh temp dir, and resolves when `/v2/` answers. `stop()` kills it and removes the dir.
 */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RegistryHandle> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-registry-'));
  let tokenServer: TokenServerHandle | undefined;
  try {
    if (opts.auth === 'token') {
      tokenServer = await startTokenServer({
        users: opts.users ?? { kiln: 'secret' },
        ...(opts.refreshTokens ? { refreshTokens: opts.refreshTokens } : {}),
        anonymousPull: opts.anonymousPull ?? false,
      });
    }
    let htpasswd: string | undefined;
    if (opts.auth === 'basic') {
      htpasswd = path.join(dir, 'htpasswd');
      const lines: string[] = [];
      for (const [u, p] of Object.entries(opts.users ?? { kiln: 'secret' })) {
        const { stdout } = await execFileP('htpasswd', ['-nbB', u, p]);
        lines.push(stdout.trim());
      }
      await writeFile(htpasswd, lines.join('\n') + '\n');
    }
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const config = registryConfig(dir, port, tokenServer, htpasswd, opts.notifications);
      await writeFile(path.join(dir, 'config.yml'), config);
      const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.add(child);
      let stderr = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => {
        stderr = (stderr + d).slice(-4000);
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = `http://127.0.0.1:${port}`;
      const ready = await waitReady(`${url}/v2/`, exited);
      if (ready) {
        const tk = tokenServer;
        return {
          host: `127.0.0.1:${port}`,
          url,
          storageDir: path.join(dir, 'storage'),
          ...(tk ? { tokenServer: tk } : {}),
          async stop() {
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
            await exited;
            clearTimeout(timer);
            children.delete(child);
            await tk?.stop();
            await rm(dir, { recursive: true, force: true });
          },
        };
      }
      child.kill('SIGKILL');
      children.delete(child);
      if (attempt >= 3) throw new Error(`docker-registry did not start on port ${port}: ${stderr.trim()}`);
    }
  } catch (e) {
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

function registryConfig(
  dir: string,
  port: number,
  tk: TokenServerHandle | undefined,
  htpasswd: string | undefined,
  notify?: StartRegistryOptions['notifications'],
): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'storage')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (tk) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${tk.url}/token`,
      `    service: ${tk.service}`,
      `    issuer: ${tk.issuer}`,
      `    rootcertbundle: ${tk.certFile}`,
    );
  }
  if (htpasswd) lines.push('auth:', '  htpasswd:', '    realm: kiln-test', `    path: ${htpasswd}`);
  if (notify) {
    lines.push('notifications:', '  endpoints:', '    - name: test', `      url: ${notify.url}`);
    if (notify.token) lines.push('      headers:', `        Authorization: [Bearer ${notify.token}]`);
    lines.push('      timeout: 2s', '      threshold: 3', '      backoff: 1s');
  }
  return lines.join('\n') + '\n';
}

async function waitReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !dead) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return true;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Token server

/** One request the token server answered, for assertions on scopes and caching. */
export interface TokenRequest {
  readonly user: string | undefined;
  readonly service: string | null;
  readonly scopes: readonly string[];
  readonly status: number;
}

/** A running docker token server. */
export interface TokenServerHandle {
  readonly url: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM certificate the registry trusts (`auth.token.rootcertbundle`). */
  readonly certFile: string;
  /** Every token request so far, oldest first. */
  readonly requests: TokenRequest[];
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  users: Readonly<Record<string, string>>;
  /** OAuth2 refresh tokens (docker's identity tokens) accepted by `POST /token`, by user. */
  refreshTokens?: Readonly<Record<string, string>>;
  anonymousPull?: boolean;
  service?: string;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

/**
 * startTokenServer serves `GET /token?service=…&scope=…` (docker token auth). Callers with valid
 * basic credentials get every action they ask for; anonymous callers get `pull` only when
 * `anonymousPull` is set; wrong credentials get 401.
 */
export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServerHandle> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-token-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  // The registry verifies the token's x5c leaf against rootcertbundle; a self-signed cert is both.
  await execFileP('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    '/CN=kiln-test-token',
    '-days',
    '2',
  ]);
  const keyPem = await readFile(keyFile, 'utf8');
  const certPem = await readFile(certFile, 'utf8');
  const certDer = certPem
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
    .replace(/\s+/g, '')
    .trim();
  const service = opts.service ?? 'kiln-test-registry';
  const issuer = 'kiln-test-issuer';
  const requests: TokenRequest[] = [];

  const server = http.createServer((req, res) => {
    let form = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      form += d;
    });
    req.on('end', () => answer(req, res, form));
  });
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, form: string) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    // GET: docker token flow with basic auth. POST: OAuth2 refresh-token grant (identity tokens).
    const q = req.method === 'POST' ? new URLSearchParams(form) : u.searchParams;
    const scopes = q.getAll('scope').flatMap((s) => s.split(' ').filter(Boolean));
    let user: string | undefined;
    let ok = false;
    const authz = req.headers.authorization;
    if (req.method === 'POST') {
      const rt = q.get('refresh_token') ?? '';
      const found = Object.entries(opts.refreshTokens ?? {}).find(([, t]) => t === rt);
      ok = q.get('grant_type') === 'refresh_token' && found !== undefined;
      user = found?.[0];
    } else if (authz?.startsWith('Basic ')) {
      const decoded = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      user = decoded.slice(0, i);
      ok = Object.hasOwn(opts.users, user) && opts.users[user] === decoded.slice(i + 1);
    } else if (opts.anonymousPull) {
      ok = true;
    }
    if (!ok) {
      requests.push({ user, service: q.get('service'), scopes, status: 401 });
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    const access = scopes.flatMap((s) => {
      const parts = s.split(':');
      if (parts.length < 3) return [];
      const actions = parts.pop()!.split(',');
      const type = parts.shift()!;
      const name = parts.join(':');
      const granted = user === undefined ? actions.filter((a) => a === 'pull') : actions;
      return [{ type, name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = opts.expiresIn ?? 300;
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: q.get('service') ?? service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(signingInput).sign(keyPem);
    const token = `${signingInput}.${b64url(sig)}`;
    requests.push({ user, service: q.get('service'), scopes, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' });
    const body =
      req.method === 'POST'
        ? { access_token: token, expires_in: expiresIn }
        : { token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() };
    res.end(JSON.stringify(body));
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    service,
    issuer,
    certFile,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function b64url(s: string | Buffer): string {
  return Buffer.from(s).toString('base64url');
}

// ---------------------------------------------------------------------------------------------
// Counting and fault-injecting proxy

/** What a proxied request looked like, for rules and assertions. */
export interface ProxiedRequest {
  readonly method: string;
  /** Path and query as sent by the client. */
  readonly path: string;
  /** 0-based sequence number over all requests this proxy has seen. */
  readonly seq: number;
}

/**
 * Fault injected instead of (or into) a forwarded request:
 * - `status`: answer with this status (and an optional body) without contacting the registry;
 * - `truncateAfter`: forward, but cut the response body after this many bytes and drop the socket;
 * - `corrupt`: forward, but flip one byte of the response body (length unchanged);
 * - `reset`: drop the client connection without an answer;
 * - `relativeLocation`: forward, but make the Location header relative (path and query only).
 */
export type Fault =
  | { status: number; body?: string; headers?: Record<string, string> }
  | { truncateAfter: number }
  | { relativeLocation: true }
  | { corrupt: true }
  | { reset: true };

export interface ProxyStats {
  /** Bytes of request bodies sent to `/blobs/uploads` (POST, PATCH, PUT). */
  uploadBytes: number;
  /** Requests seen, oldest first, with the status the client got. */
  readonly requests: Array<ProxiedRequest & { status: number }>;
}

export interface ProxyHandle {
  readonly host: string;
  readonly url: string;
  readonly stats: ProxyStats;
  /** Zero the counters and forget the request log. */
  reset(): void;
  /** Replace the fault rule (undefined: forward everything). */
  setFault(rule: ((r: ProxiedRequest) => Fault | undefined) | undefined): void;
  stop(): Promise<void>;
}

/**
 * startProxy forwards HTTP to `target` (`127.0.0.1:PORT` or `http://…`), keeping the client's
 * Host header so that the registry's absolute Location headers point back at the proxy.
 */
export async function startProxy(
  target: string,
  fault?: (r: ProxiedRequest) => Fault | undefined,
): Promise<ProxyHandle> {
  const t = new URL(target.includes('://') ? target : `http://${target}`);
  const stats: ProxyStats = { uploadBytes: 0, requests: [] };
  let rule = fault;
  let seq = 0;
  const server = http.createServer((req, res) => {
    const r: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', seq: seq++ };
    const isUpload = r.path.includes('/blobs/uploads');
    const f = rule?.(r);
    const record = (status: number) => stats.requests.push({ ...r, status });
    if (f && 'reset' in f) {
      record(0);
      req.resume();
      req.socket.destroy();
      return;
    }
    if (f && 'status' in f) {
      record(f.status);
      req.resume();
      req.on('end', () => {
        res.writeHead(f.status, { 'content-type': 'application/json', ...f.headers });
        res.end(f.body ?? '');
      });
      return;
    }
    const up = http.request(
      {
        host: t.hostname,
        port: t.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        record(upRes.statusCode ?? 0);
        if (f && 'truncateAfter' in f) {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          let sent = 0;
          upRes.on('data', (chunk: Buffer) => {
            const room = f.truncateAfter - sent;
            if (room > 0) res.write(chunk.subarray(0, room));
            sent += chunk.length;
            if (sent >= f.truncateAfter) {
              upRes.destroy();
              res.socket?.destroy();
            }
          });
          upRes.on('end', () => res.socket?.destroy());
          return;
        }
        const headers = { ...upRes.headers };
        if (f && 'relativeLocation' in f && typeof headers.location === 'string') {
          const u = new URL(headers.location, 'http://x');
          headers.location = u.pathname + u.search;
        }
        res.writeHead(upRes.statusCode ?? 502, headers);
        if (f && 'corrupt' in f) {
          let flipped = false;
          upRes.on('data', (chunk: Buffer) => {
            if (!flipped && chunk.length > 0) {
              const c = Buffer.from(chunk);
              c[0] = c[0]! ^ 0xff;
              flipped = true;
              res.write(c);
            } else res.write(chunk);
          });
          upRes.on('end', () => res.end());
          return;
        }
        upRes.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.socket?.destroy();
    });
    if (isUpload) {
      req.on('data', (chunk: Buffer) => {
        stats.uploadBytes += chunk.length;
      });
    }
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    stats,
    reset() {
      stats.uploadBytes = 0;
      stats.requests.length = 0;
    },
    setFault(f) {
      rule = f;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** startCountingProxy is startProxy without faults: counts blob-upload bytes in `stats.uploadBytes`. */
export function startCountingProxy(target: string): Promise<ProxyHandle> {
  return startProxy(target);
}
