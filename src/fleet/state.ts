import type { Fleet, ImageDeclaration } from './declarations.ts';

// The fleet's state and work queue as one interface, so the scheduler, the workers and the web
// page never ask where it lives: an embedded SQLite file (sqlite-state.ts, the default) or
// PostgreSQL (pg-state.ts, to scale out). Every method is one transaction.

/** Why an image is (re)built, as kpack names them. */
export type Reason = 'CONFIG' | 'COMMIT' | 'BUILDPACK' | 'BUILDER' | 'STACK' | 'TRIGGER';

/** What an image was (or is to be) made from: equal inputs give the same image. */
export interface Inputs {
  readonly declHash: string;
  /** Digest of the watched run image (absent when not watched). */
  readonly runImage?: string;
  /** Digest of the builder (absent when not watched: kiln's default builder). */
  readonly builder?: string;
  /** Commit of the source's ref (absent for a directory source). */
  readonly commit?: string;
  /** Buildpacks of the builder, `id@version`, sorted (BUILDPACK vs BUILDER). */
  readonly buildpacks?: readonly string[];
  /** A `kiln fleet rebuild` request (TRIGGER): a new value asks for a new build. */
  readonly trigger?: string;
}

export type JobKind = 'build' | 'rebase';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'superseded';

/** One unit of work and, once finished, one history entry. */
export interface Job {
  readonly id: number;
  readonly image: string;
  readonly kind: JobKind;
  readonly reasons: readonly Reason[];
  readonly inputs: Inputs;
  /** sha256 of image, kind and inputs: a job is queued and published at most once per key. */
  readonly key: string;
  readonly state: JobState;
  readonly attempts: number;
  /** When the job was queued; ms since the epoch. */
  readonly created: number;
  readonly started?: number;
  readonly finished?: number;
  /** When the change that caused it was first seen (the run-image push for STACK). */
  readonly observed?: number;
  readonly digest?: string;
  /** For a rebase: the run image digest written under the app. */
  readonly error?: string;
  readonly worker?: string;
}

/** A managed (or formerly managed) image and what it currently is. */
export interface ImageState {
  readonly name: string;
  readonly decl: ImageDeclaration;
  readonly managed: boolean;
  /** The inputs and digest of the last successful job. */
  readonly inputs?: Inputs;
  readonly digest?: string;
  /** When the image was last built or rebased successfully. */
  readonly updated?: number;
  /** The last finished job (for status). */
  readonly last?: Pick<Job, 'id' | 'reasons' | 'kind' | 'state' | 'finished' | 'error'>;
}

/** The newest observed value of one watched thing (run image, builder, git ref). */
export interface Observation {
  readonly key: string;
  readonly value: string;
  /** When this value was first seen. */
  readonly since: number;
  /** The last check (ok or not). */
  readonly checked: number;
  readonly error?: string;
}

/** What apply changed. */
export interface Applied {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
}

export interface NewJob {
  readonly image: string;
  readonly kind: JobKind;
  readonly reasons: readonly Reason[];
  readonly inputs: Inputs;
  readonly key: string;
  readonly observed?: number;
}

/** What a worker reports when a job ends. */
export type Outcome =
  | { readonly ok: true; readonly digest: string; readonly kind: JobKind; readonly inputs: Inputs }
  | { readonly ok: false; readonly error: string; readonly retryAt?: number };

export interface FleetState {
  /**
   * A value that changes whenever something the scheduler decides on changes (an apply, a new
   * observation, a finished job), from any process: an idle scheduler reads only this.
   */
  generation(): Promise<string>;
  /** Records the declarations; images no longer declared stop being managed (history stays). */
  apply(fleet: Fleet): Promise<Applied>;
  /** The applied fleet (undefined before the first apply). */
  fleet(): Promise<Fleet | undefined>;
  images(): Promise<ImageState[]>;
  image(name: string): Promise<ImageState | undefined>;
  observations(): Promise<Map<string, Observation>>;
  /** Records a check; returns true when the value changed. */
  observe(key: string, value: string | undefined, error?: string): Promise<boolean>;
  /**
   * Queues a job unless one with the same key exists (queued, running, succeeded, or failed for
   * good); queued jobs of the same image with another key are superseded. True when queued.
   */
  enqueue(job: NewJob): Promise<boolean>;
  /** Takes the oldest due job whose image has no running job, leased to `worker` for `leaseMs`. */
  claim(worker: string, leaseMs: number): Promise<Job | undefined>;
  /** Extends a lease; false when the job is no longer this worker's (taken over). */
  renew(id: number, worker: string, leaseMs: number): Promise<boolean>;
  /** Ends a job: success updates the image; failure with retryAt re-queues it. */
  finish(id: number, worker: string, outcome: Outcome, log: string): Promise<void>;
  /** Hands a running job back to the queue (graceful shutdown). */
  release(id: number, worker: string): Promise<void>;
  /** Appends to a running job's log. */
  appendLog(id: number, text: string): Promise<void>;
  history(image: string, limit?: number): Promise<Job[]>;
  job(id: number): Promise<(Job & { log: string }) | undefined>;
  /** Jobs queued or running. */
  queueDepth(): Promise<{ queued: number; running: number }>;
  /** Counts of finished jobs by reason and result (metrics). */
  counts(): Promise<{ reason: string; state: string; n: number }[]>;
  close(): Promise<void>;
}

/** MAX_LOG is how much of a job's log is kept (the tail). */
export const MAX_LOG = 256 * 1024;

export function tailOf(log: string): string {
  return log.length <= MAX_LOG ? log : `[… ${log.length - MAX_LOG} bytes cut]\n${log.slice(-MAX_LOG)}`;
}

/** Jobs that failed this many times stay failed until their inputs change. */
export const MAX_ATTEMPTS = 4;

/** backoffMs is the wait before attempt `attempts + 1`: 5 s, 20 s, 80 s… capped at 10 min. */
export function backoffMs(attempts: number, baseMs = 5000): number {
  return Math.min(baseMs * 4 ** Math.max(0, attempts - 1), 600_000);
}
