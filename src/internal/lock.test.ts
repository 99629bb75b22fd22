import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { acquireLock, tryLock } from './lock.ts';
import { processStart } from './process.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const tempDir = tempDirs('kiln-lock-test-');

// A pid above this machine's pid_max (at most 2^22) can never be alive.
const DEAD_PID = 4194305;

/** The stale records a race starts from: every format a lock file may hold. */
function staleRecords(): string[] {
  const host = hostname();
  return [
    JSON.stringify({
      pid: DEAD_PID,
      start: '1',
      host,
      nonce: 'ab'.repeat(12),
      since: '2026-01-01T00:00:00Z',
    }),
    // A live pid with another start time: the pid was recycled, the owner is gone.
    JSON.stringify({ pid: process.pid, start: '1', host, nonce: 'cd'.repeat(12) }),
    // Older kiln: no nonce (cache lock) or only the pid as text (layout and rootfs locks).
    JSON.stringify({ pid: DEAD_PID, start: '7', host }),
    String(DEAD_PID),
  ];
}

// A worker process: for every `try <file>` line it calls tryLock and answers `held` or `busy`;
// `release` releases what it holds; `acquire <file> <log> <n> <die>` takes the lock n times with
// acquireLock, logging enter/exit lines, and SIGKILLs itself while holding on round <die>.
const WORKER = `
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import { acquireLock, tryLock } from ${JSON.stringify(path.join(here, 'lock.ts'))};
let held;
const say = (s) => process.stdout.write(s + '\\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, a, b, c, d] = line.split(' ');
  if (cmd === 'try') {
    held = await tryLock(a);
    say(held ? 'held' : 'busy');
  } else if (cmd === 'release') {
    await held?.release();
    held = undefined;
    say('released');
  } else if (cmd === 'acquire') {
    for (let i = 0; i < Number(c); i++) {
      const l = await acquireLock(a, { timeoutMs: 30000 });
      fs.appendFileSync(b, 'enter ' + process.pid + '\\n');
      if (i === Number(d)) process.kill(process.pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, Math.random() * 3));
      fs.appendFileSync(b, 'exit ' + process.pid + '\\n');
      await l.release();
    }
    say('done');
  }
}
`;

interface Worker {
  readonly child: ChildProcessWithoutNullStreams;
  next(): Promise<string>;
  send(line: string): void;
}

async function startWorkers(n: number, dir: string): Promise<Worker[]> {
  const script = path.join(dir, 'worker.ts');
  await fs.writeFile(script, WORKER);
  return Array.from({ length: n }, () => {
    const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    return {
      child,
      send: (line: string) => child.stdin.write(`${line}\n`),
      async next() {
        const r = await lines.next();
        if (r.done) throw new Error(`worker ${child.pid} ended: ${stderr}`);
        return r.value;
      },
    };
  });
}

function stop(workers: readonly Worker[]): void {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
}

