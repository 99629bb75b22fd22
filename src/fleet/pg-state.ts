import pg from 'pg';
import { KilnError } from '../internal/errors.ts';
import type { Fleet, ImageDeclaration } from './declarations.ts';
import { imageStateOf, jobOf, observationOf } from './sqlite-state.ts';
import {
  type Applied,
  type FleetState,
  type ImageState,
  type Job,
  MAX_ATTEMPTS,
  MAX_LOG,
  type NewJob,
  type Observation,
  type Outcome,
  tailOf,
} from './state.ts';

// The scale-out state: the same tables as the embedded one, in PostgreSQL. Any number of workers
// on any number of machines take jobs with `FOR UPDATE SKIP LOCKED` and hold them by a lease in
// the database's own clock (so machines' clocks need not agree); a job whose lease runs out is
// taken over. One `serve` schedules at a time: it holds a session advisory lock, which
// PostgreSQL frees when its connection dies, so another serve takes over.

const SCHEMA = `
CREATE TABLE IF NOT EXISTS fleet_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_images (
  name TEXT PRIMARY KEY, decl TEXT NOT NULL, managed INTEGER NOT NULL,
  inputs TEXT, digest TEXT, updated BIGINT);
CREATE TABLE IF NOT EXISTS fleet_observations (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, since BIGINT NOT NULL, checked BIGINT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS fleet_jobs (
  id BIGSERIAL PRIMARY KEY, image TEXT NOT NULL, kind TEXT NOT NULL, reasons TEXT NOT NULL,
  inputs TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  not_before BIGINT NOT NULL DEFAULT 0, worker TEXT, lease_until BIGINT, created BIGINT NOT NULL,
  started BIGINT, finished BIGINT, observed BIGINT, digest TEXT, error TEXT, log TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS fleet_jobs_key ON fleet_jobs (key);
CREATE INDEX IF NOT EXISTS fleet_jobs_state ON fleet_jobs (state, not_before);
CREATE INDEX IF NOT EXISTS fleet_jobs_image ON fleet_jobs (image, id);
`;

/** The database's clock in ms: leases and timestamps agree whichever machine writes them. */
const NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
/** The advisory lock the scheduling serve holds (any constant unique to kiln's fleet). */
const SCHEDULER_LOCK = 0x6b696c6e; // "kiln"

type Row = Record<string, string | number | null>;

const BUMP =
  "INSERT INTO fleet_meta (k, v) VALUES ('generation', '1') ON CONFLICT (k) DO UPDATE SET v = (fleet_meta.v::bigint + 1)::text";

export class PgState implements FleetState {
  readonly #pool: pg.Pool;
  #lockClient: pg.PoolClient | undefined;

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** connect opens a pool on `url` (postgres://…) and creates the tables when missing. */
  static async connect(url: string): Promise<PgState> {
    const pool = new pg.Pool({ connectionString: url, max: 4, idleTimeoutMillis: 30_000 });
    // An idle client's error (the server went away) must not end the process.
    pool.on('error', () => {});
    try {
      const c = await pool.connect();
      try {
        // Two processes creating the tables at once would race on the catalog.
        await c.query('SELECT pg_advisory_lock($1)', [SCHEDULER_LOCK + 1]);
        await c.query(SCHEMA);
        await c.query('SELECT pg_advisory_unlock($1)', [SCHEDULER_LOCK + 1]);
      } finally {
        c.release();
      }
    } catch (e) {
      await pool.end().catch(() => {});
      throw new KilnError(`fleet database: ${(e as Error).message}`, { cause: e });
    }
    return new PgState(pool);
  }

  async #q(sql: string, args: unknown[] = []): Promise<Row[]> {
    return (await this.#pool.query(sql, args)).rows as Row[];
  }

  async #tx<T>(f: (q: (sql: string, args?: unknown[]) => Promise<Row[]>) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const out = await f(async (sql, args = []) => (await c.query(sql, args)).rows as Row[]);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
  }

