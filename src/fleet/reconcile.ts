import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../internal/log.ts';
import { parseReference } from '../registry/reference.ts';
import { canonicalJson, type Fleet, type ImageDeclaration } from './declarations.ts';
import type { Git } from './git.ts';
import type { FleetState, ImageState, Inputs, JobKind, Observation, Reason } from './state.ts';

// The scheduler's two halves. `Observer` looks at what the fleet depends on (run images and
// builders by manifest digest with a HEAD request, git refs with ls-remote) and records what it
// saw; `reconcile` compares each image's last inputs with the newest observations and queues one
// job per difference, with kpack's reasons. Both are idempotent: running them twice queues nothing
// new (a job's key is its inputs).

/** The observation keys of one image's inputs. */
export const keys = {
  run: (ref: string) => `run:${ref}`,
  builder: (ref: string) => `builder:${ref}`,
  buildpacks: (ref: string) => `buildpacks:${ref}`,
  git: (url: string, ref: string) => `git:${url}#${ref}`,
  trigger: (image: string) => `trigger:${image}`,
};

/** The manifest digest of a registry image (HEAD: no body, no layers); undefined when absent. */
export type HeadDigest = (ref: string) => Promise<string | undefined>;
/** The buildpacks (`id@version`) of a builder image, from its config (no layers). */
export type BuilderBuildpacks = (ref: string) => Promise<string[]>;

export interface ObserverOptions {
  readonly state: FleetState;
  readonly head: HeadDigest;
  readonly buildpacks: BuilderBuildpacks;
  readonly git: Git;
  readonly log: Logger;
}

/** What one check found changed, for the caller to reconcile (and metrics). */
export interface Checked {
  readonly changed: readonly string[];
  readonly errors: readonly string[];
}

export class Observer {
  readonly #o: ObserverOptions;
  constructor(o: ObserverOptions) {
    this.#o = o;
  }

