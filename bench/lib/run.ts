import { spawn } from 'node:child_process';

/** What runToEnd saw: the wall time and everything the command printed (stdout and stderr). */
export interface Ran {
  readonly ms: number;
  readonly out: string;
}

/**
 * runToEnd runs a command to completion and returns its wall time and output; a non-zero exit
 * rejects with `what` (default: the command line) and the output's tail. The benches' one way of
 * running a side.
 */
export function runToEnd(
  cmd: string,
  argv: readonly string[],
  o: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string; readonly what?: string } = {},
): Promise<Ran> {
  return new Promise<Ran>((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, [...argv], {
      env: o.env ?? process.env,
      cwd: o.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve({ ms, out });
      else reject(new Error(`${o.what ?? `${cmd} ${argv.join(' ')}`} exited ${code}\n${out.slice(-4000)}`));
    });
  });
}

/** timeCpuMs reads what `/usr/bin/time -f '%U %S' -o FILE` wrote: user + system CPU in ms. */
export function timeCpuMs(text: string): number {
  const [u, s] = text.trim().split('\n').pop()!.split(' ').map(Number);
  return ((u ?? 0) + (s ?? 0)) * 1000;
}
