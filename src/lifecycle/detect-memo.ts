import { createHash } from 'node:crypto';
import {
  constants,
  createReadStream,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  type Stats,
} from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PLATFORM_API } from '../cnb/api.ts';
import type { Order } from '../cnb/buildpack-toml.ts';
import { readGroupToml } from '../cnb/group-toml.ts';
import { readPlanToml } from '../cnb/plan-toml.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import type { Logger } from '../internal/log.ts';
import type { SourceListing } from '../layers/source-listing.ts';
import { type DetectResult, logGroup } from './detect.ts';
import type { PhaseOptions } from './phase-context.ts';

// Detection as a function of its inputs. bin/detect is specified to decide from the app, the
// platform directory and its environment alone (it writes nothing but its plan), so when none of
// those changed since the last build — same builder image (build image, buildpacks, order), same
// app source, same platform files, same environment and mounts — running every bin/detect again
// can only repeat the same group and plan. A no-op rebuild then skips starting one interpreter per
// buildpack (the largest cost left in it). Like BuildKit's cache of a RUN step, the key holds the
// declared inputs only: a bin/detect that consulted the network or the clock would be taken at its
// previous word; `--clear-cache` detects afresh.
//
// The app counts by its source listing (see SourceListing: git's index check); files changed just
// before the copy are compared by content too. The memo is one JSON document next to the cache,
// replaced by rename; an unreadable one is a miss.

/** Bump when kiln's detect phase changes how a group or plan comes out of the same runs. */
const FORMAT = 'kiln-detect-memo-1';

/** Mounted trees larger than this are not hashed: such builds always run detect. */
const MAX_HASHED_BYTES = 64 * 1024 * 1024;
const MAX_HASHED_ENTRIES = 4096;

/** What decides a detection, besides the app (which is compared separately, see above). */
export interface DetectMemoInputs {
  /** The builder image's digest: its build image, buildpacks and order. */
  readonly builderDigest: string;
  /** The order actually tried (with project.toml's pre/post buildpacks). */
  readonly order: Order;
  readonly phase: PhaseOptions;
  /** The copied app source (copyAppSource's listing). */
  readonly app: SourceListing;
}

interface MemoDocument {
  readonly key: string;
  /** Content digests of the app files that were "recent" when recorded (path -> sha256). */
  readonly recent: Readonly<Record<string, string>>;
  readonly groupToml: string;
  readonly planToml: string;
}

/** DetectMemo keeps the last detection of one cache (e.g. one image's builds). */
export class DetectMemo {
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  /**
   * detect returns the remembered detection when `inputs` are those it was recorded under (unless
   * `fresh`), else runs `run` (the detect phase, which writes group.toml and plan.toml into the
   * layers dir) and remembers its result. Remembering is best effort.
   */
  async detect(
    inputs: DetectMemoInputs,
    opts: { readonly fresh: boolean; readonly log: Logger },
    run: () => Promise<DetectResult>,
  ): Promise<DetectResult> {
    const { appDir, layersDir } = inputs.phase;
    const key = await DetectMemo.key(inputs);
    const reused = key && !opts.fresh ? await this.reuse(key, appDir, layersDir) : undefined;
    if (reused) {
      opts.log.info(
        "Reusing the previous build's detection: app, builder, platform and environment unchanged (--clear-cache detects afresh)",
      );
      opts.log.info(`${reused.group.length} buildpacks participating`);
      logGroup(opts.log, reused.group);
      return reused;
    }
    const result = await run();
    if (key)
      await this.record(key, inputs.app, appDir, layersDir).catch((e) =>
        opts.log.debug(`Detection not remembered: ${(e as Error).message}`),
      );
    return result;
  }

  /**
   * key derives the memo key of a detection, or undefined when an input is too large to hash
   * (then detection always runs).
   */
  static async key(i: DetectMemoInputs): Promise<string | undefined> {
    const o = i.phase;
    const mounts: unknown[] = [];
    for (const m of o.extraMounts ?? []) {
      const content = await treeDigest(m.src);
      if (content === undefined) return undefined;
      mounts.push([m.dst, m.readonly ?? false, content]);
    }
    const platform = await treeDigest(o.platformDir);
    if (platform === undefined) return undefined;
    const doc = {
      format: FORMAT,
      platformApi: String(o.platformApi ?? PLATFORM_API),
      builder: i.builderDigest,
      order: i.order,
      env: sorted(o.baseEnv),
      extraEnv: sorted(o.extraEnv ?? {}),
      target: o.target,
      execEnv: o.execEnv ?? null,
      // The mode and the allowed host ports, not the per-build namespace paths.
      network: typeof o.network === 'object' ? { mode: o.network.mode, allow: o.network.allowed } : o.network,
      user: [o.uid, o.gid],
      limits: o.limits ?? null,
      timeoutMs: o.timeoutMs ?? null,
      sandboxPaths: o.sandboxPaths ?? null,
      platform,
      mounts,
      app: i.app.fingerprint,
    };
    return `sha256:${createHash('sha256').update(JSON.stringify(doc)).digest('hex')}`;
  }

