import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PLATFORM_API } from '../cnb/api.ts';
import { type DetectPlan, parseDetectPlan, topLevelVersionOf } from '../cnb/build-plan.ts';
import type { Order, OrderElement } from '../cnb/buildpack-toml.ts';
import { type GroupElement, writeGroupToml } from '../cnb/group-toml.ts';
import { escapeId } from '../cnb/ids.ts';
import { type PlanEntry, type PlanToml, writePlanToml } from '../cnb/plan-toml.ts';
import { type SystemToml, withSystemBuildpacks } from '../cnb/system-toml.ts';
import { Semaphore } from '../internal/bounded.ts';
import { readTextInRoot } from '../internal/safe-read.ts';
import { type BuildpackDescriptor, isExecutable } from './buildpack-store.ts';
import { LimitError } from './deadline.ts';
import { BuildEnv } from './env.ts';
import { DetectFailedError, DetectNoGroupError } from './errors.ts';
import {
  buildpackDirInSandbox,
  chownToUser,
  cnbEnv,
  execEnvOf,
  type PhaseOptions,
  phaseError,
  processEnv,
  removeScratch,
  runInSandbox,
  type Scratch,
  sandboxPathsOf,
  startPhase,
} from './phase-context.ts';
import { resolvePlan } from './plan-resolver.ts';
import { targetMatches } from './target.ts';

/** Inputs of the detect phase. */
export interface DetectOptions extends PhaseOptions {
  /** The order to resolve (order.toml `[[order]]`). */
  readonly order: Order;
  /** Where to write the results; default `<layers>/group.toml` and `<layers>/plan.toml`. */
  readonly groupPath?: string;
  readonly planPath?: string;
  /** system.toml: buildpacks placed before and after every group (Platform API 0.15). */
  readonly system?: SystemToml;
  /** How many bin/detect run at once (default 4). */
  readonly concurrency?: number;
}

/** What one bin/detect did. `code` -1 means kiln could not run it or its output was invalid. */
export interface DetectRun {
  readonly id: string;
  readonly version: string;
  readonly code: number;
  /** Combined stdout and stderr lines. */
  readonly output: readonly string[];
  readonly plan?: DetectPlan;
  readonly error?: string;
}

/** The detect phase's result: the passing group (written as group.toml) and plan (plan.toml). */
export interface DetectResult {
  readonly group: GroupElement[];
  readonly plan: PlanToml;
  /** Every bin/detect run of this phase by `id@version`, for reports. */
  readonly runs: ReadonlyMap<string, DetectRun>;
}

/** An element that is part of the group being tried. */
interface DoneElement {
  readonly id: string;
  readonly version: string;
  readonly api: string;
  readonly homepage?: string;
  readonly optional: boolean;
}

/** Lines of bin/detect output kept per buildpack. */
const MAX_OUTPUT_LINES = 1000;

// Internal verdicts of a group, as the lifecycle's ErrFailedDetection / ErrBuildpack.
const FAILED = Symbol('failed detection');
const BUILDPACK_ERROR = Symbol('buildpack error');

/**
 * detect runs the detect phase: it expands the order (composite buildpacks depth-first, optional
 * composites also tried without), runs every `bin/detect` of a group in the sandbox (bounded
 * parallelism, each id@version once per phase), resolves the build plan (requires backward,
 * provides forward, `[[or]]` alternatives depth-first, optional buildpacks dropped until stable)
 * and writes group.toml and plan.toml for the first group that passes.
 *
 * Fails with DetectNoGroupError when no group passed, DetectFailedError when none passed and a
 * buildpack errored, any other error of the phase otherwise; the message lists what each buildpack reported.
 */
