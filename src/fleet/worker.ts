import type { Logger } from '../internal/log.ts';
import type { JobRunner } from './runner.ts';
import { backoffMs, type FleetState, type Job } from './state.ts';

// A worker takes jobs from the state's queue and does them, holding a lease it renews while the
// job runs: when a worker dies (SIGKILL, a lost machine) its lease runs out and another worker
// takes the job over. The job's log is written to the state as it grows, so `kiln fleet logs`
// shows a running build. Failures are retried with backoff; results are recorded once.

export interface WorkerOptions {
  readonly state: FleetState;
  readonly runner: JobRunner;
  /** This worker's name (host:pid:n): the lease owner. */
  readonly id: string;
  readonly log: Logger;
  readonly concurrency?: number;
  readonly leaseMs?: number;
  /** How often an idle worker looks for work (a `wake()` looks at once). */
  readonly pollMs?: number;
  readonly retryBaseMs?: number;
  /** Called after each job ends (metrics). */
  readonly onFinished?: (job: Job, ok: boolean, ms: number) => void;
}

export class Worker {
  readonly #o: WorkerOptions;
  #stopping = false;
  readonly #waiting = new Set<() => void>();
  readonly #slots: Promise<void>[] = [];
  readonly #running = new Map<number, Job>();

  constructor(o: WorkerOptions) {
    this.#o = o;
  }

  get running(): number {
    return this.#running.size;
  }

  start(): void {
    for (let i = 0; i < (this.#o.concurrency ?? 1); i++)
      this.#slots.push(this.#loop(`${this.#o.id}:${i}`, i));
  }

  /** wake makes idle slots look for work now (the scheduler queued some). */
  wake(): void {
    const all = [...this.#waiting];
    this.#waiting.clear();
    for (const w of all) w();
  }

  /**
   * stop takes no new work and waits up to `graceMs` for running jobs; what still runs then is
   * handed back to the queue (its lease released) for another worker.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.#stopping = true;
    this.wake();
    const all = Promise.all(this.#slots);
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
    ]);
    if (timedOut)
      for (const [id, job] of this.#running) {
        this.#o.log.warn(`fleet: handing job ${id} (${job.image}) back to the queue`);
        await this.#o.state.release(id, job.worker ?? '');
      }
  }

  // An idle worker asks the queue once per pollMs (slot 0 only: the others sleep until a slot that
  // found work wakes them, so an idle worker costs one small query per interval, not one per slot).
  async #loop(owner: string, slot: number): Promise<void> {
    while (!this.#stopping) {
      let job: Job | undefined;
      try {
        job = await this.#o.state.claim(owner, this.#o.leaseMs ?? 60_000);
      } catch (e) {
        this.#o.log.error(`fleet: taking work: ${(e as Error).message}`);
      }
      if (job !== undefined) this.wake(); // there may be more: let the idle slots look too
      if (job === undefined) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            this.#waiting.delete(done);
            resolve();
          };
          const t = setTimeout(done, slot === 0 ? (this.#o.pollMs ?? 1000) : 30_000);
          this.#waiting.add(done);
        });
        continue;
      }
      await this.#do(job, owner);
    }
  }

  async #do(job: Job, owner: string): Promise<void> {
    const { state, log } = this.#o;
    const leaseMs = this.#o.leaseMs ?? 60_000;
    this.#running.set(job.id, job);
    const started = performance.now();
    let pending = '';
    const line = (l: string) => {
      pending += `${new Date().toISOString()} ${l}\n`;
    };
    const flush = async () => {
      if (pending === '') return;
      const text = pending;
      pending = '';
      await state.appendLog(job.id, text).catch(() => {});
    };
    let lost = false;
    const timer = setInterval(
      () => {
        void flush();
        void state.renew(job.id, owner, leaseMs).then(
          (ok) => {
            if (!ok && !lost) {
              lost = true;
              log.warn(`fleet: lease on job ${job.id} lost; its result will not be recorded by this worker`);
            }
          },
          () => {},
        );
      },
      Math.max(200, Math.floor(leaseMs / 3)),
    );
    log.info(
      `fleet: job ${job.id}: ${job.kind} ${job.image} (${job.reasons.join(',')}), attempt ${job.attempts}`,
    );
    let ok = false;
    try {
      const img = await state.image(job.image);
      if (img === undefined) throw new Error(`image ${job.image} is not declared`);
      const r = await this.#o.runner.run(job, img.decl, line);
      ok = true;
      clearInterval(timer);
      await flush();
      await state.finish(job.id, owner, { ok: true, digest: r.digest, kind: r.kind, inputs: job.inputs }, '');
      log.info(`fleet: job ${job.id}: ${r.kind} of ${job.image} published ${r.digest}`);
    } catch (e) {
      clearInterval(timer);
      const msg = (e as Error).message;
      line(`ERROR: ${msg}`);
      await flush();
      const retryAt = Date.now() + backoffMs(job.attempts, this.#o.retryBaseMs);
      log.error(`fleet: job ${job.id}: ${job.kind} of ${job.image} failed: ${msg}`);
      await state.finish(job.id, owner, { ok: false, error: msg, retryAt }, '').catch((err: unknown) => {
        log.error(`fleet: recording job ${job.id}: ${(err as Error).message}`);
      });
    } finally {
      this.#running.delete(job.id);
      this.#o.onFinished?.(job, ok, performance.now() - started);
    }
  }
}
