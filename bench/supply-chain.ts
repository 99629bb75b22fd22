// Supply-chain bench: what signing and attaching cost a warm `kiln build --publish` of the Express
// sample, and how long `kiln verify` of the signed image takes as a whole process.
//  - build: alternating rounds of `--publish --no-attest` and `--publish --sign-key KEY` (merged
//    SBOMs + SLSA provenance + cosign signature + three DSSE bundles, attached through the
//    tag-schema fallback of a local docker-registry, which has no referrers API); reports the
//    medians, their difference, and the in-process time of the attestation step (target <= 150 ms).
//  - verify: `kiln verify REF --key PUB` process wall time (target <= 300 ms incl. start), side by
//    side with `kiln image inspect REF` (the same start-up and registry round trips without any
//    checks) as the baseline. cosign itself is not installable here (not in Debian), so kiln's
//    two commands are the comparison.
// Needs a kiln home with the stack (`kiln stack create --locked`): --home DIR (default the e2e home).
// Run: `node bench/supply-chain.ts [--home DIR] [--rounds 5] [--cpu-prof DIR]`.

import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry } from '../test/helpers/registry.ts';
import { opt } from './lib/args.ts';
import { childCpuMs } from './lib/process-cost.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const kilnBin = path.join(root, 'bin', 'kiln');
const rounds = Number(opt('--rounds', '5'));
const home = path.resolve(
  opt('--home', process.env.KILN_E2E_HOME ?? path.join(root, '.kiln-test', 'e2e-home')),
);

/** One kiln process: wall time and CPU time (user + sys of it and what it waited for). */
async function kiln(
  args: string[],
  env: Record<string, string>,
): Promise<{ ms: number; cpu: number; out: string }> {
  const t0 = performance.now();
  const c0 = childCpuMs();
  const r = await run(kilnBin, args, {
    env: { ...process.env, KILN_HOME: home, CI: '1', NO_COLOR: '1', ...env },
    maxBuffer: 64 << 20,
  });
  return { ms: performance.now() - t0, cpu: childCpuMs() - c0, out: r.stdout + r.stderr };
}

const work = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-supply-'));
const reg = await startRegistry();
try {
  const env = { KILN_PASSWORD: 'bench-passphrase' };
  const app = path.join(work, 'node-express');
  await cp(path.join(root, 'samples', 'node-express'), app, {
    recursive: true,
    filter: (s) => !s.includes('node_modules'),
  });
  await kiln(['key', 'generate', '--output-key-prefix', path.join(work, 'bench')], env);
  const key = path.join(work, 'bench.key');
  const pub = path.join(work, 'bench.pub');
  const ref = `${reg.host}/bench/express:latest`;
  const build = (extra: string[]) =>
    kiln(['-v', '--insecure-registry', reg.host, 'build', ref, '--path', app, '--publish', ...extra], env);
  await build(['--sign-key', key]); // cold: npm install, first push
  await build(['--no-attest']); // warm
  const plain: number[] = [];
  const signed: number[] = [];
  const plainCpu: number[] = [];
  const signedCpu: number[] = [];
  const step: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const p = await build(['--no-attest']);
    plain.push(p.ms);
    plainCpu.push(p.cpu);
    const s = await build(['--sign-key', key]);
    signed.push(s.ms);
    signedCpu.push(s.cpu);
    const m = /Attestations: (\d+) ms/.exec(s.out);
    if (m) step.push(Number(m[1]));
  }
  const verify: number[] = [];
  const inspect: number[] = [];
  const verifyCpu: number[] = [];
  const inspectCpu: number[] = [];
  for (let i = 0; i < rounds * 2; i++) {
    const v = await kiln(['--insecure-registry', reg.host, 'verify', ref, '--key', pub], env);
    if (!v.out.includes('Verified')) throw new Error(`verify failed:\n${v.out}`);
    verify.push(v.ms);
    verifyCpu.push(v.cpu);
    const n = await kiln(['--insecure-registry', reg.host, 'image', 'inspect', ref], env);
    inspect.push(n.ms);
    inspectCpu.push(n.cpu);
  }
  // --cpu-prof DIR: one more verify under V8's CPU profiler (what its fixed cost is made of).
  const profDir = opt('--cpu-prof', '');
  if (profDir)
    await kiln(['--insecure-registry', reg.host, 'verify', ref, '--key', pub], {
      ...env,
      NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${path.resolve(profDir)}`,
    });
  const f = (x: number) => `${x.toFixed(0)} ms`;
  console.log(
    `load: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (1/5/15 min), ${os.cpus().length} cores`,
  );
  console.log(`warm build --publish --no-attest   median ${f(median(plain))}  [${plain.map(f).join(', ')}]`);
  console.log(
    `warm build --publish --sign-key    median ${f(median(signed))}  [${signed.map(f).join(', ')}]`,
  );
  console.log(`  difference of medians            ${f(median(signed) - median(plain))}`);
  console.log(
    `  CPU (user+sys) medians           ${f(median(plainCpu))} -> ${f(median(signedCpu))}: +${f(median(signedCpu) - median(plainCpu))}`,
  );
  console.log(
    `  attestation step (in process)    median ${f(median(step))}  [${step.map(f).join(', ')}]  target <= 150 ms`,
  );
  console.log(
    `kiln verify (process)              median ${f(median(verify))}  [${verify.map(f).join(', ')}]  target <= 300 ms`,
  );
  console.log(
    `kiln image inspect (baseline)      median ${f(median(inspect))}  ratio verify/inspect ${(median(verify) / median(inspect)).toFixed(2)}`,
  );
  console.log(
    `CPU (user+sys) medians             verify ${f(median(verifyCpu))}  inspect ${f(median(inspectCpu))}  [verify ${verifyCpu.map(f).join(', ')}]`,
  );
} finally {
  await reg.stop();
  await rm(work, { recursive: true, force: true });
}