  /** isScheduler takes (or keeps) the scheduler's advisory lock; true while this process holds it. */
  async isScheduler(): Promise<boolean> {
    try {
      if (this.#lockClient) {
        await this.#lockClient.query('SELECT 1');
        return true;
      }
      const c = await this.#pool.connect();
      const got =
        (await c.query('SELECT pg_try_advisory_lock($1) AS ok', [SCHEDULER_LOCK])).rows[0]?.ok === true;
      if (!got) {
        c.release();
        return false;
      }
      this.#lockClient = c;
      return true;
    } catch {
      // The lock's connection broke: PostgreSQL freed the lock; try again next time.
      this.#lockClient?.release(true);
      this.#lockClient = undefined;
      return false;
    }
  }

  async generation(): Promise<string> {
    const [r] = await this.#q("SELECT v FROM fleet_meta WHERE k = 'generation'");
    return String(r?.v ?? '0');
  }

  async apply(fleet: Fleet): Promise<Applied> {
    return this.#tx(async (q) => {
      await q(BUMP);
      await q('LOCK TABLE fleet_images IN EXCLUSIVE MODE');
      const before = new Map(
        (await q('SELECT name, decl, managed FROM fleet_images')).map((r) => [String(r.name), r]),
      );
      const added: string[] = [];
      const changed: string[] = [];
      for (const d of fleet.images) {
        const old = before.get(d.name);
        const json = JSON.stringify(d);
        if (old === undefined) {
          added.push(d.name);
          await q('INSERT INTO fleet_images (name, decl, managed) VALUES ($1, $2, 1)', [d.name, json]);
        } else {
          if (Number(old.managed) !== 1 || (JSON.parse(String(old.decl)) as ImageDeclaration).hash !== d.hash)
            changed.push(d.name);
          await q('UPDATE fleet_images SET decl = $1, managed = 1 WHERE name = $2', [json, d.name]);
        }
      }
      const keep = new Set(fleet.images.map((d) => d.name));
      const removed = [...before.entries()]
        .filter(([n, r]) => Number(r.managed) === 1 && !keep.has(n))
        .map(([n]) => n);
      for (const n of removed) {
        await q('UPDATE fleet_images SET managed = 0 WHERE name = $1', [n]);
        await q(
          `UPDATE fleet_jobs SET state = 'superseded', finished = ${NOW} WHERE image = $1 AND state = 'queued'`,
          [n],
        );
      }
      const { images: _i, ...settings } = fleet;
      await q('INSERT INTO fleet_meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v', [
        'fleet',
        JSON.stringify(settings),
      ]);
      return { added, changed, removed };
    });
  }

  async fleet(): Promise<Fleet | undefined> {
    const [row] = await this.#q("SELECT v FROM fleet_meta WHERE k = 'fleet'");
    if (row === undefined) return undefined;
    const images = (await this.#q('SELECT decl FROM fleet_images WHERE managed = 1 ORDER BY name')).map(
      (r) => JSON.parse(String(r.decl)) as ImageDeclaration,
    );
    return { ...(JSON.parse(String(row.v)) as Omit<Fleet, 'images'>), images };
  }

  async images(): Promise<ImageState[]> {
    const rows = await this.#q('SELECT * FROM fleet_images ORDER BY name');
    const last = await this.#q(
      `SELECT DISTINCT ON (image) image, id, reasons, kind, state, finished, error FROM fleet_jobs
        WHERE state IN ('succeeded', 'failed') OR (state = 'queued' AND error IS NOT NULL) ORDER BY image, id DESC`,
    );
    const byImage = new Map(last.map((r) => [String(r.image), r]));
    return rows.map((r) => imageStateOf(r, byImage.get(String(r.name))));
  }

  async image(name: string): Promise<ImageState | undefined> {
    return (await this.images()).find((i) => i.name === name);
  }

  async observations(): Promise<Map<string, Observation>> {
    return new Map(
      (await this.#q('SELECT * FROM fleet_observations')).map((r) => [String(r.key), observationOf(r)]),
    );
  }

  async observe(key: string, value: string | undefined, error?: string): Promise<boolean> {
    if (value === undefined) {
      await this.#q(
        `INSERT INTO fleet_observations (key, value, since, checked, error) VALUES ($1, '', 0, ${NOW}, $2)
         ON CONFLICT (key) DO UPDATE SET checked = excluded.checked, error = excluded.error`,
        [key, error ?? 'unknown'],
      );
      return false;
    }
    const rows = await this.#q(
      `WITH old AS (SELECT value FROM fleet_observations WHERE key = $1)
       INSERT INTO fleet_observations AS o (key, value, since, checked) VALUES ($1, $2, ${NOW}, ${NOW})
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, checked = excluded.checked, error = NULL,
         since = CASE WHEN o.value = excluded.value THEN o.since ELSE excluded.since END
       RETURNING (SELECT value FROM old) AS old`,
      [key, value],
    );
    const changed = rows[0]?.old !== value;
    if (changed) await this.#q(BUMP);
    return changed;
  }

  async enqueue(job: NewJob): Promise<boolean> {
    return this.#tx(async (q) => {
      // One enqueue per key at a time, across machines.
      await q('SELECT pg_advisory_xact_lock(hashtext($1))', [job.key]);
      const same = await q(
        "SELECT id FROM fleet_jobs WHERE key = $1 AND state IN ('queued', 'running', 'succeeded', 'failed') LIMIT 1",
        [job.key],
      );
      if (same.length > 0) return false;
      await q(
        `UPDATE fleet_jobs SET state = 'superseded', finished = ${NOW} WHERE image = $1 AND state = 'queued'`,
        [job.image],
      );
      await q(
        `INSERT INTO fleet_jobs (image, kind, reasons, inputs, key, state, created, observed)
         VALUES ($1, $2, $3, $4, $5, 'queued', ${NOW}, $6)`,
        [
          job.image,
          job.kind,
          JSON.stringify(job.reasons),
          JSON.stringify(job.inputs),
          job.key,
          job.observed ?? null,
        ],
      );
      return true;
    });
  }

  async claim(worker: string, leaseMs: number): Promise<Job | undefined> {
    const rows = await this.#q(
      `UPDATE fleet_jobs SET state = 'running', worker = $1, lease_until = ${NOW} + $2, started = ${NOW}, attempts = attempts + 1
        WHERE id = (
          SELECT j.id FROM fleet_jobs j
           WHERE ((j.state = 'queued' AND j.not_before <= ${NOW}) OR (j.state = 'running' AND j.lease_until < ${NOW}))
             AND NOT EXISTS (SELECT 1 FROM fleet_jobs r WHERE r.image = j.image AND r.state = 'running'
                               AND r.lease_until >= ${NOW} AND r.id <> j.id)
           ORDER BY j.id FOR UPDATE SKIP LOCKED LIMIT 1)
        RETURNING *`,
      [worker, leaseMs],
    );
    return rows[0] === undefined ? undefined : jobOf(rows[0]);
  }

  async renew(id: number, worker: string, leaseMs: number): Promise<boolean> {
    const rows = await this.#q(
      `UPDATE fleet_jobs SET lease_until = ${NOW} + $3 WHERE id = $1 AND worker = $2 AND state = 'running' RETURNING id`,
      [id, worker, leaseMs],
    );
    return rows.length === 1;
  }

  async finish(id: number, worker: string, outcome: Outcome, log: string): Promise<void> {
    await this.#tx(async (q) => {
      const [r] = await q(
        "SELECT * FROM fleet_jobs WHERE id = $1 AND worker = $2 AND state = 'running' FOR UPDATE",
        [id, worker],
      );
      if (r === undefined) return; // taken over: the other worker's result counts
      await q(BUMP);
      const logText = tailOf(String(r.log) + log);
      if (outcome.ok) {
        await q(
          `UPDATE fleet_jobs SET state = 'succeeded', finished = ${NOW}, digest = $2, kind = $3, inputs = $4, log = $5, error = NULL WHERE id = $1`,
          [id, outcome.digest, outcome.kind, JSON.stringify(outcome.inputs), logText],
        );
        await q(`UPDATE fleet_images SET inputs = $1, digest = $2, updated = ${NOW} WHERE name = $3`, [
          JSON.stringify(outcome.inputs),
          outcome.digest,
          String(r.image),
        ]);
      } else if (outcome.retryAt !== undefined && Number(r.attempts) < MAX_ATTEMPTS) {
        // The backoff is relative: the worker's clock says how long, the database's when.
        const wait = Math.max(0, outcome.retryAt - Date.now());
        await q(
          `UPDATE fleet_jobs SET state = 'queued', not_before = ${NOW} + $2, worker = NULL, lease_until = NULL, error = $3, log = $4 WHERE id = $1`,
          [id, wait, outcome.error, logText],
        );
      } else {
        await q(
          `UPDATE fleet_jobs SET state = 'failed', finished = ${NOW}, error = $2, log = $3 WHERE id = $1`,
          [id, outcome.error, logText],
        );
      }
      const [d] = await q('SELECT decl FROM fleet_images WHERE name = $1', [String(r.image)]);
      const limit = d === undefined ? 20 : (JSON.parse(String(d.decl)) as ImageDeclaration).historyLimit;
      await q(
        `DELETE FROM fleet_jobs WHERE image = $1 AND state IN ('succeeded', 'failed', 'superseded') AND id NOT IN
           (SELECT id FROM fleet_jobs WHERE image = $1 AND state IN ('succeeded', 'failed', 'superseded') ORDER BY id DESC LIMIT $2)`,
        [String(r.image), limit],
      );
    });
  }

  async release(id: number, worker: string): Promise<void> {
    await this.#q(
      "UPDATE fleet_jobs SET state = 'queued', worker = NULL, lease_until = NULL, attempts = GREATEST(0, attempts - 1) WHERE id = $1 AND worker = $2 AND state = 'running'",
      [id, worker],
    );
  }

  async appendLog(id: number, text: string): Promise<void> {
    await this.#q('UPDATE fleet_jobs SET log = right(log || $2, $3) WHERE id = $1', [id, text, MAX_LOG]);
  }

  async history(image: string, limit = 100): Promise<Job[]> {
    return (
      await this.#q('SELECT * FROM fleet_jobs WHERE image = $1 ORDER BY id DESC LIMIT $2', [image, limit])
    ).map(jobOf);
  }

  async job(id: number): Promise<(Job & { log: string }) | undefined> {
    const [r] = await this.#q('SELECT * FROM fleet_jobs WHERE id = $1', [id]);
    return r === undefined ? undefined : { ...jobOf(r), log: String(r.log) };
  }

  async queueDepth(): Promise<{ queued: number; running: number }> {
    const [r] = await this.#q(
      "SELECT COUNT(*) FILTER (WHERE state = 'queued') AS q, COUNT(*) FILTER (WHERE state = 'running') AS r FROM fleet_jobs WHERE state IN ('queued', 'running')",
    );
    return { queued: Number(r?.q ?? 0), running: Number(r?.r ?? 0) };
  }

  async counts(): Promise<{ reason: string; state: string; n: number }[]> {
    const out = new Map<string, number>();
    for (const r of await this.#q(
      "SELECT reasons, state, COUNT(*) AS n FROM fleet_jobs WHERE state IN ('succeeded', 'failed') GROUP BY reasons, state",
    ))
      for (const reason of JSON.parse(String(r.reasons)) as string[]) {
        const k = `${reason}\t${String(r.state)}`;
        out.set(k, (out.get(k) ?? 0) + Number(r.n));
      }
    return [...out].map(([k, n]) => {
      const [reason, state] = k.split('\t') as [string, string];
      return { reason, state, n };
    });
  }

  async close(): Promise<void> {
    // Hand the scheduler's lock on at once (another serve takes over on its next tick), not when
    // the server notices the connection is gone.
    const c = this.#lockClient;
    this.#lockClient = undefined;
    if (c) {
      await c.query('SELECT pg_advisory_unlock($1)', [SCHEDULER_LOCK]).catch(() => {});
      c.release(true);
    }
    await this.#pool.end();
  }
}
