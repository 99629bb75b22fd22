import { KilnError } from '../internal/errors.ts';
import { HttpClient, type HttpResponse } from '../internal/http/client.ts';
import {
  DEFAULT_RETRY,
  isTransient,
  RetryableStatus,
  type RetryPolicy,
  retryAfter,
  withRetry,
} from '../internal/http/retry.ts';
import type { Redactor } from '../internal/redactor.ts';
import { type Challenge, parseChallenges } from './challenge.ts';
import { anonymousKeychain, type Credential, type Keychain } from './credentials.ts';
import { RegistryUnreachableError, readLimited } from './errors.ts';
import { apiHost, isLoopback, type Repository } from './reference.ts';
import { RepositoryClient } from './repository.ts';
import { describeNetError, errorFrom, isRetryable, retryReason } from './response.ts';

// Kept here so that callers importing from client.ts keep working after the split.
export { type FetchedManifest, RepositoryClient, referrersTag, type UploadResult } from './repository.ts';
export { describeNetError } from './response.ts';

/** One registry request: method, extra headers and a body (streamed bodies are sent once). */
export interface SendInit {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string | AsyncIterable<Uint8Array>;
}

/** Options of a RegistryClient; the CLI builds them from its settings. */
export interface ClientOptions {
  /** Where credentials come from (default: anonymous). */
  readonly keychain?: Keychain;
  /** Registries (host[:port]) spoken to over plain HTTP. Loopback hosts always are. */
  readonly insecure?: readonly string[];
  readonly retry?: Partial<RetryPolicy>;
  /** Blobs larger than this are uploaded in PATCH chunks (default 4 MiB). */
  readonly monolithicMax?: number;
  /** Size of each PATCH chunk (default 64 MiB); every chunk streams, none is buffered. */
  readonly chunkSize?: number;
  /** Parallel blob transfers per image write (default 6, as containers/image). */
  readonly jobs?: number;
  readonly userAgent?: string;
  /** The HTTP client (proxies, extra CAs, timeouts); default: direct, Node's CAs. */
  readonly http?: HttpClient;
  /** Debug lines (retries, auth steps). Never given secrets. */
  readonly debug?: (msg: string) => void;
  /** Learns every credential the keychain resolves and every token received, so output never shows them. */
  readonly redactor?: Redactor;
}

interface Token {
  readonly value: string;
  readonly expiresAt: number;
}

// What one registry host needs: its base URL, how it challenges, and tokens by scope set.
interface HostState {
  readonly base: string;
  challenge: Challenge | undefined;
  credential: Credential | undefined;
  readonly tokens: Map<string, Promise<Token>>;
}

/**
 * RegistryClient speaks the OCI distribution API over HTTP (http.ts): ping and auth (anonymous, basic,
 * bearer tokens with scopes, cached per registry and scope set), manifests, blobs (verified on
 * the way in; HEAD, cross-repository mount, monolithic or chunked uploads on the way out),
 * referrers and tags. Get a `RepositoryClient` per repository with `repository()`.
 */
export class RegistryClient {
  readonly #keychain: Keychain;
  readonly #insecure: ReadonlySet<string>;
  readonly #hosts = new Map<string, Promise<HostState>>();
  readonly retry: RetryPolicy;
  readonly monolithicMax: number;
  readonly chunkSize: number;
  readonly jobs: number;
  readonly #ua: string;
  readonly #debug: (msg: string) => void;
  readonly #redactor: Redactor | undefined;
  readonly http: HttpClient;

  constructor(opts: ClientOptions = {}) {
    this.http = opts.http ?? new HttpClient();
    this.#keychain = opts.keychain ?? anonymousKeychain;
    this.#redactor = opts.redactor;
    this.#insecure = new Set(opts.insecure ?? []);
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.monolithicMax = opts.monolithicMax ?? 4 * 1024 * 1024;
    this.chunkSize = opts.chunkSize ?? 64 * 1024 * 1024;
    this.jobs = opts.jobs ?? 6;
    this.#ua = opts.userAgent ?? 'kiln/0.1';
    this.#debug = opts.debug ?? (() => {});
  }

