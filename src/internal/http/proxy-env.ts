import { BlockList, isIP } from 'node:net';

// Which proxy, if any, a request of kiln's own goes through. The rules are those of the proxy
// variables as curl and Go read them:
//  - `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http URLs; the upper-case name wins over the
//    lower-case one (as Go does); a value without a scheme is an http:// proxy;
//  - `NO_PROXY` (either case) is a comma- or space-separated list: `*` bypasses every host; an IP
//    address or a CIDR range matches IP-literal hosts in it; a domain name, with or without a
//    leading `.`, matches that name and every name under it; `*.example.com` matches only names
//    under it; any entry may end in `:port`, and then matches only that port.
// Loopback hosts are not exempt unless NO_PROXY names them, as with curl: the user's
// variables decide, nothing is bypassed behind their back.

/** The environment variables read here (both cases). */
export type ProxyEnv = Readonly<Record<string, string | undefined>>;

type Entry =
  | { readonly kind: 'all'; readonly port: number }
  | { readonly kind: 'ip'; readonly range: BlockList; readonly port: number }
  | {
      readonly kind: 'domain';
      readonly name: string;
      readonly subdomainsOnly: boolean;
      readonly port: number;
    };

/** NoProxy is a parsed NO_PROXY list. */
export class NoProxy {
  readonly #entries: readonly Entry[];

  constructor(value: string) {
    this.#entries = value
      .split(/[,\s]+/)
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '')
      .flatMap((s) => parseEntry(s) ?? []);
  }

  /** bypasses tells whether a request to `url` goes direct. */
  bypasses(url: URL): boolean {
    if (this.#entries.length === 0) return false;
    const host = hostOf(url);
    const port = portOf(url);
    const family = isIP(host);
    for (const e of this.#entries) {
      if (e.port !== 0 && e.port !== port) continue;
      if (e.kind === 'all') return true;
      if (e.kind === 'ip') {
        if (family !== 0 && e.range.check(host, family === 6 ? 'ipv6' : 'ipv4')) return true;
        continue;
      }
      if (family !== 0) continue;
      if (!e.subdomainsOnly && host === e.name) return true;
      if (host.endsWith(`.${e.name}`)) return true;
    }
    return false;
  }
}

function parseEntry(raw: string): Entry | undefined {
  let s = raw;
  let port = 0;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    s = bracketed[1]!;
    port = bracketed[2] !== undefined ? Number(bracketed[2]) : 0;
  } else if (!s.includes('/') && (s.match(/:/g) ?? []).length === 1) {
    const m = /^(.*):(\d+)$/.exec(s);
    if (!m) return undefined;
    s = m[1]!;
    port = Number(m[2]);
  }
  if (s === '*') return { kind: 'all', port };
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family !== 0) {
    const type = family === 6 ? 'ipv6' : 'ipv4';
    const max = family === 6 ? 128 : 32;
    const bits = slash < 0 ? max : Number(s.slice(slash + 1));
    if (
      !Number.isInteger(bits) ||
      bits < 0 ||
      bits > max ||
      (slash >= 0 && !/^\d+$/.test(s.slice(slash + 1)))
    )
      return undefined;
    const range = new BlockList();
    range.addSubnet(addr, bits, type);
    return { kind: 'ip', range, port };
  }
  if (slash >= 0) return undefined;
  const subdomainsOnly = s.startsWith('*.');
  const name = s.replace(/^\*?\./, '').replace(/\.$/, '');
  if (name === '') return undefined;
  return { kind: 'domain', name, subdomainsOnly, port };
}

/** hostOf is the URL's host name, lower case, without IPv6 brackets or a trailing dot. */
function hostOf(url: URL): string {
  let h = url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h.length > 1 && h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** ProxySettings decides the proxy of each request from the proxy variables. */
export class ProxySettings {
  readonly http: URL | undefined;
  readonly https: URL | undefined;
  readonly noProxy: NoProxy;

  constructor(env: ProxyEnv) {
    this.http = proxyUrl('HTTP_PROXY', pick(env, 'HTTP_PROXY'));
    this.https = proxyUrl('HTTPS_PROXY', pick(env, 'HTTPS_PROXY'));
    this.noProxy = new NoProxy(pick(env, 'NO_PROXY') ?? '');
  }

  /** proxyFor returns the proxy for a request to `url`, or undefined to go direct. */
  proxyFor(url: URL): URL | undefined {
    const proxy = url.protocol === 'https:' ? this.https : url.protocol === 'http:' ? this.http : undefined;
    if (proxy === undefined || this.noProxy.bypasses(url)) return undefined;
    return proxy;
  }
}

function pick(env: ProxyEnv, upper: string): string | undefined {
  const v = env[upper] ?? env[upper.toLowerCase()];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

// SOCKS proxies are not spoken by kiln's own client: a socks5:// value fails here, by name,
// rather than being ignored.
const PROXY_SCHEMES = new Set(['http:', 'https:']);

function proxyUrl(name: string, value: string | undefined): URL | undefined {
  if (value === undefined) return undefined;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new Error(`${name}: not a proxy URL (expected http://host:port)`);
  }
  if (!PROXY_SCHEMES.has(u.protocol))
    throw new Error(`${name}: proxy scheme ${u.protocol} is not supported (expected http or https)`);
  return u;
}
