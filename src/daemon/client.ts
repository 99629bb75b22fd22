import { existsSync } from 'node:fs';
import type http from 'node:http';
import type { Readable } from 'node:stream';
import { KilnError } from '../internal/errors.ts';

// The Docker Engine API, spoken to Docker or to Podman's Docker-compatible service, over a unix
// socket or plain TCP. Only what kiln needs: inspect, export (`/images/{name}/get`), load
// (`/images/load`), tag and the engine's name. Bodies stream both ways; nothing is buffered
// whole except small JSON answers.

/** The API version asked for: Docker 1.13+ and Podman 4+ both speak it. */
const API = '/v1.41';
/** Largest JSON answer read into memory (inspect, version, error bodies). */
const MAX_JSON = 8 << 20;

/** Where the daemon listens. */
export interface DaemonEndpoint {
  readonly socketPath?: string;
  readonly host?: string;
  readonly port?: number;
  /** How messages name it (`unix:///run/docker.sock`, `tcp://127.0.0.1:2375`). */
  readonly display: string;
}

/** parseDaemonHost reads a DOCKER_HOST value: `unix:///path` or `tcp://host:port`. */
export function parseDaemonHost(value: string): DaemonEndpoint {
  if (value.startsWith('unix://')) {
    const p = value.slice('unix://'.length);
    if (!p.startsWith('/')) throw new KilnError(`DOCKER_HOST ${value}: expected unix:///absolute/path`);
    return { socketPath: p, display: value };
  }
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(value);
  if (m) {
    const host = m[1]!.replace(/^\[|\]$/g, '');
    return { host, port: m[2] ? Number(m[2]) : 2375, display: value };
  }
  throw new KilnError(`DOCKER_HOST ${value}: kiln speaks to daemons at unix:///PATH or tcp://HOST:PORT`);
}

/** What kiln knows of an image in the daemon (from `/images/{name}/json`). */
export interface DaemonImageInfo {
  /** The image ID: the config's digest. */
  readonly id: string;
  /** The layers' diffIDs, bottom first. */
  readonly diffIDs: readonly string[];
  readonly repoTags: readonly string[];
}

/** Options of a DaemonClient. */
export interface DaemonClientOptions {
  /** DOCKER_HOST, when set: the only daemon tried. */
  readonly host?: string;
  /** Sockets tried in order when `host` is unset (Docker's, then Podman's). */
  readonly sockets: readonly string[];
  readonly debug?: (msg: string) => void;
}

/** DaemonClient talks to one daemon, found when first needed. */
export class DaemonClient {
  readonly #opts: DaemonClientOptions;
  #endpoint: DaemonEndpoint | undefined;
  #engine: Promise<'docker' | 'podman'> | undefined;

  constructor(opts: DaemonClientOptions) {
    this.#opts = opts;
  }