  /**
   * repository returns a client for one repository. `push` asks for push rights; `mountFrom`
   * names repositories of the same registry whose blobs may be mounted (pull rights on them
   * are requested in the same token).
   */
  repository(
    repo: Repository,
    opts: { push?: boolean; mountFrom?: readonly Repository[] } = {},
  ): RepositoryClient {
    const scopes = [`repository:${repo.repository}:${opts.push ? 'pull,push' : 'pull'}`];
    for (const m of opts.mountFrom ?? [])
      if (m.registry === repo.registry && m.repository !== repo.repository)
        scopes.push(`repository:${m.repository}:pull`);
    return new RepositoryClient(this, repo, [...new Set(scopes)]);
  }

  /** scheme tells whether `registry` is spoken to over http (insecure or loopback) or https. */
  scheme(registry: string): 'http' | 'https' {
    return this.#insecure.has(registry) || isLoopback(registry) ? 'http' : 'https';
  }

  /** debugLine reports a debug line (retries, auth) to the caller's sink. */
  debugLine(msg: string): void {
    this.#debug(msg);
  }

  #host(registry: string): Promise<HostState> {
    let p = this.#hosts.get(registry);
    if (!p) {
      p = this.#ping(registry);
      this.#hosts.set(registry, p);
      p.catch(() => this.#hosts.delete(registry));
    }
    return p;
  }

  // GET /v2/ tells whether and how the registry wants authentication.
  async #ping(registry: string): Promise<HostState> {
    const base = `${this.scheme(registry)}://${apiHost(registry)}`;
    const res = await withRetry(
      async () => {
        let r: HttpResponse;
        try {
          r = await this.http.request(`${base}/v2/`, {
            headers: { 'user-agent': this.#ua },
            timeoutMs: 30_000,
          });
        } catch (e) {
          if (isTransient(e)) throw e;
          throw new RegistryUnreachableError(registry, base, describeNetError(e), e);
        }
        if (r.status !== 200 && r.status !== 401 && isRetryable(r.status))
          throw new RetryableStatus(r.status, retryAfter(r.headers.get('retry-after')), async () =>
            errorFrom(`ping registry ${registry}`, r),
          );
        return r;
      },
      this.retry,
      (e, n, d) => this.#debug(`ping ${registry}: ${retryReason(e)}; retry ${n} in ${Math.round(d)} ms`),
    ).catch((e: unknown) => {
      if (e instanceof KilnError) throw e;
      throw new RegistryUnreachableError(registry, base, describeNetError(e), e);
    });
    let challenge: Challenge | undefined;
    if (res.status === 401) {
      // Drop the body first: a refusal below must not keep the connection out of the pool (a
      // registry sending bad challenges would otherwise use up every socket and stall kiln).
      await res.discard();
      const chs = parseChallenges(res.headers.get('www-authenticate') ?? '');
      challenge = chs.find((c) => c.scheme === 'bearer') ?? chs.find((c) => c.scheme === 'basic');
      if (!challenge)
        throw new KilnError(`registry ${registry} wants authentication but sent no usable challenge`);
      if (challenge.scheme === 'bearer') validateRealm(registry, challenge.params.realm);
    } else if (res.status !== 200) {
      throw await errorFrom(`ping registry ${registry}`, res);
    } else await res.discard();
    return { base, challenge, credential: undefined, tokens: new Map() };
  }