  /** checkAll looks at everything the fleet watches, a few requests at a time. */
  async checkAll(fleet: Fleet): Promise<Checked> {
    const tasks: (() => Promise<void>)[] = [];
    const changed: string[] = [];
    const errors: string[] = [];
    const note = async (
      key: string,
      f: () => Promise<string | undefined>,
      after?: (v: string) => Promise<void>,
    ) => {
      try {
        const v = await f();
        if (v === undefined) {
          await this.#o.state.observe(key, undefined, 'not found');
          errors.push(`${key}: not found`);
          return;
        }
        if (await this.#o.state.observe(key, v)) {
          changed.push(key);
          await after?.(v);
        }
      } catch (e) {
        const msg = (e as Error).message;
        errors.push(`${key}: ${msg}`);
        this.#o.log.warn(`fleet: checking ${key}: ${msg}`);
        await this.#o.state.observe(key, undefined, msg);
      }
    };
    const runs = new Set<string>();
    const builders = new Set<string>();
    const repos = new Set<string>();
    for (const d of fleet.images) {
      if (d.watchedRunImage) runs.add(d.watchedRunImage);
      if (d.builder && isWatchedBuilder(d.builder)) builders.add(d.builder);
      if ('git' in d.source) repos.add(JSON.stringify([d.source.git, d.source.ref]));
    }
    for (const r of Object.values(fleet.runImages)) runs.add(r);
    for (const b of Object.values(fleet.builders)) builders.add(b);
    for (const r of runs) tasks.push(() => note(keys.run(r), () => this.#o.head(r)));
    for (const b of builders)
      tasks.push(() =>
        note(
          keys.builder(b),
          () => this.#o.head(b),
          async () => {
            await this.#o.state.observe(keys.buildpacks(b), JSON.stringify(await this.#o.buildpacks(b)));
          },
        ),
      );
    for (const r of repos) {
      const [url, ref] = JSON.parse(r) as [string, string];
      tasks.push(() => note(keys.git(url, ref), () => this.#o.git.lsRemote(url, ref)));
    }
    await runLimited(tasks, 8);
    return { changed, errors };
  }

  /** checkImage re-reads the watched images of one repository (a registry notification named it). */
  async checkImage(fleet: Fleet, repository: string): Promise<Checked> {
    const match = (ref: string) => sameRepository(ref, repository);
    const sub: Fleet = {
      ...fleet,
      images: fleet.images.filter(
        (d) => (d.watchedRunImage && match(d.watchedRunImage)) || (d.builder && match(d.builder)),
      ),
      runImages: Object.fromEntries(Object.entries(fleet.runImages).filter(([, r]) => match(r))),
      builders: Object.fromEntries(Object.entries(fleet.builders).filter(([, r]) => match(r))),
    };
    return this.checkAll({ ...sub, images: sub.images.map((d) => ({ ...d, source: { path: '/' } })) });
  }

  /** checkGit re-reads the refs of one repository URL (a git webhook named it). */
  async checkGit(fleet: Fleet, matches: (url: string) => boolean): Promise<Checked> {
    const images = fleet.images.filter((d) => 'git' in d.source && matches(d.source.git));
    return this.checkAll({
      ...fleet,
      runImages: {},
      builders: {},
      images: images.map((d) => ({ ...d, watchedRunImage: undefined, builder: undefined })),
    });
  }
}

/** watchedRefs lists the image references the fleet watches (run images and builders). */
export function watchedRefs(fleet: Fleet): string[] {
  const out = new Set([...Object.values(fleet.runImages), ...Object.values(fleet.builders)]);
  for (const d of fleet.images) {
    if (d.watchedRunImage) out.add(d.watchedRunImage);
    if (d.builder && isWatchedBuilder(d.builder)) out.add(d.builder);
  }
  return [...out];
}

/** A builder is watched when it is a registry reference (the default embedded builder is not). */
export function isWatchedBuilder(ref: string): boolean {
  return /[/:@]/.test(ref) && !ref.startsWith('oci:') && !ref.startsWith('docker-archive:');
}

/** sameRepository tells whether reference `ref` names `repository` (its path, without host or tag). */
export function sameRepository(ref: string, repository: string): boolean {
  try {
    return parseReference(ref).repository === repository;
  } catch {
    // Not a registry reference: it cannot be the pushed repository.
    return false;
  }
}

/** desiredInputs are the inputs an image should have now; undefined while something is unknown. */
export function desiredInputs(
  d: ImageDeclaration,
  all: ReadonlyMap<string, Observation>,
): Inputs | undefined {
  // A thing whose checks have only failed so far is recorded with an empty value: not known.
  const obs = { get: (k: string) => ((v) => (v?.value ? v : undefined))(all.get(k)) };
  const run = d.watchedRunImage ? obs.get(keys.run(d.watchedRunImage)) : undefined;
  if (d.watchedRunImage && run === undefined) return undefined;
  const watchBuilder = d.builder !== undefined && isWatchedBuilder(d.builder);
  const builder = watchBuilder ? obs.get(keys.builder(d.builder!)) : undefined;
  if (watchBuilder && builder === undefined) return undefined;
  const bps = watchBuilder ? obs.get(keys.buildpacks(d.builder!)) : undefined;
  const commit = 'git' in d.source ? obs.get(keys.git(d.source.git, d.source.ref)) : undefined;
  if ('git' in d.source && commit === undefined) return undefined;
  const trigger = obs.get(keys.trigger(d.name));
  return {
    declHash: d.hash,
    ...(run ? { runImage: run.value } : {}),
    ...(builder ? { builder: builder.value } : {}),
    ...(bps ? { buildpacks: JSON.parse(bps.value) as string[] } : {}),
    ...(commit ? { commit: commit.value } : {}),
    ...(trigger ? { trigger: trigger.value } : {}),
  };
}

/** decide names the reasons an image needs work for, and whether a rebase is enough. */
export function decide(
  d: ImageDeclaration,
  last: Inputs | undefined,
  want: Inputs,
): { reasons: Reason[]; kind: JobKind } | undefined {
  const reasons: Reason[] = [];
  if (last === undefined || last.declHash !== want.declHash) reasons.push('CONFIG');
  else {
    if (want.commit !== last.commit) reasons.push('COMMIT');
    if (want.builder !== last.builder)
      reasons.push(
        canonicalJson(want.buildpacks ?? []) !== canonicalJson(last.buildpacks ?? [])
          ? 'BUILDPACK'
          : 'BUILDER',
      );
    if (want.runImage !== last.runImage) reasons.push('STACK');
    if (want.trigger !== last.trigger) reasons.push('TRIGGER');
  }
  if (reasons.length === 0) return undefined;
  const kind: JobKind = reasons.length === 1 && reasons[0] === 'STACK' && d.rebase ? 'rebase' : 'build';
  return { reasons, kind };
}

/** jobKey is the identity of a job: the same image, kind and inputs never run twice. */
export function jobKey(image: string, kind: JobKind, inputs: Inputs): string {
  return createHash('sha256').update(canonicalJson({ image, kind, inputs })).digest('hex');
}

/**
 * reconcile queues the work the observations call for; returns how many jobs it queued. `when`
 * stamps a job with the time its cause was first seen (metrics: push to patched).
 */
export async function reconcile(state: FleetState, log: Logger): Promise<number> {
  const images = (await state.images()).filter((i) => i.managed);
  if (images.length === 0) return 0;
  const obs = await state.observations();
  let queued = 0;
  for (const img of images) {
    const want = desiredInputs(img.decl, obs);
    if (want === undefined) continue;
    const what = decide(img.decl, img.inputs, want);
    if (what === undefined) continue;
    const key = jobKey(img.name, what.kind, want);
    if (
      await state.enqueue({
        image: img.name,
        ...what,
        inputs: want,
        key,
        observed: causeSeen(img, what.reasons, obs),
      })
    ) {
      queued++;
      log.info(`fleet: queued ${what.kind} of ${img.name} (${what.reasons.join(',')})`);
    }
  }
  return queued;
}

function causeSeen(
  img: ImageState,
  reasons: readonly Reason[],
  obs: ReadonlyMap<string, Observation>,
): number | undefined {
  const d = img.decl;
  const times: number[] = [];
  if (reasons.includes('STACK') && d.watchedRunImage)
    times.push(obs.get(keys.run(d.watchedRunImage))?.since ?? 0);
  if (reasons.includes('COMMIT') && 'git' in d.source)
    times.push(obs.get(keys.git(d.source.git, d.source.ref))?.since ?? 0);
  if ((reasons.includes('BUILDER') || reasons.includes('BUILDPACK')) && d.builder)
    times.push(obs.get(keys.builder(d.builder))?.since ?? 0);
  const t = times.filter((x) => x > 0);
  return t.length ? Math.min(...t) : undefined;
}

const builderLabel = z.looseObject({
  buildpacks: z.array(z.looseObject({ id: z.string(), version: z.string() })).nullish(),
});

/** buildpacksOfLabel reads `id@version` of the builder metadata label (sorted; [] when unreadable). */
export function buildpacksOfLabel(raw: string | undefined): string[] {
  if (raw === undefined) return [];
  try {
    const r = builderLabel.safeParse(JSON.parse(raw));
    return r.success ? (r.data.buildpacks ?? []).map((b) => `${b.id}@${b.version}`).sort() : [];
  } catch {
    // A builder label that is not JSON names no buildpacks: every change is then BUILDER.
    return [];
  }
}

async function runLimited(tasks: readonly (() => Promise<void>)[], n: number): Promise<void> {
  let i = 0;
  const next = async (): Promise<void> => {
    while (i < tasks.length) await tasks[i++]!();
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, next));
}
