import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { KilnError } from '../internal/errors.ts';
import type { Fleet, ImageDeclaration } from './declarations.ts';
import {
  type Applied,
  type FleetState,
  type ImageState,
  type Inputs,
  type Job,
  MAX_ATTEMPTS,
  type NewJob,
  type Observation,
  type Outcome,
  type Reason,
  tailOf,
} from './state.ts';

// The embedded state: one SQLite file under kiln's data directory (node:sqlite, no server, no
// native addon). WAL mode lets `kiln fleet status` read while `serve` writes; every method is a
// short transaction (BEGIN IMMEDIATE where it writes) so two processes on one file stay consistent.

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  name TEXT PRIMARY KEY, decl TEXT NOT NULL, managed INTEGER NOT NULL,
  inputs TEXT, digest TEXT, updated INTEGER);
CREATE TABLE IF NOT EXISTS observations (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, since INTEGER NOT NULL, checked INTEGER NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, image TEXT NOT NULL, kind TEXT NOT NULL, reasons TEXT NOT NULL,
  inputs TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  not_before INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until INTEGER, created INTEGER NOT NULL,
  started INTEGER, finished INTEGER, observed INTEGER, digest TEXT, error TEXT, log TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before);
CREATE INDEX IF NOT EXISTS jobs_image ON jobs (image, id);
`;

type Row = Record<string, string | number | null | bigint | Uint8Array | undefined>;

const str = (v: Row[string]): string | undefined => (v === null || v === undefined ? undefined : String(v));
const num = (v: Row[string]): number | undefined => (v === null || v === undefined ? undefined : Number(v));

/** jobOf turns a jobs row into a Job (shared with the PostgreSQL state). */
export function jobOf(r: Row): Job {
  const opt = <K extends string, V>(k: K, v: V | undefined) =>
    v === undefined ? {} : ({ [k]: v } as Record<K, V>);
  return {
    id: Number(r.id),
    image: String(r.image),
    kind: String(r.kind) as Job['kind'],
    reasons: JSON.parse(String(r.reasons)) as Reason[],
    inputs: JSON.parse(String(r.inputs)) as Inputs,
    key: String(r.key),
    state: String(r.state) as Job['state'],
    attempts: Number(r.attempts),
    created: Number(r.created),
    ...opt('started', num(r.started)),
    ...opt('finished', num(r.finished)),
    ...opt('observed', num(r.observed)),
    ...opt('digest', str(r.digest)),
    ...opt('error', str(r.error)),
    ...opt('worker', str(r.worker)),
  };
}

export class SqliteState implements FleetState {
  readonly #db: DatabaseSync;
  readonly #now: () => number;

  private constructor(db: DatabaseSync, now: () => number) {
    this.#db = db;
    this.#now = now;
  }

  /** open opens (creating) the state file `file`; `now` is the clock (tests). */
  static open(file: string, now: () => number = Date.now): SqliteState {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(file);
      db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;');
      db.exec(SCHEMA);
    } catch (e) {
      throw new KilnError(`fleet state ${file}: ${(e as Error).message}`, { cause: e });
    }
    return new SqliteState(db, now);
  }

  #tx<T>(f: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const out = f();
      this.#db.exec('COMMIT');
      return out;
    } catch (e) {
      this.#db.exec('ROLLBACK');
      throw e;
    }
  }

  #all(sql: string, ...args: (string | number | null)[]): Row[] {
    return this.#db.prepare(sql).all(...args) as Row[];
  }

  #get(sql: string, ...args: (string | number | null)[]): Row | undefined {
    return this.#db.prepare(sql).get(...args) as Row | undefined;
  }

  #run(sql: string, ...args: (string | number | null)[]): number {
    return Number(this.#db.prepare(sql).run(...args).changes);
  }

  #bump(): void {
    this.#run(
      "INSERT INTO meta (k, v) VALUES ('generation', '1') ON CONFLICT (k) DO UPDATE SET v = CAST(v AS INTEGER) + 1",
    );
  }

  async generation(): Promise<string> {
    return String(this.#get("SELECT v FROM meta WHERE k = 'generation'")?.v ?? '0');
  }

  async apply(fleet: Fleet): Promise<Applied> {
    return this.#tx(() => {
      this.#bump();
      const before = new Map(
        this.#all('SELECT name, decl, managed FROM images').map((r) => [String(r.name), r]),
      );
      const added: string[] = [];
      const changed: string[] = [];
      for (const d of fleet.images) {
        const old = before.get(d.name);
        const json = JSON.stringify(d);
        if (old === undefined) {
          added.push(d.name);
          this.#run('INSERT INTO images (name, decl, managed) VALUES (?, ?, 1)', d.name, json);
        } else {
          if (Number(old.managed) !== 1 || (JSON.parse(String(old.decl)) as ImageDeclaration).hash !== d.hash)
            changed.push(d.name);
          this.#run('UPDATE images SET decl = ?, managed = 1 WHERE name = ?', json, d.name);
        }
      }
      const keep = new Set(fleet.images.map((d) => d.name));
      const removed = [...before.entries()]
        .filter(([n, r]) => Number(r.managed) === 1 && !keep.has(n))
        .map(([n]) => n);
      for (const n of removed) {
        this.#run('UPDATE images SET managed = 0 WHERE name = ?', n);
        // Queued work of an image no longer managed is dropped; a running job finishes.
        this.#run(
          "UPDATE jobs SET state = 'superseded', finished = ? WHERE image = ? AND state = 'queued'",
          this.#now(),
          n,
        );
      }
      const { images: _i, ...settings } = fleet;
      this.#run(
        'INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v',
        'fleet',
        JSON.stringify(settings),
      );
      return { added, changed, removed };
    });
  }

  async fleet(): Promise<Fleet | undefined> {
    const row = this.#get("SELECT v FROM meta WHERE k = 'fleet'");
    if (row === undefined) return undefined;
    const settings = JSON.parse(String(row.v)) as Omit<Fleet, 'images'>;
    const images = this.#all('SELECT decl FROM images WHERE managed = 1 ORDER BY name').map(
      (r) => JSON.parse(String(r.decl)) as ImageDeclaration,
    );
    return { ...settings, images };
  }

  async images(): Promise<ImageState[]> {
    return this.#all('SELECT * FROM images ORDER BY name').map((r) => this.#imageOf(r));
  }

  async image(name: string): Promise<ImageState | undefined> {
    const r = this.#get('SELECT * FROM images WHERE name = ?', name);
    return r === undefined ? undefined : this.#imageOf(r);
  }

  #imageOf(r: Row): ImageState {
    const last = this.#get(
      // The newest job with a result: finished, or waiting for a retry after a failure.
      "SELECT id, reasons, kind, state, finished, error FROM jobs WHERE image = ? AND (state IN ('succeeded', 'failed') OR (state = 'queued' AND error IS NOT NULL)) ORDER BY id DESC LIMIT 1",
      String(r.name),
    );
    return imageStateOf(r, last);
  }

  async observations(): Promise<Map<string, Observation>> {
    return new Map(this.#all('SELECT * FROM observations').map((r) => [String(r.key), observationOf(r)]));
  }

  async observe(key: string, value: string | undefined, error?: string): Promise<boolean> {
    const now = this.#now();
    return this.#tx(() => {
      const old = this.#get('SELECT value FROM observations WHERE key = ?', key);
      if (value === undefined) {
        // A failed check keeps the last value seen; a thing never seen is recorded as unknown ('').
        if (old !== undefined)
          this.#run('UPDATE observations SET checked = ?, error = ? WHERE key = ?', now, error ?? null, key);
        else
          this.#run(
            "INSERT INTO observations (key, value, since, checked, error) VALUES (?, '', 0, ?, ?)",
            key,
            now,
            error ?? 'unknown',
          );
        return false;
      }
      if (old !== undefined && String(old.value) === value) {
        this.#run('UPDATE observations SET checked = ?, error = NULL WHERE key = ?', now, key);
        return false;
      }
      this.#run(
        'INSERT INTO observations (key, value, since, checked) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, since = excluded.since, checked = excluded.checked, error = NULL',
        key,
        value,
        now,
        now,
      );
      this.#bump();
      return true;
    });
  }

  async enqueue(job: NewJob): Promise<boolean> {
    const now = this.#now();
    return this.#tx(() => {
      const same = this.#get(
        "SELECT id FROM jobs WHERE key = ? AND state IN ('queued', 'running', 'succeeded', 'failed') LIMIT 1",
        job.key,
      );
      if (same !== undefined) return false;
      this.#run(
        "UPDATE jobs SET state = 'superseded', finished = ? WHERE image = ? AND state = 'queued'",
        now,
        job.image,
      );
      this.#run(
        "INSERT INTO jobs (image, kind, reasons, inputs, key, state, created, observed) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
        job.image,
        job.kind,
        JSON.stringify(job.reasons),
        JSON.stringify(job.inputs),
        job.key,
        now,
        job.observed ?? null,
      );
      return true;
    });
  }

  async claim(worker: string, leaseMs: number): Promise<Job | undefined> {
    const now = this.#now();
    return this.#tx(() => {
      const r = this.#get(
        `SELECT * FROM jobs j WHERE ((j.state = 'queued' AND j.not_before <= ?) OR (j.state = 'running' AND j.lease_until < ?))
           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.image = j.image AND r.state = 'running' AND r.lease_until >= ? AND r.id <> j.id)
         ORDER BY j.id LIMIT 1`,
        now,
        now,
        now,
      );
      if (r === undefined) return undefined;
      this.#run(
        "UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, started = ?, attempts = attempts + 1 WHERE id = ?",
        worker,
        now + leaseMs,
        now,
        Number(r.id),
      );
      return jobOf({ ...r, state: 'running', worker, started: now, attempts: Number(r.attempts) + 1 });
    });
  }

  async renew(id: number, worker: string, leaseMs: number): Promise<boolean> {
    return (
      this.#run(
        "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND state = 'running'",
        this.#now() + leaseMs,
        id,
        worker,
      ) === 1
    );
  }

  async finish(id: number, worker: string, outcome: Outcome, log: string): Promise<void> {
    const now = this.#now();
    this.#tx(() => {
      const r = this.#get("SELECT * FROM jobs WHERE id = ? AND worker = ? AND state = 'running'", id, worker);
      if (r === undefined) return; // taken over by another worker: its result counts
      this.#bump();
      const logText = tailOf(String(r.log) + log);
      if (outcome.ok) {
        this.#run(
          "UPDATE jobs SET state = 'succeeded', finished = ?, digest = ?, kind = ?, inputs = ?, log = ?, error = NULL WHERE id = ?",
          now,
          outcome.digest,
          outcome.kind,
          JSON.stringify(outcome.inputs),
          logText,
          id,
        );
        this.#run(
          'UPDATE images SET inputs = ?, digest = ?, updated = ? WHERE name = ?',
          JSON.stringify(outcome.inputs),
          outcome.digest,
          now,
          String(r.image),
        );
      } else if (outcome.retryAt !== undefined && Number(r.attempts) < MAX_ATTEMPTS) {
        this.#run(
          "UPDATE jobs SET state = 'queued', not_before = ?, worker = NULL, lease_until = NULL, error = ?, log = ? WHERE id = ?",
          outcome.retryAt,
          outcome.error,
          logText,
          id,
        );
      } else {
        this.#run(
          "UPDATE jobs SET state = 'failed', finished = ?, error = ?, log = ? WHERE id = ?",
          now,
          outcome.error,
          logText,
          id,
        );
      }
      this.#trim(String(r.image));
    });
  }

  // History beyond the image's limit is dropped, oldest first.
  #trim(image: string): void {
    const d = this.#get('SELECT decl FROM images WHERE name = ?', image);
    const limit = d === undefined ? 20 : (JSON.parse(String(d.decl)) as ImageDeclaration).historyLimit;
    this.#run(
      `DELETE FROM jobs WHERE image = ? AND state IN ('succeeded', 'failed', 'superseded') AND id NOT IN
         (SELECT id FROM jobs WHERE image = ? AND state IN ('succeeded', 'failed', 'superseded') ORDER BY id DESC LIMIT ?)`,
      image,
      image,
      limit,
    );
  }

  async release(id: number, worker: string): Promise<void> {
    this.#run(
      "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, attempts = MAX(0, attempts - 1) WHERE id = ? AND worker = ? AND state = 'running'",
      id,
      worker,
    );
  }

  async appendLog(id: number, text: string): Promise<void> {
    this.#run('UPDATE jobs SET log = substr(log || ?, -?) WHERE id = ?', text, 256 * 1024, id);
  }

  async history(image: string, limit = 100): Promise<Job[]> {
    return this.#all('SELECT * FROM jobs WHERE image = ? ORDER BY id DESC LIMIT ?', image, limit).map(jobOf);
  }

  async job(id: number): Promise<(Job & { log: string }) | undefined> {
    const r = this.#get('SELECT * FROM jobs WHERE id = ?', id);
    return r === undefined ? undefined : { ...jobOf(r), log: String(r.log) };
  }

  async queueDepth(): Promise<{ queued: number; running: number }> {
    const r = this.#get(
      "SELECT SUM(state = 'queued') AS q, SUM(state = 'running') AS r FROM jobs WHERE state IN ('queued', 'running')",
    );
    return { queued: Number(r?.q ?? 0), running: Number(r?.r ?? 0) };
  }

  async counts(): Promise<{ reason: string; state: string; n: number }[]> {
    const out = new Map<string, number>();
    for (const r of this.#all(
      "SELECT reasons, state, COUNT(*) AS n FROM jobs WHERE state IN ('succeeded', 'failed') GROUP BY reasons, state",
    )) {
      for (const reason of JSON.parse(String(r.reasons)) as string[]) {
        const k = `${reason}\t${String(r.state)}`;
        out.set(k, (out.get(k) ?? 0) + Number(r.n));
      }
    }
    return [...out].map(([k, n]) => {
      const [reason, state] = k.split('\t') as [string, string];
      return { reason, state, n };
    });
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

/** imageStateOf turns an images row (and its last finished job) into an ImageState. */
export function imageStateOf(r: Row, last: Row | undefined): ImageState {
  return {
    name: String(r.name),
    decl: JSON.parse(String(r.decl)) as ImageDeclaration,
    managed: Number(r.managed) === 1 || r.managed === (true as unknown),
    ...(r.inputs ? { inputs: JSON.parse(String(r.inputs)) as Inputs } : {}),
    ...(r.digest ? { digest: String(r.digest) } : {}),
    ...(r.updated !== null && r.updated !== undefined ? { updated: Number(r.updated) } : {}),
    ...(last
      ? {
          last: {
            id: Number(last.id),
            reasons: JSON.parse(String(last.reasons)) as Reason[],
            kind: String(last.kind) as Job['kind'],
            state: String(last.state) as Job['state'],
            ...(last.finished !== null ? { finished: Number(last.finished) } : {}),
            ...(last.error !== null ? { error: String(last.error) } : {}),
          },
        }
      : {}),
  };
}

export function observationOf(r: Row): Observation {
  return {
    key: String(r.key),
    value: String(r.value),
    since: Number(r.since),
    checked: Number(r.checked),
    ...(r.error !== null && r.error !== undefined ? { error: String(r.error) } : {}),
  };
}