describe('lock', () => {
  test('several processes breaking the same stale lock at once: exactly one holds it, every round', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'lock');
    const workers = await startWorkers(8, dir);
    try {
      const rounds = 60;
      for (let round = 0; round < rounds; round++) {
        await fs.writeFile(file, staleRecords()[round % 4]!);
        // Every worker is sent its line before any answers, so all find the same stale lock.
        for (const w of workers) w.send(`try ${file}`);
        const answers = await Promise.all(workers.map((w) => w.next()));
        assert.equal(answers.filter((a) => a === 'held').length, 1, `round ${round}: ${answers.join(' ')}`);
        assert.equal(answers.filter((a) => a === 'busy').length, workers.length - 1);
        const winner = workers[answers.indexOf('held')]!;
        assert.equal(JSON.parse(await fs.readFile(file, 'utf8')).pid, winner.child.pid);
        for (const w of workers) w.send('release');
        await Promise.all(workers.map((w) => w.next()));
        await assert.rejects(fs.stat(file), { code: 'ENOENT' });
      }
      // Nothing is left behind: no temp records, no break names.
      assert.deepEqual(await fs.readdir(dir), ['worker.ts']);
    } finally {
      stop(workers);
    }
  });

  test('blocking takers never overlap, and one killed while holding is broken by the others', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'lock');
    const log = path.join(dir, 'log');
    await fs.writeFile(log, '');
    const workers = await startWorkers(5, dir);
    try {
      // Worker 0 dies holding the lock on its 3rd turn; the others run 20 turns each.
      for (const [i, w] of workers.entries()) w.send(`acquire ${file} ${log} 20 ${i === 0 ? 2 : -1}`);
      const dead = new Promise((r) => workers[0]!.child.once('exit', r));
      const done = await Promise.all(workers.slice(1).map((w) => w.next()));
      await dead;
      assert.deepEqual(done, ['done', 'done', 'done', 'done']);
      const lines = (await fs.readFile(log, 'utf8')).trim().split('\n');
      const killed = String(workers[0]!.child.pid);
      let inside: string | undefined;
      for (const [i, line] of lines.entries()) {
        const [what, pid] = line.split(' ');
        if (what === 'enter') {
          // Only a holder that was killed may be followed by another enter.
          assert.ok(
            inside === undefined || inside === killed,
            `line ${i}: ${pid} entered while ${inside} held`,
          );
          inside = pid;
        } else {
          assert.equal(pid, inside, `line ${i}: exit by a non-holder`);
          inside = undefined;
        }
      }
      assert.equal(lines.filter((l) => l.startsWith('enter')).length, 4 * 20 + 3);
    } finally {
      stop(workers);
    }
  });

  test('tryLock is busy while a live process holds it; release removes only its own holding', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'lock');
    const held = await tryLock(file);
    assert.ok(held);
    const record = JSON.parse(await fs.readFile(file, 'utf8'));
    assert.equal(record.pid, process.pid);
    assert.equal(record.start, processStart(process.pid));
    assert.equal(await tryLock(file), undefined);
    await held.release();
    await held.release();
    // A lock recorded by an earlier process that had our pid (another start time) is stale.
    await fs.writeFile(file, JSON.stringify({ pid: process.pid, start: '1', host: hostname() }));
    const mine = await tryLock(file);
    assert.ok(mine);
    await mine.release();
    // A lock file that is not ours (replaced behind our back) is left to its owner.
    const again = await tryLock(file);
    assert.ok(again);
    await fs.writeFile(file, JSON.stringify({ pid: 1, start: '', host: hostname(), nonce: 'ef'.repeat(12) }));
    await again.release();
    assert.match(await fs.readFile(file, 'utf8'), /"pid":1/);
  });

  test('acquireLock waits for a live holder, names it, and times out with its pid', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'lock');
    await fs.writeFile(file, String(DEAD_PID));
    const first = await acquireLock(file, { timeoutMs: 2000 });
    let waited = '';
    const second = acquireLock(file, { timeoutMs: 5000, onWait: (h) => (waited = h) });
    await new Promise((r) => setTimeout(r, 100));
    assert.match(waited, new RegExp(`^pid ${process.pid} \\(since \\d{4}-`));
    await first.release();
    const l2 = await second;
    await assert.rejects(
      acquireLock(file, { timeoutMs: 100 }),
      new RegExp(`timed out waiting for lock ${file}: held by pid ${process.pid} `),
    );
    await l2.release();
  });

  test('a link or a FIFO at the lock path is refused with a clear error, never followed or waited on', async () => {
    const dir = await tempDir();
    const target = path.join(dir, 'elsewhere');
    await fs.writeFile(target, String(DEAD_PID));
    await fs.symlink(target, path.join(dir, 'linked'));
    await assert.rejects(
      tryLock(path.join(dir, 'linked')),
      /lock .*linked: expected a lock file, found a symbolic link/,
    );
    assert.equal(await fs.readFile(target, 'utf8'), String(DEAD_PID));
    spawnSync('mkfifo', [path.join(dir, 'fifo')]);
    await assert.rejects(
      tryLock(path.join(dir, 'fifo')),
      /lock .*fifo: expected a lock file, found something else/,
    );
  });

  test('a break name left by a breaker that died mid-break is cleared once old', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'lock');
    const nonce = '12'.repeat(12);
    await fs.writeFile(file, JSON.stringify({ pid: DEAD_PID, start: '1', host: hostname(), nonce }));
    await fs.link(file, `${file}.break-${nonce}`);
    // Fresh: another breaker may be at work, so the lock is not taken.
    assert.equal(await tryLock(file), undefined);
    // Old: its breaker is gone, so the name is cleared and the stale lock broken.
    const held = await acquireLockAfterAbandon(file);
    assert.ok(held);
    await held.release();
  });
});

/** Ages the break name past the abandon limit by moving the clock the lock module reads. */
async function acquireLockAfterAbandon(file: string) {
  const realNow = Date.now;
  Date.now = () => realNow() + 31_000;
  try {
    return await tryLock(file);
  } finally {
    Date.now = realNow;
  }
}