export async function detect(o: DetectOptions): Promise<DetectResult> {
  const scratch = await startPhase(o, 'detect');
  const d = new Detector(o, scratch);
  try {
    let resolved: { group: DoneElement[]; plan: PlanEntry[] };
    try {
      resolved = await d.detectOrder(withSystemBuildpacks(o.order, o.system), [], [], false);
    } catch (err) {
      if (d.fatal) throw d.fatal;
      if (err === FAILED || err === BUILDPACK_ERROR) {
        const runs = await d.settledRuns();
        reportFailure(runs, o.logger);
        const why = `${summarize(runs)}${planFailures(d.planFailures)}`;
        throw (
          err === FAILED
            ? new DetectNoGroupError(`no buildpack group passed detection: ${why}`)
            : new DetectFailedError(
                `no buildpack group passed detection and a buildpack failed with an error: ${why}`,
              )
        ).inPhase('detect');
      }
      throw phaseError('detect', err);
    }
    if (d.fatal) throw d.fatal;
    const group: GroupElement[] = resolved.group.map((e) => ({
      id: e.id,
      version: e.version,
      api: e.api,
      ...(e.homepage ? { homepage: e.homepage } : {}),
    }));
    const plan: PlanToml = { entries: resolved.plan };
    await writeGroupToml(o.groupPath ?? join(o.layersDir, 'group.toml'), { group });
    await writePlanToml(o.planPath ?? join(o.layersDir, 'plan.toml'), plan);
    return { group, plan, runs: await d.settledRuns() };
  } finally {
    // Runs of other groups may still be going when an error ends the phase early.
    await d.settledRuns();
    await removeScratch(scratch.dir);
  }
}

/** logGroup lists the participating buildpacks, ids aligned, as the reference detector does. */
export function logGroup(
  log: DetectOptions['logger'],
  group: readonly { readonly id: string; readonly version: string }[],
): void {
  const width = Math.max(...group.map((e) => e.id.length));
  for (const e of group) log.info(`${e.id.padEnd(width)} ${e.version}`);
}

/**
 * reportFailure shows, when no group passed, what every buildpack printed: output of passing and
 * non-matching buildpacks was only logged at debug level while groups were tried (errors already
 * went to info).
 */
function reportFailure(runs: ReadonlyMap<string, DetectRun>, log: DetectOptions['logger']): void {
  log.info('======== Results ========');
  for (const [key, r] of runs) {
    log.info(`${r.code === 0 ? 'pass' : r.code === 100 ? 'fail' : 'err '}: ${key}`);
    if (r.code === 0 || r.code === 100) for (const line of r.output) log.info(`  ${line}`);
  }
}

/**
 * planFailures names why the build plan of groups whose buildpacks all passed did not resolve
 * (otherwise "X passed" would be the only, puzzling, explanation of a failed detection).
 */
function planFailures(reasons: readonly string[]): string {
  if (reasons.length === 0) return '';
  const shown = reasons.slice(0, 3).join('; ');
  return `; build plan: ${shown}${reasons.length > 3 ? `; and ${reasons.length - 3} more` : ''}`;
}

/** summarize lists, per buildpack that ran, its verdict and the last thing it printed. */
function summarize(runs: ReadonlyMap<string, DetectRun>): string {
  const parts: string[] = [];
  for (const [key, r] of runs) {
    const last = r.output
      .filter((l) => l.trim() !== '')
      .at(-1)
      ?.trim();
    if (r.code === 0) parts.push(`${key} passed`);
    else if (r.code === 100) parts.push(`${key} did not match${last ? ` (${last})` : ''}`);
    else
      parts.push(`${key} errored${r.code > 0 ? ` (exit ${r.code})` : ''}: ${r.error ?? last ?? 'no output'}`);
  }
  return parts.length ? parts.join('; ') : 'no buildpack was run';
}

class Detector {
  readonly #o: DetectOptions;
  readonly #runs = new Map<string, Promise<DetectRun>>();
  readonly #limit: Semaphore;
  readonly #scratch: Scratch;
  /** The first limit hit of a detect process; it fails the phase (exit 22). */
  fatal: LimitError | undefined;
  /** Distinct reasons why plan resolution failed for groups whose buildpacks passed. */
  readonly planFailures: string[] = [];

  constructor(o: DetectOptions, scratch: Scratch) {
    this.#o = o;
    this.#scratch = scratch;
    this.#limit = new Semaphore(o.concurrency ?? 4);
  }

