import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../internal/log.ts';
import type { Fleet } from './declarations.ts';
import { fleetPage, imagePage, logPage, statusRows } from './page.ts';
import { type Checked, type Observer, reconcile, sameRepository, watchedRefs } from './reconcile.ts';
import type { FleetState, Job } from './state.ts';
import { gitHookRepositories, normalizeRepoUrl, registryPushes, verifyGitHook } from './webhooks.ts';
import type { Worker } from './worker.ts';

// `kiln fleet serve`: the scheduler (poll timer, hook endpoints, reconcile) and its HTTP face
// (/healthz, /metrics, hooks, the read-only page). Only the elected scheduler observes and
// queues; every instance serves the page and may run a worker.

export interface ServeOptions {
  readonly state: FleetState;
  readonly observer: Observer;
  readonly log: Logger;
  /** This instance's worker (absent: only scheduling). */
  readonly worker?: Worker;
  readonly host: string;
  readonly port: number;
  /** Shared secret of git hooks (absent: git hooks are refused). */
  readonly gitSecret?: string;
  /** Bearer token registry notifications must carry (absent: any; they are hints only). */
  readonly registryToken?: string;
  /** Token of the page and API when not bound to loopback (required there). */
  readonly pageToken?: string;
  /** Overrides the fleet file's poll interval. */
  readonly pollMs?: number;
  /** How often the state is re-read for applied changes and rebuild requests. */
  readonly reconcileMs?: number;
  /** Whether this instance may schedule now (PostgreSQL: holds the advisory lock). */
  readonly isScheduler?: () => Promise<boolean>;
  /** A summary of an image's software (SBOM), for its page. */
  readonly sbom?: (tag: string, digest: string) => Promise<string[]>;
}

const MAX_BODY = 1024 * 1024;

export class FleetServer {
  readonly #o: ServeOptions;
  #server: http.Server | undefined;
  #timers: NodeJS.Timeout[] = [];
  #lastPoll = 0;
  readonly #rechecking = new Set<string>();
  #pollEvery = 60_000;
  #gen = '';
  #lastReconcile = 0;
  #busy: Promise<unknown> = Promise.resolve();
  #hooks = { registry: 0, git: 0, refused: 0 };
  /** Seconds from the newest run-image change to the last image patched on it. */
  #rollout: number | undefined;
  readonly #durations: number[] = [];

  constructor(o: ServeOptions) {
    this.#o = o;
  }

  /** finished is the worker's callback (metrics: push-to-patched time, durations). */
  finished(job: Job, ok: boolean, ms: number): void {
    this.#durations.push(ms);
    if (this.#durations.length > 1000) this.#durations.shift();
    if (ok && job.reasons.includes('STACK') && job.observed !== undefined)
      this.#rollout = (Date.now() - job.observed) / 1000;
  }

  async start(): Promise<number> {
    const srv = http.createServer((req, res) => {
      this.#handle(req, res).catch((e: unknown) => {
        this.#o.log.error(`fleet: ${req.method} ${req.url}: ${(e as Error).message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    srv.requestTimeout = 30_000;
    srv.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.#o.port, this.#o.host, resolve);
    });
    this.#server = srv;
    this.#o.worker?.start();
    this.#timers.push(setInterval(() => void this.#tick(), this.#o.reconcileMs ?? 2000));
    void this.#tick();
    return (srv.address() as AddressInfo).port;
  }

  /** stop closes the server, stops scheduling and lets the worker finish or hand back its jobs. */
  async stop(graceMs = 30_000): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const closed = new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
    this.#server?.closeIdleConnections();
    await this.#o.worker?.stop(graceMs);
    await this.#busy.catch(() => {});
    await closed;
  }

