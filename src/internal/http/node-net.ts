import { createRequire } from 'node:module';

// node:http, node:https and node:tls take ~25 ms to load (and an ESM import of node:http reads
// lazy getters that pull in Node's bundled undici): only a command that makes a request pays for
// them, not a `kiln build` that finds everything local. Loaded by require on the first request.

/** The Node modules the HTTP client speaks through. */
export interface NodeNet {
  readonly http: typeof import('node:http');
  readonly https: typeof import('node:https');
  readonly tls: typeof import('node:tls');
}

let require: NodeJS.Require | undefined;
const cache: { http?: NodeNet['http']; https?: NodeNet['https']; tls?: NodeNet['tls'] } = {};
const load = (id: string): unknown => {
  require ??= createRequire(import.meta.url);
  return require(id);
};

// Each module loads when first used: a plain-http request (a loopback registry, an http mirror)
// does not load TLS.
const lazy: NodeNet = {
  get http() {
    cache.http ??= load('node:http') as NodeNet['http'];
    return cache.http;
  },
  get https() {
    cache.https ??= load('node:https') as NodeNet['https'];
    return cache.https;
  },
  get tls() {
    cache.tls ??= load('node:tls') as NodeNet['tls'];
    return cache.tls;
  },
};

/** nodeNet gives node:http, node:https and node:tls, each loaded on first use. */
export function nodeNet(): NodeNet {
  return lazy;
}

/** statusText is the standard reason phrase of an HTTP status ('' for an unknown one). */
export function statusText(status: number): string {
  return lazy.http.STATUS_CODES[status] ?? '';
}