  async #credential(registry: string, h: HostState): Promise<Credential> {
    if (!h.credential) {
      const c = await this.#keychain.resolve(registry);
      if (c.kind === 'basic') {
        // The password, and the header made of it (CNB_REGISTRY_AUTH hands kiln that value).
        this.#redactor?.add(c.password);
        this.#redactor?.add(Buffer.from(`${c.username}:${c.password}`).toString('base64'));
      } else if (c.kind === 'identityToken' || c.kind === 'registryToken') this.#redactor?.add(c.token);
      h.credential = c;
    }
    return h.credential;
  }

  /** authorization returns the Authorization header value for `scopes` on `registry`, if any. */
  async authorization(
    registry: string,
    scopes: readonly string[],
    fresh = false,
  ): Promise<string | undefined> {
    const h = await this.#host(registry);
    if (!h.challenge) return undefined;
    const cred = await this.#credential(registry, h);
    if (h.challenge.scheme === 'basic') {
      if (cred.kind === 'basic')
        return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
      if (cred.kind === 'registryToken') return `Bearer ${cred.token}`;
      throw new KilnError(
        `registry ${registry} requires a user name and password: none found in the docker config`,
      );
    }
    if (cred.kind === 'registryToken') return `Bearer ${cred.token}`;
    const key = [...scopes].sort().join(' ');
    let t = h.tokens.get(key);
    if (t && !fresh) {
      // A failed token request is not cached: a new one is asked for below.
      const tok = await t.catch(() => undefined);
      if (tok && tok.expiresAt > Date.now()) return `Bearer ${tok.value}`;
    }
    t = this.#fetchToken(registry, h.challenge, cred, scopes);
    h.tokens.set(key, t);
    t.catch(() => h.tokens.delete(key));
    return `Bearer ${(await t).value}`;
  }

  async #fetchToken(
    registry: string,
    ch: Challenge,
    cred: Credential,
    scopes: readonly string[],
  ): Promise<Token> {
    const realm = new URL(ch.params.realm!);
    const service = ch.params.service;
    // A realm elsewhere gets the token request without the registry's credentials.
    const withheld =
      cred.kind !== 'anonymous' && !realmMayGetCredentials(registry, this.scheme(registry), realm);
    if (withheld) {
      this.#debug(`token for ${registry}: credentials not sent to token realm host ${realm.host}`);
      cred = { kind: 'anonymous' };
    }
    this.#debug(`token for ${registry}: scopes ${scopes.join(' ') || '(none)'}`);
    const res = await withRetry(
      async () => {
        let r: HttpResponse;
        if (cred.kind === 'identityToken') {
          // OAuth2 refresh-token grant, as docker does for identity tokens.
          const form = new URLSearchParams({
            grant_type: 'refresh_token',
            refresh_token: cred.token,
            client_id: 'kiln',
          });
          if (service) form.set('service', service);
          if (scopes.length) form.set('scope', scopes.join(' '));
          r = await this.http.request(realm, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': this.#ua },
            body: form.toString(),
            timeoutMs: 30_000,
          });
        } else {
          const u = new URL(realm);
          if (service) u.searchParams.set('service', service);
          for (const s of scopes) u.searchParams.append('scope', s);
          const headers: Record<string, string> = { 'user-agent': this.#ua };
          if (cred.kind === 'basic')
            headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
          r = await this.http.request(u, { headers, timeoutMs: 30_000 });
        }
        if (isRetryable(r.status))
          throw new RetryableStatus(r.status, retryAfter(r.headers.get('retry-after')), async () =>
            errorFrom(`get token for ${registry}`, r),
          );
        return r;
      },
      this.retry,
      (e, n, d) => this.#debug(`token for ${registry}: ${retryReason(e)}; retry ${n} in ${Math.round(d)} ms`),
    );
    if (res.status === 401 || res.status === 403) {
      await res.discard();
      const who = withheld
        ? `its token realm ${realm.host} is not the registry's host or domain (or not https), so kiln did not send it the credentials for ${registry}`
        : cred.kind === 'anonymous'
          ? `no credentials found for ${registry} in the docker config`
          : `the credentials for ${registry} were refused`;
      throw new KilnError(
        `authentication to registry ${registry} failed: ${who} (token server answered ${res.status})`,
      );
    }
    if (!res.ok) throw await errorFrom(`get token for ${registry}`, res);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(await readLimited(res, 1 << 20)) as typeof body;
    } catch {
      throw new KilnError(`get token for ${registry}: token server answered something other than JSON`);
    }
    if (typeof body !== 'object' || body === null)
      throw new KilnError(`get token for ${registry}: token server answered JSON that is not an object`);
    const value =
      typeof body.token === 'string' && body.token
        ? body.token
        : typeof body.access_token === 'string'
          ? body.access_token
          : '';
    if (!value) throw new KilnError(`get token for ${registry}: token server answered without a token`);
    this.#redactor?.add(value);
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    return { value, expiresAt: Date.now() + Math.max(1, ttl - 10) * 1000 };
  }

  /**
   * send makes one authenticated request (no retry). A 401 with a bearer challenge refreshes the
   * token once (with the scope the registry asked for) when the body can be sent again.
   */
  async send(
    registry: string,
    scopes: readonly string[],
    url: string | URL,
    init: SendInit,
  ): Promise<HttpResponse> {
    const h = await this.#host(registry);
    const headers: Record<string, string> = { ...init.headers, 'user-agent': this.#ua };
    const auth = await this.authorization(registry, scopes);
    if (auth) headers.authorization = auth;
    const streamed = typeof init.body === 'object' && Symbol.asyncIterator in init.body;
    const go = () =>
      this.http.request(url, {
        ...(init.method ? { method: init.method } : {}),
        headers,
        ...(init.body !== undefined ? { body: init.body } : {}),
      });
    let res = await go();
    if (res.status === 401 && !h.challenge && !streamed) {
      // Some registries answer /v2/ anonymously but challenge per repository: adopt it and retry.
      const chs = parseChallenges(res.headers.get('www-authenticate') ?? '');
      const ch = chs.find((c) => c.scheme === 'bearer') ?? chs.find((c) => c.scheme === 'basic');
      if (ch) {
        if (ch.scheme === 'bearer') validateRealm(registry, ch.params.realm);
        h.challenge = ch;
        await res.discard();
        const a = await this.authorization(registry, scopes);
        if (a) headers.authorization = a;
        res = await go();
      }
    }
    if (res.status === 401 && h.challenge?.scheme === 'bearer' && !streamed) {
      const ch = parseChallenges(res.headers.get('www-authenticate') ?? '').find(
        (c) => c.scheme === 'bearer',
      );
      const extra = ch?.params.scope ? ch.params.scope.split(' ') : [];
      await res.discard();
      const fresh = await this.authorization(registry, [...new Set([...scopes, ...extra])], true);
      if (fresh) headers.authorization = fresh;
      res = await go();
    } else if (res.status === 401 && h.challenge?.scheme === 'bearer') {
      // A streamed body cannot be sent again here; forget the token so that the caller's restart
      // (uploadBlob restarts the whole upload) fetches a fresh one.
      h.tokens.delete([...scopes].sort().join(' '));
    }
    return res;
  }

  /**
   * request sends a replayable request with retries on 408/429/5xx and connection resets. Any
   * status in `ok` is returned; other statuses become a RegistryError naming `action`.
   */
  async request(
    registry: string,
    scopes: readonly string[],
    action: string,
    url: string | URL,
    init: SendInit,
    ok: readonly number[],
  ): Promise<HttpResponse> {
    return withRetry(
      async () => {
        const res = await this.send(registry, scopes, url, init);
        if (ok.includes(res.status)) return res;
        if (isRetryable(res.status))
          throw new RetryableStatus(res.status, retryAfter(res.headers.get('retry-after')), async () =>
            errorFrom(action, res),
          );
        throw await errorFrom(action, res);
      },
      this.retry,
      (e, n, d) => this.#debug(`${action}: ${retryReason(e)}; retry ${n} in ${Math.round(d)} ms`),
    ).catch((e: unknown) => {
      if (e instanceof KilnError) throw e;
      throw new KilnError(`${action}: connection failed: ${describeNetError(e)}`, {
        cause: e,
      });
    });
  }
}

