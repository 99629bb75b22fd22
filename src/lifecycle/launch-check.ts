import { createHash } from 'node:crypto';
import path from 'node:path';
import { ApiVersion } from '../cnb/api.ts';
import { escapeId } from '../cnb/ids.ts';
import { applyEnvOp, type LaunchBuildpack, launchEnvOps } from '../cnb/launch-env.ts';
import type { LifecycleMetadata } from '../cnb/lifecycle-metadata.ts';
import { type MetadataProcess, readMetadataToml } from '../cnb/metadata.ts';
import { KilnError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import { openFileInRootIfExists } from '../internal/safe-read.ts';
import { processNeedsShell } from '../launcher/index.ts';
import { ElfFormatError, isElfMagic, parseElf, withFileReader } from '../layers/elf.ts';
import type { Image, Layer } from '../oci/image.ts';
import type { ExportResult } from './export.ts';
import { APP_DIR, LAYERS_DIR } from './export-config.ts';
import { LaunchCheckCache } from './launch-cache.ts';
import { type FileTree, HostTree, ImageView, ListedTree, type Resolved } from './launch-fs.ts';
import { type HintSources, type Miss, missLine, runImageHints, runImageIndex } from './launch-hints.ts';
import {
  type ElfRecord,
  type LayerScan,
  parseShebang,
  type ScriptRecord,
  scanEntries,
  scanTar,
} from './launch-scan.ts';
import type { LayerContent } from './layer-reuse.ts';

// The launch check: before the image is written, every executable a process can start (its
// command found through the launch PATH, the `#!` interpreter of a script, `env`'s target) and
// every ELF file of a launch layer is checked against the app image's filesystem (run image +
// launch layers + app) as the kernel and glibc's loader would: the ELF interpreter exists, and
// each DT_NEEDED library is found through RPATH (inherited), LD_LIBRARY_PATH, RUNPATH, the
// ld.so.conf dirs (when the image has a loader cache) and the default dirs, `$ORIGIN` expanded.
// A miss fails the export with one line that says what is missing and, where the stack knows,
// which Debian package and which run-image flavour have it. The run image's own files are trusted
// to load (the stack made them together); a result is cached by the digests it depends on.

/** Bump when the check's rules change: cached passes of older rules no longer count. */
const RULES_VERSION = 'launch-check-3';

/** The shell `direct = false` processes run through (Buildpack API < 0.9); see processNeedsShell. */
export const PROCESS_SHELL = '/bin/sh';

// processNeedsShell (launcher/): a `direct = false` process runs through a shell, whatever its
// command names, so it needs PROCESS_SHELL on the run image.
export { processNeedsShell };

/** Per OCI architecture: ELF e_machine and the Debian multiarch triplet. */
const ARCHES: Readonly<Record<string, { machine: number; triplet: string }>> = {
  amd64: { machine: 62, triplet: 'x86_64-linux-gnu' },
  arm64: { machine: 183, triplet: 'aarch64-linux-gnu' },
  '386': { machine: 3, triplet: 'i386-linux-gnu' },
  arm: { machine: 40, triplet: 'arm-linux-gnueabihf' },
  ppc64le: { machine: 21, triplet: 'powerpc64le-linux-gnu' },
  s390x: { machine: 22, triplet: 's390x-linux-gnu' },
  riscv64: { machine: 243, triplet: 'riscv64-linux-gnu' },
};

/** Nested interpreters the kernel follows (BINPRM's recursion limit). */
const MAX_INTERP_DEPTH = 4;

/** Inputs of checkLaunch (everything the export phase already has). */
export interface LaunchCheckOptions {
  readonly layersDir: string;
  readonly appDir: string;
  /** Where the app sits in the image (`--workspace`); default APP_DIR. */
  readonly appPath?: string;
  /** The group (and kiln's own pseudo-buildpacks) in export order, with their Buildpack API. */
  readonly buildpacks: readonly { readonly id: string; readonly api?: string }[];
  /** The exported lifecycle metadata: launch layers and their diffIDs, the app layers. */
  readonly metadata: LifecycleMetadata;
  /** The export's walk of each layer dir (host path), to scan without walking again. */
  readonly contents: ReadonlyMap<string, LayerContent>;
  /** A layer the previous image had, by diffID (a launch layer kept without a directory). */
  readonly previousLayer: (diffID: string) => Layer | undefined;
  /** The processes (metadata.toml), read only when the check runs. */
  readonly processes: () => Promise<readonly MetadataProcess[]>;
  /** The app image's config env (the run image's, with the launcher's PATH). */
  readonly imageEnv: readonly string[];
  readonly runImage: { readonly image: Image; readonly name: string };
  /** Where a miss's Debian package and flavour are looked up. */
  readonly hints?: HintSources;
  readonly cache: LaunchCheckCache;
  readonly log: Logger;
}

/** The launch environment's search paths of one process. */
interface SearchEnv {
  readonly path: readonly string[];
  readonly ldPath: readonly string[];
}

/**
 * checkLaunch runs the check; it throws a KilnError (the export phase's exit code) naming the
 * first miss (the others go to debug lines).
 */
export async function checkLaunch(o: LaunchCheckOptions): Promise<void> {
  const cfg = await o.runImage.image.configFile();
  const arch = ARCHES[cfg.architecture];
  if (!arch) {
    o.log.debug(`launch check: no loader rules for architecture ${cfg.architecture}: skipped`);
    return;
  }
  const layers = launchLayers(o);
  // The config layer holds metadata.toml (processes, buildpacks) and env files live in the
  // layers: these digests name everything the check reads, except the app, which only matters
  // when a lookup went into /workspace (a command or library there); then the app's digests count.
  const base = {
    v: RULES_VERSION,
    run: await o.runImage.image.digest(),
    arch: cfg.architecture,
    layers: layers.map((l) => [l.mount, l.diffID]),
    config: o.metadata.config.sha,
    env: o.imageEnv,
  };
  const key = sha256Hex(JSON.stringify(base));
  const appKey = sha256Hex(JSON.stringify({ ...base, app: o.metadata.app.map((a) => a.sha) }));
  const passed = await o.cache.get('pass', key, isPass);
  if (passed && (!passed.app || (await o.cache.get('pass', appKey, isPass)))) {
    o.log.debug('launch check: passed before with these layers and this run image');
    return;
  }
  const processes = await o.processes();
  const lbps = launchBuildpacks(o, layers);
  const envOps = new Map<string, Awaited<ReturnType<typeof launchEnvOps>>>();
  envOps.set('', await launchEnvOps(lbps));
  for (const p of processes) envOps.set(p.type, await launchEnvOps(lbps, p.type));
  const index = await runImageIndex(o.runImage.image, o.cache);
  const mounts = new Map<string, FileTree>();
  const scans = new Map<string, IndexedScan>();
  for (const l of layers) {
    const scan = await layerScan(o, l);
    scans.set(l.mount, indexScan(scan));
    mounts.set(l.mount, new ListedTree(scan.nodes));
  }
  const app = new HostTree(o.appDir);
  const appPath = o.appPath ?? APP_DIR;
  mounts.set(appPath.slice(1), app);
  const view = new ImageView(new ListedTree(index.nodes), mounts);
  const defaultDirs = [`/lib/${arch.triplet}`, `/usr/lib/${arch.triplet}`, '/lib', '/usr/lib'];
  const checker = new Checker({
    view,
    scans,
    appDir: o.appDir,
    appPath,
    machine: arch.machine,
    systemDirs: [...(index.ldCache ? index.ldConf : []), ...defaultDirs],
    envOf: (type) => searchEnv(o.imageEnv, envOps.get(type) ?? []),
  });
  for (const p of processes) checker.process(p);
  checker.layers(layers);
  const misses = checker.misses;
  for (const m of misses)
    o.log.debug(`launch check: ${missLine(m, { runImage: o.runImage.name, shellFree: false })}`);
  for (const s of checker.skipped) o.log.debug(`launch check: skipped ${s}`);
  if (misses.length === 0) {
    await o.cache.put('pass', key, { app: app.touched });
    if (app.touched) await o.cache.put('pass', appKey, { app: true });
    return;
  }
  const hints = await runImageHints(
    misses[0]!,
    { index, name: o.runImage.name, arch: arch.triplet },
    o.hints,
    o.cache,
  );
  const more = misses.length > 1 ? ` (and ${misses.length - 1} more: see -v)` : '';
  throw new KilnError(`${missLine(misses[0]!, hints)}${more}`).inPhase('export');
}

/** A launch layer as the check sees it. */
interface LaunchLayer {
  readonly bp: string;
  readonly name: string;
  /** Its path in the image without the leading slash (`layers/<bp>/<name>`), the mount key. */
  readonly mount: string;
  readonly hostDir: string;
  readonly diffID: string;
}

function launchLayers(o: LaunchCheckOptions): LaunchLayer[] {
  const out: LaunchLayer[] = [];
  for (const bp of o.metadata.buildpacks ?? []) {
    for (const [name, l] of Object.entries(bp.layers ?? {})) {
      if (!l.launch || !l.sha) continue;
      const dir = `${escapeId(bp.key)}/${name}`;
      out.push({
        bp: bp.key,
        name,
        mount: `${LAYERS_DIR.slice(1)}/${dir}`,
        hostDir: path.join(o.layersDir, dir),
        diffID: l.sha,
      });
    }
  }
  return out;
}

/** launchBuildpacks is the launch env's input: each buildpack's launch layers, in name order. */
function launchBuildpacks(o: LaunchCheckOptions, layers: readonly LaunchLayer[]): LaunchBuildpack[] {
  return o.buildpacks.map((bp) => ({
    id: bp.id,
    api: ApiVersion.parse(bp.api ?? '0.12'),
    layers: layers
      .filter((l) => l.bp === bp.id)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((l) => ({ hostDir: l.hostDir, imageDir: `/${l.mount}` })),
  }));
}

/** searchEnv applies a process's launch env ops to the image env and splits its search paths. */
function searchEnv(imageEnv: readonly string[], ops: Awaited<ReturnType<typeof launchEnvOps>>): SearchEnv {
  const vars = new Map<string, string>();
  for (const kv of imageEnv) {
    const eq = kv.indexOf('=');
    if (eq > 0) vars.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  for (const op of ops) applyEnvOp(vars, op);
  const split = (v: string | undefined) => (v === undefined || v === '' ? [] : v.split(':'));
  return { path: split(vars.get('PATH')), ldPath: split(vars.get('LD_LIBRARY_PATH')) };
}

/** layerScan is a layer's scan: cached by diffID, else from the export's walk (or the previous image's layer). */
async function layerScan(o: LaunchCheckOptions, l: LaunchLayer): Promise<LayerScan> {
  const key = l.diffID.replace(/^sha256:/, '');
  const cached = await o.cache.get('layer', key, isLayerScan);
  if (cached) return cached;
  const content = o.contents.get(l.hostDir);
  let scan: LayerScan;
  if (content) scan = scanEntries(await content.entries(), l.mount);
  else {
    const layer = o.previousLayer(l.diffID);
    if (!layer)
      throw new KilnError(`launch check: layer ${l.bp}:${l.name} (${l.diffID}) cannot be read`).inPhase(
        'export',
      );
    scan = await scanTar(await layer.uncompressed(), l.mount);
  }
  await o.cache.put('layer', key, scan);
  return scan;
}

function isPass(v: unknown): v is { readonly app: boolean } {
  return typeof v === 'object' && v !== null && typeof (v as { app?: unknown }).app === 'boolean';
}

function isLayerScan(v: unknown): v is LayerScan {
  const s = v as LayerScan;
  return (
    typeof v === 'object' &&
    v !== null &&
    s.v === 2 &&
    Array.isArray(s.nodes) &&
    Array.isArray(s.elves) &&
    Array.isArray(s.scripts) &&
    Array.isArray(s.malformed)
  );
}

interface IndexedScan {
  readonly scan: LayerScan;
  readonly elves: ReadonlyMap<string, ElfRecord>;
  readonly scripts: ReadonlyMap<string, ScriptRecord>;
}

function indexScan(scan: LayerScan): IndexedScan {
  return {
    scan,
    elves: new Map(scan.elves.map((e) => [e.p, e])),
    scripts: new Map(scan.scripts.map((s) => [s.p, s])),
  };
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** What a resolved file is to the loader. */
type Facts =
  | { readonly kind: 'trusted' }
  | { readonly kind: 'elf'; readonly elf: ElfRecord }
  | { readonly kind: 'script'; readonly script: ScriptRecord }
  | { readonly kind: 'other' };

interface CheckerSetup {
  readonly view: ImageView;
  readonly scans: ReadonlyMap<string, IndexedScan>;
  readonly appDir: string;
  /** The app's place in the image. */
  readonly appPath: string;
  readonly machine: number;
  readonly systemDirs: readonly string[];
  readonly envOf: (type: string) => SearchEnv;
}

/** Checker walks executables and their libraries as the kernel and ld.so would, collecting misses. */
class Checker {
  readonly misses: Miss[] = [];
  readonly skipped: string[] = [];
  readonly #s: CheckerSetup;
  readonly #appFacts = new Map<string, Facts>();
  readonly #done = new Set<string>();
  /** Libraries found for some loader (their real paths). */
  readonly #loaded = new Set<string>();

  constructor(s: CheckerSetup) {
    this.#s = s;
  }

  #miss(m: Miss): void {
    if (!this.misses.some((x) => x.file === m.file && x.needs === m.needs)) this.misses.push(m);
  }

  /** process checks one process type's command (or its shell). */
  process(p: MetadataProcess): void {
    const subject = `process "${p.type}"`;
    const env = this.#s.envOf(p.type);
    const cwd = p['working-dir'] ?? this.#s.appPath;
    if (processNeedsShell(p)) {
      if (!this.#s.view.resolve(PROCESS_SHELL))
        this.#miss({
          subject,
          file: 'its command (direct = false: run through a shell)',
          needs: PROCESS_SHELL,
          kind: 'interpreter',
        });
      return;
    }
    const cmd = p.command[0];
    if (cmd === undefined || cmd === '') return;
    const found = this.#command(cmd, env, cwd);
    if (!found) {
      this.#miss({ subject, file: `executable "${cmd}"`, needs: cmd, kind: 'command', searched: env.path });
      return;
    }
    this.#exec(subject, found, env, cwd, 0);
  }

  /**
   * layers checks every ELF file of the launch layers with the launch env no process type adds
   * to: executables first, then the libraries none of them loaded (a library loaded by an
   * executable was checked with that executable's inherited RPATH, as the loader would load it).
   */
  layers(layers: readonly LaunchLayer[]): void {
    const env = this.#s.envOf('');
    for (const pass of ['executables', 'libraries'] as const)
      for (const l of layers) {
        const s = this.#s.scans.get(l.mount)!;
        for (const e of s.scan.elves) {
          if ((e.interp !== undefined) !== (pass === 'executables')) continue;
          const file = `/${l.mount}/${e.p}`;
          if (e.machine !== this.#s.machine) {
            this.skipped.push(`${file}: built for another machine (${e.machine})`);
            continue;
          }
          if (e.type !== 2 && e.type !== 3) continue;
          // A prebuilt for musl next to the glibc one (npm packages ship both) is never loaded here.
          if (e.interp === undefined && e.needed.some((x) => /^libc\.musl-/.test(x))) {
            this.skipped.push(`${file}: a library for musl`);
            continue;
          }
          const r = this.#s.view.resolve(file);
          if (r && !this.#loaded.has(r.path))
            this.#elf(`launch layer ${l.bp}:${l.name}`, r.path, e, env, this.#s.appPath, []);
        }
        // exec.d programs run before every process (or before one type's): scripts among them
        // need their interpreter as much as a process command does.
        if (pass === 'executables')
          for (const sc of s.scan.scripts)
            if (/^exec\.d\/[^/]+(\/[^/]+)?$/.test(sc.p))
              this.#script(
                `launch layer ${l.bp}:${l.name} (exec.d)`,
                `/${l.mount}/${sc.p}`,
                sc,
                env,
                this.#s.appPath,
                0,
              );
        if (pass === 'libraries')
          for (const m of s.scan.malformed)
            this.skipped.push(`/${l.mount}/${m.p}: not a well-formed ELF file (${m.why})`);
      }
  }

  #command(cmd: string, env: SearchEnv, cwd: string): Resolved | undefined {
    const file = (r: Resolved | undefined) => (r && r.node.t !== 'd' && r.node.t !== 'l' ? r : undefined);
    if (cmd.includes('/')) return file(this.#s.view.resolve(cmd, cwd));
    for (const dir of env.path) {
      const r = file(this.#s.view.resolve(path.posix.join(dir === '' ? '.' : dir, cmd), cwd));
      if (r?.node.t === 'x') return r;
    }
    return undefined;
  }

  #facts(r: Resolved): Facts {
    if (r.mount === '') return { kind: 'trusted' };
    if (r.mount === this.#s.appPath.slice(1)) return this.#appFile(r.rel);
    const s = this.#s.scans.get(r.mount);
    const elf = s?.elves.get(r.rel);
    if (elf) return { kind: 'elf', elf };
    const script = s?.scripts.get(r.rel);
    return script ? { kind: 'script', script } : { kind: 'other' };
  }

  /** #appFile reads an app file's ELF headers or `#!` line (links refused: the path is resolved). */
  #appFile(rel: string): Facts {
    const known = this.#appFacts.get(rel);
    if (known) return known;
    let facts: Facts = { kind: 'other' };
    try {
      const fd = openFileInRootIfExists(this.#s.appDir, rel);
      if (fd !== undefined)
        facts = withFileReader(fd, (r): Facts => {
          const head = r.read(0, 256);
          if (isElfMagic(head)) {
            const e = parseElf(r);
            const elf: ElfRecord = {
              p: rel,
              bits: e.bits,
              machine: e.machine,
              type: e.type,
              ...(e.interpreter !== undefined ? { interp: e.interpreter } : {}),
              needed: e.needed,
              runpath: e.runpath,
              rpath: e.rpath,
            };
            return { kind: 'elf', elf };
          }
          const s = parseShebang(head);
          return s ? { kind: 'script', script: { p: rel, ...s } } : { kind: 'other' };
        });
    } catch (e) {
      if (!(e instanceof ElfFormatError) && !(e instanceof KilnError)) throw e;
    }
    this.#appFacts.set(rel, facts);
    return facts;
  }

  #exec(subject: string, r: Resolved, env: SearchEnv, cwd: string, depth: number): void {
    if (depth > MAX_INTERP_DEPTH) return;
    const f = this.#facts(r);
    if (f.kind === 'elf') this.#elf(subject, r.path, f.elf, env, cwd, []);
    else if (f.kind === 'script') this.#script(subject, r.path, f.script, env, cwd, depth);
  }

  #script(subject: string, file: string, s: ScriptRecord, env: SearchEnv, cwd: string, depth: number): void {
    const interp = this.#s.view.resolve(s.interp, cwd);
    if (!interp || interp.node.t === 'd') {
      this.#miss({ subject, file, needs: s.interp, kind: 'interpreter' });
      return;
    }
    this.#exec(subject, interp, env, cwd, depth + 1);
    if (path.posix.basename(s.interp) !== 'env' || s.arg === undefined) return;
    const target = envTarget(s.arg);
    if (target === undefined) return;
    const found = this.#command(target, env, cwd);
    if (!found)
      this.#miss({ subject, file, needs: target, kind: 'command', via: s.interp, searched: env.path });
    else this.#exec(subject, found, env, cwd, depth + 1);
  }

  /**
   * #elf checks an ELF file's interpreter and, recursively through the libraries found in
   * layers or the app, its DT_NEEDED libraries. `inherited` are the RPATH dirs of its loaders.
   */
  #elf(
    subject: string,
    file: string,
    e: ElfRecord,
    env: SearchEnv,
    cwd: string,
    inherited: readonly string[],
  ): void {
    const key = `${file}\0${inherited.join(':')}\0${env.ldPath.join(':')}\0${cwd}`;
    if (this.#done.has(key)) return;
    this.#done.add(key);
    if (e.interp !== undefined && !this.#s.view.resolve(e.interp, cwd))
      this.#miss({ subject, file, needs: e.interp, kind: 'interpreter', loader: true });
    const origin = path.posix.dirname(file);
    const rpath = e.runpath.length ? [] : expand(e.rpath, origin);
    const dirs = [...rpath, ...inherited, ...env.ldPath, ...expand(e.runpath, origin), ...this.#s.systemDirs];
    for (const name of e.needed) {
      const lib = this.#library(name, dirs, e, cwd);
      if (!lib) {
        this.#miss({ subject, file, needs: name, kind: 'library' });
        continue;
      }
      if (lib.real) this.#loaded.add(lib.real);
      if (lib.elf) this.#elf(subject, lib.path, lib.elf, env, cwd, [...rpath, ...inherited]);
    }
  }

  /** #library finds a DT_NEEDED name as ld.so would: the first dir holding a loadable match. */
  #library(
    name: string,
    dirs: readonly string[],
    by: ElfRecord,
    cwd: string,
  ): { path: string; real?: string; elf?: ElfRecord } | undefined {
    const candidates = name.includes('/')
      ? [name]
      : dirs.map((d) => path.posix.join(d === '' ? '.' : d, name));
    for (const c of candidates) {
      const r = this.#s.view.resolve(c, cwd);
      if (!r || r.node.t === 'd') continue;
      const f = this.#facts(r);
      if (f.kind === 'trusted') return { path: c };
      // ld.so passes over a file of the wrong class or machine and keeps looking.
      if (f.kind === 'elf' && f.elf.bits === by.bits && f.elf.machine === by.machine)
        return { path: c, real: r.path, elf: f.elf };
    }
    return undefined;
  }
}

/** expand replaces $ORIGIN (and ${ORIGIN}) in RPATH/RUNPATH entries; empty entries mean the cwd. */
function expand(dirs: readonly string[], origin: string): string[] {
  return dirs.map((d) => d.replace(/\$\{ORIGIN\}|\$ORIGIN/g, origin));
}

/**
 * envTarget is the command `#!/usr/bin/env ARG` runs: Linux passes ARG as one argument, so
 * `env node` runs node, `env -S node --flag` splits it; anything else is one (odd) name.
 */
function envTarget(arg: string): string | undefined {
  if (!arg.startsWith('-')) return arg;
  const words = arg.replace(/^-S\s*|^--split-string=?\s*/, '').split(/\s+/);
  return words.find((w) => w !== '' && !w.startsWith('-') && !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
}

/** What the creator hands the check after the export phase assembled the image. */
export interface ExportedImageCheck {
  readonly layersDir: string;
  readonly appDir: string;
  readonly appPath?: string;
  readonly buildpacks: LaunchCheckOptions['buildpacks'];
  readonly exported: ExportResult;
  readonly runImage: { readonly image: Image; readonly name: string };
  readonly previousLayer: (diffID: string) => Layer | undefined;
  readonly hints?: HintSources;
  /** Where results are kept between builds; undefined: in memory only. */
  readonly cacheDir?: string;
  readonly log: Logger;
}

/** checkExportedImage runs checkLaunch over what the export phase produced. */
export async function checkExportedImage(x: ExportedImageCheck): Promise<void> {
  const started = performance.now();
  const cfg = await x.exported.image.configFile();
  await checkLaunch({
    layersDir: x.layersDir,
    appDir: x.appDir,
    ...(x.appPath ? { appPath: x.appPath } : {}),
    buildpacks: x.buildpacks,
    metadata: x.exported.metadata,
    contents: x.exported.contents,
    previousLayer: x.previousLayer,
    processes: async () =>
      (await readMetadataToml(path.join(x.layersDir, 'config', 'metadata.toml'))).processes,
    imageEnv: cfg.config?.Env ?? [],
    runImage: x.runImage,
    ...(x.hints ? { hints: x.hints } : {}),
    cache: new LaunchCheckCache(x.cacheDir),
    log: x.log,
  });
  x.log.debug(`launch check: passed in ${(performance.now() - started).toFixed(1)} ms`);
}