  /**
   * reuse writes the recorded group.toml and plan.toml into `layersDir` and returns them when the
   * memo was recorded under `key` and the recent app files (in `appDir`, the copy detect would
   * see) still have the recorded content. Returns undefined otherwise.
   */
  async reuse(key: string, appDir: string, layersDir: string): Promise<DetectResult | undefined> {
    let doc: MemoDocument;
    try {
      doc = JSON.parse(await readFile(this.#file, 'utf8')) as MemoDocument;
    } catch {
      // The detect memo is a cache: unreadable or corrupt, detection simply runs.
      return undefined;
    }
    if (doc.key !== key || typeof doc.groupToml !== 'string' || typeof doc.planToml !== 'string')
      return undefined;
    for (const [rel, digest] of Object.entries(doc.recent ?? {}))
      if ((await fileDigest(path.join(appDir, rel))) !== digest) return undefined;
    const groupPath = path.join(layersDir, 'group.toml');
    const planPath = path.join(layersDir, 'plan.toml');
    await writeFileAtomic(groupPath, doc.groupToml);
    await writeFileAtomic(planPath, doc.planToml);
    try {
      const [group, plan] = await Promise.all([readGroupToml(groupPath), readPlanToml(planPath)]);
      return { group: group.group, plan, runs: new Map() };
    } catch {
      return undefined; // written by another kiln version? detect afresh (it rewrites both files)
    }
  }

  /** record keeps the detection whose group.toml and plan.toml are in `layersDir` under `key`. */
  async record(key: string, app: SourceListing, appDir: string, layersDir: string): Promise<void> {
    const recent: Record<string, string> = {};
    for (const rel of app.recent) {
      const d = await fileDigest(path.join(appDir, rel));
      if (d === undefined) return; // gone meanwhile: nothing worth remembering
      recent[rel] = d;
    }
    const doc: MemoDocument = {
      key,
      recent,
      groupToml: await readFile(path.join(layersDir, 'group.toml'), 'utf8'),
      planToml: await readFile(path.join(layersDir, 'plan.toml'), 'utf8'),
    };
    await writeFileAtomic(this.#file, JSON.stringify(doc));
  }
}

function sorted(env: Readonly<Record<string, string | undefined>>): [string, string][] {
  return Object.entries(env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** fileDigest is the sha256 of a regular file's content, undefined when it is not one. */
async function fileDigest(file: string): Promise<string | undefined> {
  try {
    if (!(await lstat(file)).isFile()) return undefined;
    const h = createHash('sha256');
    await pipeline(createReadStream(file), h);
    return h.digest('hex');
  } catch {
    // A file that cannot be hashed makes no memo key: detection runs.
    return undefined;
  }
}

/**
 * treeDigest hashes a file or directory tree by names, modes, link targets and content; undefined
 * when it cannot be read or is larger than MAX_HASHED_ENTRIES / MAX_HASHED_BYTES (e.g. a host
 * directory mounted into the sandbox), found out by listing before any content is read.
 */
async function treeDigest(root: string): Promise<string | undefined> {
  // Synchronous calls: these trees are small (a platform dir, a CA bundle) and kiln waits for the
  // key anyway; a thread-pool round trip per lstat, readdir and read cost more than the work.
  const entries: { abs: string; rel: string; st: Stats }[] = [];
  let bytes = 0;
  const list = (abs: string, rel: string): boolean => {
    const st = lstatSync(abs);
    entries.push({ abs, rel, st });
    if (st.isFile()) bytes += st.size;
    if (entries.length > MAX_HASHED_ENTRIES || bytes > MAX_HASHED_BYTES) return false;
    if (st.isDirectory())
      for (const name of readdirSync(abs).sort())
        if (!list(path.join(abs, name), `${rel}/${name}`)) return false;
    return true;
  };
  try {
    if (!list(root, '')) return undefined;
    const h = createHash('sha256');
    for (const { abs, rel, st } of entries) {
      h.update(`${rel}\0${st.mode}\0`);
      if (st.isSymbolicLink()) h.update(readlinkSync(abs));
      else if (st.isFile()) h.update(readFileSync(abs, { flag: constants.O_RDONLY | constants.O_NOFOLLOW }));
      h.update('\n');
    }
    return h.digest('hex');
  } catch {
    // A tree that cannot be hashed makes no memo key: detection runs.
    return undefined;
  }
}
