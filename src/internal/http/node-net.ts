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

let loaded: NodeNet | undefined;

/** nodeNet loads node:http, node:https and node:tls once, on first use. */
export function nodeNet(): NodeNet {
  if (loaded === undefined) {
    const load = createRequire(import.meta.url);
    loaded = {
      http: load('node:http') as typeof import('node:http'),
      https: load('node:https') as typeof import('node:https'),
      tls: load('node:tls') as typeof import('node:tls'),
    };
  }
  return loaded;
}

/** statusText is the standard reason phrase of an HTTP status ('' for an unknown one). */
export function statusText(status: number): string {
  return nodeNet().http.STATUS_CODES[status] ?? '';
}
