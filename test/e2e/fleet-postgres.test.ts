// kiln fleet scaled out on a real PostgreSQL (Debian's server, started here): the queue hands
// each job to exactly one worker (SKIP LOCKED), a SIGKILLed worker's job is taken over when its
// lease runs out and every image is published exactly once per reason, a worker that joins later
// picks up queued work, and only one serve schedules (advisory lock).

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { parseFleet } from '../../src/fleet/declarations.ts';
import { PgState } from '../../src/fleet/pg-state.ts';
import type { Job } from '../../src/fleet/state.ts';
import { type PostgresHandle, startPostgres } from '../helpers/postgres.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import {
  copySample,
  freePort,
  httpGet,
  KILN_HOME,
  kilnOk,
  prepareHome,
  ROOT,
  runKiln,
} from './samples-harness.ts';

const IMAGES = ['p1', 'p2', 'p3', 'p4'];

let pgs: PostgresHandle;
let registry: RegistryHandle;
let work: string;
let app: { dir: string; cleanup: () => Promise<void> };
const children = new Set<ChildProcess>();

function start(args: readonly string[]): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(path.join(ROOT, 'bin', 'kiln'), [...args], {
    env: { ...process.env, KILN_HOME, NO_COLOR: '1', CI: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      children.delete(child);
      r(code);
    }),
  );
  return { child, output: () => out, exited };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  f: () => Promise<T | undefined>,
  ms = 120_000,
  log?: () => string,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${log?.() ?? ''}`);
    await sleep(200);
  }
}

describe('kiln fleet on PostgreSQL', { timeout: 600_000 }, () => {
  before(async () => {
    pgs = await startPostgres();
    work = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-fleet-pg-'));
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await registry?.stop();
    await app?.cleanup();
    await pgs?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('concurrent claims hand each job to exactly one worker', async () => {
    // A database of its own: these jobs are never meant to be built.
    const admin = new pg.Client({ connectionString: pgs.url });
    await admin.connect();
    await admin.query('CREATE DATABASE claims');
    await admin.end();
    const url = pgs.url.replace(/\/postgres$/, '/claims');
    const states = await Promise.all([1, 2, 3].map(() => PgState.connect(url)));
    try {
      const [s] = states;
      await s!.apply(
        parseFleet(
          `schema-version = 1\n${IMAGES.map((n) => `[images.q${n}]\ntag = "r/q${n}:1"\nsource = { path = "/x" }\n`).join('')}`,
          'f',
        ),
      );
      for (const n of IMAGES)
        await s!.enqueue({
          image: `q${n}`,
          kind: 'build',
          reasons: ['CONFIG'],
          inputs: { declHash: n },
          key: `key-${n}`,
        });
      assert.equal(
        await s!.enqueue({
          image: 'qp1',
          kind: 'build',
          reasons: ['CONFIG'],
          inputs: { declHash: 'p1' },
          key: 'key-p1',
        }),
        false,
      );
      const claimed: Job[] = [];
      await Promise.all(
        states.map(async (st, i) => {
          for (;;) {
            const j = await st.claim(`w${i}`, 60_000);
            if (!j) return;
            claimed.push(j);
          }
        }),
      );
      assert.deepEqual(claimed.map((j) => j.image).sort(), IMAGES.map((n) => `q${n}`).sort());
      // Only one of the three takes the scheduler's lock; it is freed when its holder closes.
      const got = await Promise.all(states.map((st) => st.isScheduler()));
      assert.equal(got.filter(Boolean).length, 1);
      const holder = states[got.indexOf(true)]!;
      await holder.close();
      states.splice(states.indexOf(holder), 1);
      assert.equal((await Promise.all(states.map((st) => st.isScheduler()))).filter(Boolean).length, 1);
    } finally {
      for (const st of states) await st.close().catch(() => {});
    }
  });

  test('three workers, one SIGKILLed mid-build: every image published exactly once; a new worker picks up queued work', async () => {
    await prepareHome();
    registry = await startRegistry();
    app = await copySample('static-binary');
    execFileSync('./build.sh', { cwd: app.dir });
    const file = path.join(work, 'fleet.toml');
    await writeFile(
      file,
      `schema-version = 1\npoll-interval = "1h"\n${IMAGES.map((n) => `[images.${n}]\ntag = "${registry.host}/apps/${n}:latest"\nsource = { path = "${app.dir}" }\n`).join('')}`,
    );
    const db = pgs.url.replace(/\/postgres$/, '/postgres?application_name=kiln-test');
    await kilnOk(['fleet', 'apply', file, '--database', db]);
    const state = await PgState.connect(pgs.url);
    try {
      const port = await freePort();
      const serve = start([
        'fleet',
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--database',
        db,
        '--workers',
        '0',
      ]);
      const workers = [1, 2, 3].map(() => start(['fleet', 'worker', '--database', db, '--lease', '3']));
      const log = () => `${serve.output()}\n${workers.map((w) => w.output()).join('\n')}`;
      // Kill the worker that is building first, mid-build.
      const victim = await until(
        'a running job',
        async () => {
          for (const n of IMAGES) {
            const j = (await state.history(n)).find((h) => h.state === 'running');
            const w = j && workers.find((x) => j.worker?.includes(`:${x.child.pid}:`));
            if (j && w) return { job: j, worker: w };
          }
          return undefined;
        },
        120_000,
        log,
      );
      await sleep(500);
      victim.worker.child.kill('SIGKILL');
      await victim.worker.exited;
      const done = await until(
        'every image built',
        async () => {
          const imgs = await state.images();
          return imgs.every((i) => i.digest !== undefined) ? imgs : undefined;
        },
        180_000,
        log,
      );
      for (const n of IMAGES) {
        const ok = (await state.history(n)).filter((h) => h.state === 'succeeded');
        assert.equal(ok.length, 1, `${n}: published once`);
        assert.deepEqual(ok[0]!.reasons, ['CONFIG']);
      }
      const taken = await state.job(victim.job.id);
      assert.equal(taken?.state, 'succeeded');
      assert.ok((taken?.attempts ?? 0) >= 2, "the killed worker's job was taken over");
      assert.ok(!taken?.worker?.includes(`:${victim.worker.child.pid}:`), 'by another worker');
      // The images run.
      for (const digest of new Set(done.map((i) => i.digest))) {
        const p = await freePort();
        const r = runKiln([`${registry.host}/apps/p1@${digest}`, '-p', String(p)]);
        try {
          assert.equal(await httpGet(p, 30_000), 'Hello from kiln: static-binary\n');
        } finally {
          await r.stop();
        }
      }
      // Workers leave (gracefully); work queued meanwhile waits for a worker that joins later.
      for (const w of workers.filter((x) => x !== victim.worker)) {
        w.child.kill('SIGTERM');
        assert.equal(await w.exited, 0);
      }
      await kilnOk(['fleet', 'rebuild', 'p2', '--database', db]);
      await kilnOk(['fleet', 'rebuild', 'p3', '--database', db]);
      await until(
        'TRIGGER jobs queued',
        async () => ((await state.queueDepth()).queued === 2 ? true : undefined),
        30_000,
        log,
      );
      const late = start(['fleet', 'worker', '--database', db, '--lease', '3']);
      for (const n of ['p2', 'p3'])
        await until(
          `${n} rebuilt`,
          async () =>
            (await state.history(n)).find((h) => h.reasons.includes('TRIGGER') && h.state === 'succeeded'),
          120_000,
          () => late.output(),
        );
      for (const n of ['p2', 'p3'])
        assert.ok(
          (await state.history(n))
            .find((h) => h.reasons.includes('TRIGGER'))
            ?.worker?.includes(`:${late.child.pid}:`),
        );
      late.child.kill('SIGTERM');
      serve.child.kill('SIGTERM');
      assert.equal(await late.exited, 0);
      assert.equal(await serve.exited, 0);
    } finally {
      await state.close();
    }
  });
});