  async settledRuns(): Promise<Map<string, DetectRun>> {
    const out = new Map<string, DetectRun>();
    for (const [k, p] of this.#runs) out.set(k, await p);
    return out;
  }

  /** detectOrder tries each group of `order` followed by `next`; optional orders may be skipped. */
  async detectOrder(
    order: Order,
    done: readonly DoneElement[],
    next: readonly OrderElement[],
    optional: boolean,
  ): Promise<{ group: DoneElement[]; plan: PlanEntry[] }> {
    let buildpackErr = false;
    for (const g of order) {
      try {
        return await this.detectGroup([...g.group, ...next], done);
      } catch (err) {
        if (err === BUILDPACK_ERROR) buildpackErr = true;
        else if (err !== FAILED) throw err;
      }
    }
    if (optional) return this.detectGroup(next, done);
    throw buildpackErr ? BUILDPACK_ERROR : FAILED;
  }

  async detectGroup(
    group: readonly OrderElement[],
    doneIn: readonly DoneElement[],
  ): Promise<{ group: DoneElement[]; plan: PlanEntry[] }> {
    const o = this.#o;
    const done = [...doneIn];
    for (const [i, el] of group.entries()) {
      // An ID already in the expanded group is skipped (lifecycle deduplication).
      if (done.some((d) => d.id === el.id)) continue;
      const bp = await o.buildpackStore.lookup(el.id, el.version);
      if (bp.order) return this.detectOrder(bp.order, done, group.slice(i + 1), el.optional ?? false);
      const element: DoneElement = {
        id: bp.id,
        version: bp.version,
        api: bp.api.toString(),
        homepage: bp.homepage,
        optional: el.optional ?? false,
      };
      const key = `${bp.id}@${bp.version}`;
      const platformApi = o.platformApi ?? PLATFORM_API;
      if (
        platformApi.atLeast('0.12') &&
        bp.targets.length > 0 &&
        !bp.targets.some((t) => targetMatches(o.target, t)) &&
        !element.optional
      ) {
        done.push(element);
        if (!this.#runs.has(key)) {
          this.#runs.set(
            key,
            Promise.resolve({
              id: bp.id,
              version: bp.version,
              code: -1,
              output: [],
              error: `unable to satisfy target os/arch constraints; run image: ${JSON.stringify(o.target)}, buildpack: ${JSON.stringify(bp.targets)}`,
            }),
          );
        }
        continue;
      }
      // Platform 0.15: a buildpack whose exec-env excludes the current one is silently skipped.
      const execEnv = execEnvOf(o);
      if (
        platformApi.atLeast('0.15') &&
        bp.execEnv.length > 0 &&
        !bp.execEnv.includes('*') &&
        !bp.execEnv.includes(execEnv)
      ) {
        o.logger.debug(`skip: ${key} does not support exec-env ${execEnv}`);
        continue;
      }
      done.push(element);
      if (!this.#runs.has(key)) {
        const run = this.#limit
          .run(() => this.#runDetect(bp))
          .catch(
            (err: unknown): DetectRun => ({
              id: bp.id,
              version: bp.version,
              code: -1,
              output: [],
              error: String(err),
            }),
          );
        this.#runs.set(key, run);
      }
    }
    return this.#resolve(done);
  }

  async #resolve(done: readonly DoneElement[]): Promise<{ group: DoneElement[]; plan: PlanEntry[] }> {
    const log = this.#o.logger;
    const results: { el: DoneElement; run: DetectRun }[] = [];
    let detected = true;
    let anyPassed = false;
    let buildpackErr = false;
    for (const el of done) {
      const run = await this.#runs.get(`${el.id}@${el.version}`)!;
      const pass = run.code === 0 || run.code === 100;
      const show = (m: string) => (pass ? log.debug(m) : log.info(m));
      if (run.output.length > 0) {
        show(`======== Output: ${el.id}@${el.version} ========`);
        for (const line of run.output) show(line);
      }
      if (run.error) {
        show(`======== Error: ${el.id}@${el.version} ========`);
        show(run.error);
      }
      if (run.code === 0) {
        results.push({ el, run });
        anyPassed = true;
      } else if (run.code === 100) {
        log.debug(`${el.optional ? 'skip' : 'fail'}: ${el.id}@${el.version}`);
        detected &&= el.optional;
      } else {
        log.info(`err:  ${el.id}@${el.version}${run.code > 0 ? ` (${run.code})` : ''}`);
        buildpackErr = true;
        detected &&= el.optional;
      }
    }
    if (!detected) throw buildpackErr ? BUILDPACK_ERROR : FAILED;
    if (!anyPassed) {
      log.debug('fail: no viable buildpacks in group');
      throw FAILED;
    }
    let reason: string | undefined;
    const resolved = resolvePlan(
      results.map((r) => ({ el: r.el, plan: r.run.plan ?? { provides: [], requires: [], or: [] } })),
      {
        debug: (m) => {
          log.debug(m);
          if (m.startsWith('fail: ')) reason = m.slice('fail: '.length);
        },
      },
    );
    if (!resolved) {
      if (reason && !this.planFailures.includes(reason)) this.planFailures.push(reason);
      throw FAILED;
    }
    if (resolved.group.length !== done.length) {
      log.info(`${resolved.group.length} of ${done.length} buildpacks participating`);
    }
    logGroup(log, resolved.group);
    return { group: resolved.group, plan: resolved.plan };
  }

