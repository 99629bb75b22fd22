import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** plainSpawn starts /bin/true with no isolation: the baseline every sandbox start is compared with. */
export function plainSpawn(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: 'ignore', env: {} });
    c.on('error', reject);
    c.on('exit', () => resolve());
  });
}

/**
 * childCpuMs is the CPU time of waited-for descendants (cutime + cstime, 10 ms ticks) plus kiln's
 * own: unlike wall time it hardly depends on how busy the machine is.
 */
export function childCpuMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[13]) + Number(fields[14])) * 10;
}