  // One scheduling step at a time: a hook arriving during a poll waits for it.
  #serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.#busy.then(f, f);
    this.#busy = p.catch(() => {});
    return p;
  }

  async #scheduler(): Promise<boolean> {
    return (await this.#o.isScheduler?.()) ?? true;
  }

  // An idle tick reads one value (the state's generation); the fleet is re-read and reconciled
  // only when something changed (an apply, a rebuild request, an observation, a finished job),
  // when a poll is due, or once a minute.
  async #tick(): Promise<void> {
    await this.#serial(async () => {
      if (!(await this.#scheduler())) return;
      const { state } = this.#o;
      const now = Date.now();
      const pollDue = now - this.#lastPoll >= (this.#o.pollMs ?? this.#pollEvery);
      const gen = await state.generation();
      if (!pollDue && gen === this.#gen && now - this.#lastReconcile < 60_000) return;
      const fleet = await state.fleet();
      if (fleet === undefined) return;
      this.#pollEvery = fleet.pollIntervalMs;
      if (pollDue) {
        this.#lastPoll = now;
        await this.#o.observer.checkAll(fleet);
      }
      await this.#queue();
      this.#lastReconcile = now;
      this.#gen = await state.generation();
    }).catch((e: unknown) => this.#o.log.error(`fleet: scheduling: ${(e as Error).message}`));
  }

  async #queue(): Promise<void> {
    if ((await reconcile(this.#o.state, this.#o.log)) > 0) this.#o.worker?.wake();
  }

  /** A hook named something: check it now and queue what changed. */
  async #react(check: (fleet: Fleet) => Promise<Checked>): Promise<Checked> {
    return this.#serial(async () => {
      const fleet = await this.#o.state.fleet();
      if (fleet === undefined || !(await this.#scheduler())) return { changed: [], errors: [] };
      const c = await check(fleet);
      if (c.changed.length > 0) await this.#queue();
      return c;
    });
  }

  #authorized(req: http.IncomingMessage, url: URL): boolean {
    const token = this.#o.pageToken;
    // Without a token only this machine may read the page, and only by a loopback name: a Host
    // of any other name is a web page in a browser here that rebound its DNS to 127.0.0.1.
    if (token === undefined) return isLoopback(this.#o.host) && isLoopback(hostOf(req.headers.host ?? ''));
    const given =
      url.searchParams.get('token') ?? /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    return safeEqual(given, token);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fleet');
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, {
        'content-type': type,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.end(body);
    };
    const json = (code: number, v: unknown) => send(code, 'application/json', `${JSON.stringify(v)}\n`);
    if (req.method === 'POST') {
      const body = await readBody(req);
      if (body === undefined) return json(413, { error: 'body too large' });
      if (url.pathname === '/hooks/registry') return json(...(await this.#registryHook(req, body)));
      if (url.pathname === '/hooks/git') return json(...(await this.#gitHook(req, body)));
      return json(404, { error: 'not found' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
    if (url.pathname === '/healthz') {
      const queue = await this.#o.state.queueDepth();
      return json(200, { status: 'ok', ...queue });
    }
    if (url.pathname === '/metrics') return send(200, 'text/plain; version=0.0.4', await this.#metrics());
    if (!this.#authorized(req, url)) return json(401, { error: 'token required' });
    const q = this.#o.pageToken ? `?token=${encodeURIComponent(this.#o.pageToken)}` : '';
    const now = Date.now();
    const { state } = this.#o;
    if (url.pathname === '/' || url.pathname === '/api/status') {
      const rows = statusRows(await state.images(), await state.observations(), now);
      if (url.pathname === '/api/status')
        return json(
          200,
          rows.filter((r) => r.managed),
        );
      return send(200, 'text/html; charset=utf-8', fleetPage(rows, await state.queueDepth(), now, q));
    }
    const img = /^\/images\/([^/]+)$/.exec(url.pathname);
    if (img) {
      const name = decodeURIComponent(img[1]!);
      const i = await state.image(name);
      if (i === undefined) return json(404, { error: `no image ${name}` });
      const [row] = statusRows([i], await state.observations(), now);
      const sbom =
        i.digest && this.#o.sbom
          ? await this.#o
              .sbom(i.decl.tag, i.digest)
              .catch((e: unknown) => [`(SBOM unavailable: ${(e as Error).message})`])
          : [];
      return send(200, 'text/html; charset=utf-8', imagePage(row!, await state.history(name), sbom, now, q));
    }
    const build = /^\/builds\/(\d{1,12})$/.exec(url.pathname);
    if (build) {
      const job = await state.job(Number(build[1]));
      if (job === undefined) return json(404, { error: 'no such build' });
      return send(200, 'text/html; charset=utf-8', logPage(job, q));
    }
    return json(404, { error: 'not found' });
  }

  async #registryHook(req: http.IncomingMessage, body: Buffer): Promise<[number, unknown]> {
    const token = this.#o.registryToken;
    if (
      token !== undefined &&
      !safeEqual(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '', token)
    ) {
      this.#hooks.refused++;
      this.#o.log.warn('fleet: registry notification refused: bad or missing token');
      return [401, { error: 'bad token' }];
    }
    let repos: string[];
    try {
      repos = registryPushes(JSON.parse(body.toString('utf8')));
    } catch {
      return [400, { error: 'expected a notification envelope (JSON)' }];
    }
    this.#hooks.registry++;
    // Answered at once (the registry holds its other events until we answer), checked after: the
    // registry sends the event before it moves the tag, so a check that sees no change yet is
    // repeated a few times.
    // Only repositories the fleet watches (its own pushes of app images notify too), one
    // re-check per repository at a time.
    const fleet = await this.#o.state.fleet();
    const watched = fleet === undefined ? [] : watchedRefs(fleet);
    for (const r of repos)
      if (!this.#rechecking.has(r) && watched.some((w) => sameRepository(w, r))) {
        this.#rechecking.add(r);
        void this.#recheck(r, [0, 300, 1000, 3000]).finally(() => this.#rechecking.delete(r));
      }
    return [202, { repositories: repos }];
  }

  async #recheck(repository: string, delays: readonly number[]): Promise<void> {
    for (const ms of delays) {
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      if (this.#timers.length === 0) return; // stopping
      try {
        const c = await this.#react((f) => this.#o.observer.checkImage(f, repository));
        if (c.changed.length > 0 || c.errors.length > 0) return;
      } catch (e) {
        this.#o.log.warn(`fleet: checking ${repository}: ${(e as Error).message}`);
        return;
      }
    }
  }

  async #gitHook(req: http.IncomingMessage, body: Buffer): Promise<[number, unknown]> {
    const secret = this.#o.gitSecret;
    if (secret === undefined) return [403, { error: 'git hooks are off (no --webhook-secret)' }];
    const v = verifyGitHook(req.headers, body, secret);
    if (!v.ok) {
      this.#hooks.refused++;
      this.#o.log.warn(`fleet: git hook refused: ${v.why}`);
      return [401, { error: v.why }];
    }
    let urls: string[];
    try {
      urls = gitHookRepositories(JSON.parse(body.toString('utf8'))).map(normalizeRepoUrl);
    } catch {
      return [400, { error: 'expected a JSON push payload' }];
    }
    this.#hooks.git++;
    const want = new Set(urls);
    const c = await this.#react((f) => this.#o.observer.checkGit(f, (u) => want.has(normalizeRepoUrl(u))));
    return [202, { forge: v.forge, changed: c.changed }];
  }

  async #metrics(): Promise<string> {
    const { state } = this.#o;
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels} ${v}`);
    };
    const esc = (s: string) => s.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
    metric(
      'kiln_fleet_builds_total',
      'counter',
      'Finished fleet jobs by reason and result (history kept in the state).',
      (await state.counts()).map((c) => [`{reason="${esc(c.reason)}",result="${esc(c.state)}"}`, c.n]),
    );
    const q = await state.queueDepth();
    metric('kiln_fleet_queue_depth', 'gauge', 'Jobs waiting or running.', [
      ['{state="queued"}', q.queued],
      ['{state="running"}', q.running],
    ]);
    const images = await state.images();
    metric('kiln_fleet_images', 'gauge', 'Managed images.', [['', images.filter((i) => i.managed).length]]);
    if (this.#rollout !== undefined)
      metric(
        'kiln_fleet_stack_rollout_seconds',
        'gauge',
        'From the newest run-image change seen to the last image patched on it.',
        [['', this.#rollout]],
      );
    metric('kiln_fleet_hooks_total', 'counter', 'Hook requests by kind.', [
      ['{kind="registry"}', this.#hooks.registry],
      ['{kind="git"}', this.#hooks.git],
      ['{kind="refused"}', this.#hooks.refused],
    ]);
    const obs = await state.observations();
    metric('kiln_fleet_watch_errors', 'gauge', 'Watched things whose last check failed.', [
      ['', [...obs.values()].filter((o) => o.error !== undefined).length],
    ]);
    const cpu = process.cpuUsage();
    metric('process_cpu_seconds_total', 'counter', 'CPU time of this process.', [
      ['', (cpu.user + cpu.system) / 1e6],
    ]);
    metric('process_resident_memory_bytes', 'gauge', 'Resident memory of this process.', [
      ['', process.memoryUsage.rss()],
    ]);
    return `${lines.join('\n')}\n`;
  }
}

/** hostOf is the name of a Host header (`127.0.0.1:8088` → `127.0.0.1`, `[::1]:80` → `::1`). */
function hostOf(h: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
  return v6 ? v6[1]! : h.replace(/:\d+$/, '');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** isLoopback: the page needs no token only when nothing but this machine can reach it. */
export function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || /^127\./.test(host);
}

function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
