import type { DetectPlan, PlanSections } from '../cnb/build-plan.ts';
import type { PlanEntry } from '../cnb/plan-toml.ts';

/** A passing group element as plan resolution needs it. */
export interface PlanElement {
  readonly id: string;
  readonly version: string;
  readonly optional: boolean;
}

/** A passing element with the build plan its bin/detect wrote. */
export interface Candidate<T extends PlanElement> {
  readonly el: T;
  readonly plan: DetectPlan;
}

/** An alternative of one element: its main sections or one of its `[[or]]` sections. */
interface Option<T extends PlanElement> {
  readonly el: T;
  readonly sections: PlanSections;
}

/**
 * resolvePlan picks the build plan of a group whose bin/detect passed, as the reference lifecycle
 * does: combinations of alternatives (each element's main sections, then its `[[or]]` ones) are
 * tried depth-first; in a trial, a require must be provided by the same or an earlier element and
 * a provide must be required by the same or a later one, else the trial fails, unless the element
 * is optional (it counts as optional only in its last alternative), in which case it is dropped
 * and the trial repeated until stable. Returns the participating elements (group order) and the
 * plan entries, or undefined when no trial works.
 */
export function resolvePlan<T extends PlanElement>(
  candidates: readonly Candidate<T>[],
  log: { debug(m: string): void },
): { group: T[]; plan: PlanEntry[] } | undefined {
  let n = 0;
  const found = runTrials(candidates, [], (t) => {
    n++;
    log.debug(`Resolving plan... (try #${n})`);
    return runTrial(t, log);
  });
  if (!found) return undefined;
  return { group: found.trial.map((t) => candidates.find((c) => c.el.id === t.el.id)!.el), plan: found.plan };
}

function optionsOf<T extends PlanElement>(c: Candidate<T>): Option<T>[] {
  const all: PlanSections[] = [{ provides: c.plan.provides, requires: c.plan.requires }, ...c.plan.or];
  return all.map((sections, i) => ({
    el: { ...c.el, optional: c.el.optional && i === c.plan.or.length },
    sections,
  }));
}

function runTrials<T extends PlanElement>(
  candidates: readonly Candidate<T>[],
  prefix: readonly Option<T>[],
  trial: (t: Option<T>[]) => { trial: Option<T>[]; plan: PlanEntry[] } | undefined,
): { trial: Option<T>[]; plan: PlanEntry[] } | undefined {
  if (candidates.length === 0) return trial([...prefix]);
  for (const option of optionsOf(candidates[0]!)) {
    const r = runTrials(candidates.slice(1), [...prefix, option], trial);
    if (r) return r;
  }
  return undefined;
}

interface DepEntry {
  providers: PlanElement[];
  requires: { name: string; metadata?: Record<string, unknown> }[];
  earlyRequires: PlanElement[];
  extraProvides: PlanElement[];
}

/** depMap walks a trial in order: provides go forward, requires look backward. */
function depMap(trial: readonly Option<PlanElement>[]): Map<string, DepEntry> {
  const m = new Map<string, DepEntry>();
  const entry = (name: string) => {
    let e = m.get(name);
    if (!e) {
      e = { providers: [], requires: [], earlyRequires: [], extraProvides: [] };
      m.set(name, e);
    }
    return e;
  };
  for (const { el, sections } of trial) {
    for (const p of sections.provides) entry(p.name).extraProvides.push(el);
    for (const r of sections.requires) {
      const e = entry(r.name);
      e.providers.push(...e.extraProvides);
      e.extraProvides = [];
      if (e.providers.length === 0) e.earlyRequires.push(el);
      else
        e.requires.push(r.metadata === undefined ? { name: r.name } : { name: r.name, metadata: r.metadata });
    }
  }
  return m;
}

function runTrial<T extends PlanElement>(
  trialIn: readonly Option<T>[],
  log: { debug(m: string): void },
): { trial: Option<T>[]; plan: PlanEntry[] } | undefined {
  let trial = [...trialIn];
  for (;;) {
    const deps = depMap(trial);
    const drop = new Set<string>();
    for (const [name, e] of deps) {
      for (const el of e.earlyRequires) {
        if (!el.optional) {
          log.debug(`fail: ${el.id}@${el.version} requires ${name}`);
          return undefined;
        }
        log.debug(`skip: ${el.id}@${el.version} requires ${name}`);
        drop.add(el.id);
      }
    }
    for (const [name, e] of deps) {
      for (const el of e.extraProvides) {
        if (!el.optional) {
          log.debug(`fail: ${el.id}@${el.version} provides unused ${name}`);
          return undefined;
        }
        log.debug(`skip: ${el.id}@${el.version} provides unused ${name}`);
        drop.add(el.id);
      }
    }
    if (drop.size === 0) {
      if (trial.length === 0) {
        log.debug('fail: no viable buildpacks in group');
        return undefined;
      }
      const plan: PlanEntry[] = [];
      for (const e of deps.values()) {
        if (e.requires.length === 0) continue;
        plan.push({
          providers: e.providers.map((p) => ({ id: p.id, version: p.version })),
          requires: e.requires,
        });
      }
      return { trial, plan };
    }
    trial = trial.filter((t) => !drop.has(t.el.id));
  }
}