  /** endpoint is DOCKER_HOST, else the first default socket that exists. */
  endpoint(): DaemonEndpoint {
    if (this.#endpoint) return this.#endpoint;
    if (this.#opts.host) {
      this.#endpoint = parseDaemonHost(this.#opts.host);
    } else {
      const sock = this.#opts.sockets.find((s) => existsSync(s));
      if (!sock)
        throw new KilnError(
          `no Docker or Podman daemon: DOCKER_HOST is unset and none of ${this.#opts.sockets.join(', ')} exists (start one, e.g. podman system service, or set DOCKER_HOST)`,
        );
      this.#endpoint = { socketPath: sock, display: `unix://${sock}` };
    }
    this.#opts.debug?.(`daemon: ${this.#endpoint.display}`);
    return this.#endpoint;
  }

  /** request sends one API call; the answer's body is the caller's to read. */
  request(
    method: string,
    apiPath: string,
    opts: { body?: Readable; headers?: Record<string, string> } = {},
  ): Promise<http.IncomingMessage> {
    const ep = this.endpoint();
    // node:http is loaded here, when kiln talks to a daemon: imported at the top it cost every
    // command that names an image ~2.5 ms of CPU at start-up.
    const { request } = process.getBuiltinModule('node:http');
    return new Promise((resolve, reject) => {
      const req = request(
        {
          method,
          path: `${API}${apiPath}`,
          headers: { Host: 'docker', ...(opts.headers ?? {}) },
          ...(ep.socketPath ? { socketPath: ep.socketPath } : { host: ep.host, port: ep.port }),
        },
        resolve,
      );
      req.on('error', (e: NodeJS.ErrnoException) =>
        reject(new KilnError(`daemon ${ep.display}: ${e.code ?? ''} ${e.message}`.trim(), { cause: e })),
      );
      if (opts.body) {
        opts.body.on('error', (e) => req.destroy(e));
        opts.body.pipe(req);
      } else req.end();
    });
  }

  /** call sends one API call and reads a JSON answer; a non-2xx answer is a KilnError. */
  async call(method: string, apiPath: string, what: string): Promise<unknown> {
    const res = await this.request(method, apiPath);
    const text = await readBody(res);
    if ((res.statusCode ?? 500) >= 300) throw this.#failure(what, res.statusCode, text);
    // Some answers (tag: 201) carry no JSON body.
    try {
      return text.trim() === '' ? undefined : JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  /** inspect is what the daemon knows of `name`; undefined when it has no such image. */
  async inspect(name: string): Promise<DaemonImageInfo | undefined> {
    const res = await this.request('GET', `/images/${encodeURIComponent(name)}/json`);
    const text = await readBody(res);
    if (res.statusCode === 404) return undefined;
    if ((res.statusCode ?? 500) >= 300) throw this.#failure(`inspect ${name}`, res.statusCode, text);
    const j = JSON.parse(text) as { Id?: unknown; RootFS?: { Layers?: unknown }; RepoTags?: unknown };
    const strings = (x: unknown) => (Array.isArray(x) ? x.filter((s) => typeof s === 'string') : []);
    if (typeof j.Id !== 'string')
      throw new KilnError(`daemon ${this.endpoint().display}: inspect ${name}: no Id`);
    return { id: j.Id, diffIDs: strings(j.RootFS?.Layers), repoTags: strings(j.RepoTags) };
  }

  /** exportImage streams `docker save` of `name` (a docker-archive tar). */
  async exportImage(name: string): Promise<Readable> {
    const res = await this.request('GET', `/images/${encodeURIComponent(name)}/get`);
    if ((res.statusCode ?? 500) >= 300)
      throw this.#failure(`export ${name}`, res.statusCode, await readBody(res));
    return res;
  }

  /**
   * load sends a docker-archive to `/images/load`. Docker answers 200 and reports a failure in
   * the JSON message stream; Podman answers with an error status: both are a KilnError here.
   */
  async load(archive: Readable): Promise<void> {
    const res = await this.request('POST', '/images/load?quiet=1', {
      body: archive,
      headers: { 'Content-Type': 'application/x-tar' },
    });
    const text = await readBody(res);
    if ((res.statusCode ?? 500) >= 300) throw this.#failure('load', res.statusCode, text);
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg: { error?: unknown; errorDetail?: { message?: unknown } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        continue;
      }
      const err = msg.errorDetail?.message ?? msg.error;
      if (err !== undefined) throw new KilnError(`daemon ${this.endpoint().display}: load: ${String(err)}`);
    }
  }

  /** tag names the image `source` (an ID or name) `repo:tag` too. */
  async tag(source: string, repo: string, tag: string): Promise<void> {
    const q = `repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`;
    await this.call('POST', `/images/${encodeURIComponent(source)}/tag?${q}`, `tag ${source} ${repo}:${tag}`);
  }

  /** engine says whose daemon this is (Podman's compatible service names itself in /version). */
  engine(): Promise<'docker' | 'podman'> {
    this.#engine ??= this.call('GET', '/version', 'version').then((v) => {
      const comps = (v as { Components?: { Name?: unknown }[] } | undefined)?.Components ?? [];
      return comps.some((c) => typeof c.Name === 'string' && /podman/i.test(c.Name)) ? 'podman' : 'docker';
    });
    return this.#engine;
  }

  #failure(what: string, status: number | undefined, text: string): KilnError {
    let message = text.trim();
    try {
      const j = JSON.parse(text) as { message?: unknown };
      if (typeof j.message === 'string') message = j.message;
    } catch {
      // not JSON: the text as it is
    }
    const oneLine = message.replace(/\s+/g, ' ').slice(0, 500);
    return new KilnError(`daemon ${this.endpoint().display}: ${what}: ${status ?? '?'} ${oneLine}`.trim());
  }
}

/** readBody reads a (small) answer whole; more than MAX_JSON bytes is refused. */
async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > MAX_JSON) {
      res.destroy();
      throw new KilnError(`daemon answer larger than ${MAX_JSON} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