/**
 * realmMayGetCredentials: a registry's credentials go to its token realm only when the realm is
 * the registry's own host (any port) or in its parent domain (registry-1.docker.io →
 * auth.docker.io, registry.gitlab.com → gitlab.com), and never in clear text to an https registry.
 * IP addresses and single-label hosts must match exactly.
 */
export function realmMayGetCredentials(registry: string, registryScheme: string, realm: URL): boolean {
  if (realm.protocol === 'http:' && registryScheme === 'https') return false;
  const host = new URL(`http://${apiHost(registry)}`).hostname.toLowerCase();
  const other = realm.hostname.toLowerCase();
  if (other === host) return true;
  const labels = host.split('.');
  if (labels.length < 2 || /^[\d.]+$/.test(host) || host.startsWith('[')) return false;
  const parent = labels.length > 2 ? labels.slice(1).join('.') : host;
  return other === parent || other.endsWith(`.${parent}`);
}

// validateRealm refuses token realms that are not plain http(s) URLs (no file:, no user info),
// so a hostile registry cannot point kiln's credentials at something else.
function validateRealm(registry: string, realm: string | undefined): void {
  if (!realm) throw new KilnError(`registry ${registry} sent a bearer challenge without a realm`);
  let u: URL;
  try {
    u = new URL(realm);
  } catch {
    throw new KilnError(`registry ${registry} sent an invalid token realm (not a URL)`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new KilnError(
      `registry ${registry} sent a token realm with scheme ${u.protocol} (expected http or https)`,
    );
  if (u.username || u.password) throw new KilnError(`registry ${registry} sent a token realm with user info`);
}