  async #runDetect(bp: BuildpackDescriptor): Promise<DetectRun> {
    const o = this.#o;
    const base = { id: bp.id, version: bp.version };
    const bin = join(bp.dir, 'bin', 'detect');
    if (!isExecutable(bp, 'detect')) {
      return { ...base, code: -1, output: [], error: `${bin} is missing or not executable` };
    }
    // An empty plan file per buildpack, owned by the build user, in a dir only kiln can write.
    const planName = `${escapeId(bp.id)}@${bp.version}.toml`;
    const planHost = join(this.#scratch.dir, planName);
    await writeFile(planHost, '', { mode: 0o644 });
    await chownToUser(o, planHost);
    const planSandbox = join(this.#scratch.sandboxDir, planName);
    const output: string[] = [];
    let code: number;
    try {
      const env = await processEnv(
        o,
        BuildEnv.fromBase(o.baseEnv, o.extraEnv),
        bp,
        cnbEnv(o, bp, { planKey: 'CNB_BUILD_PLAN_PATH', planPath: planSandbox }),
      );
      const argv = [`${buildpackDirInSandbox(o, bp)}/bin/detect`, sandboxPathsOf(o).platform, planSandbox];
      const result = await runInSandbox(
        o,
        argv,
        env,
        false,
        (line) => {
          // Keep the first lines of a runaway detect; its output is only shown, never parsed.
          if (output.length < MAX_OUTPUT_LINES)
            output.push(line.length > 4096 ? `${line.slice(0, 4096)}…` : line);
          else if (output.length === MAX_OUTPUT_LINES) output.push('… (further output dropped)');
        },
        this.#scratch.mount,
        { buildpack: `${bp.id}@${bp.version}`, phase: 'detect' },
      );
      if (result.timedOut) return { ...base, code: -1, output, error: 'bin/detect timed out' };
      code = result.exitCode;
      if (code !== 0 && code !== 100 && result.notes.length > 0)
        return { ...base, code, output, error: result.notes.join('; ') };
    } catch (err) {
      // A limit hit (memory, disk, the build's deadline) ends the phase, whatever other groups do.
      if (err instanceof LimitError) this.fatal ??= err;
      return { ...base, code: -1, output, error: (err as Error).message };
    }
    if (code !== 0) return { ...base, code, output };
    let plan: DetectPlan;
    try {
      // The file is the buildpack's (in kiln's scratch dir): read it as untrusted, size-capped.
      const text = readTextInRoot(this.#scratch.dir, planName, { what: "kiln's scratch directory" });
      plan = parseDetectPlan(text, `build plan of ${bp.id}@${bp.version}`);
    } catch (err) {
      return { ...base, code: -1, output, error: (err as Error).message };
    }
    const versioned = topLevelVersionOf(plan);
    if (versioned !== undefined) {
      return {
        ...base,
        code: -1,
        output,
        error: `buildpack ${bp.id} has a "version" key (in requires "${versioned}") which is not supported: use "metadata.version" instead`,
      };
    }
    return { ...base, code: 0, output, plan };
  }
}
