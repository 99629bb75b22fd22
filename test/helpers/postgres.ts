// A throw-away PostgreSQL server for tests: Debian's `postgresql` binaries (initdb, pg_ctl from
// /usr/lib/postgresql/<v>/bin), run as the `postgres` user (initdb refuses root) on 127.0.0.1 and
// a free port, with its data and socket in a temp dir removed by stop().

import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './registry.ts';

const run = promisify(execFile);

export interface PostgresHandle {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** postgresBin finds the server binaries, or undefined when PostgreSQL is not installed. */
export async function postgresBin(): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  const versions = await readdir(root).catch(() => [] as string[]);
  const v = versions.sort((a, b) => Number(b) - Number(a))[0];
  return v === undefined ? undefined : path.join(root, v, 'bin');
}

export async function startPostgres(): Promise<PostgresHandle> {
  const bin = await postgresBin();
  if (bin === undefined) throw new Error('PostgreSQL is not installed (Debian package postgresql)');
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-pg-'));
  const { stdout } = await run('id', ['-u', 'postgres']);
  const uid = Number(stdout.trim());
  await chown(dir, uid, uid);
  const as = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args]);
  const data = path.join(dir, 'data');
  await as('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '-N']);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      await as('pg_ctl', [
        '-D',
        data,
        '-l',
        path.join(dir, 'log'),
        '-w',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
        'start',
      ]);
    } catch (e) {
      if (attempt < 3) continue;
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      async stop() {
        await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}
