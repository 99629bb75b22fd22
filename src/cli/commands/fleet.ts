import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { needsPassphrase } from '../../attest/keys.ts';
import { parseDuration } from '../../config/units.ts';
import { type ImageDeclaration, readFleetFile } from '../../fleet/declarations.ts';
import { Git } from '../../fleet/git.ts';
import { statusRows } from '../../fleet/page.ts';
import { buildpacksOfLabel, keys, Observer } from '../../fleet/reconcile.ts';
import { type BuildRequest, JobRunner, type RebaseAttestFn } from '../../fleet/runner.ts';
import { FleetServer, isLoopback } from '../../fleet/server.ts';
import { SqliteState } from '../../fleet/sqlite-state.ts';
import type { FleetState } from '../../fleet/state.ts';
import { Worker } from '../../fleet/worker.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import type { Logger } from '../../internal/log.ts';
import { parseReference } from '../../registry/reference.ts';
import type { Transports } from '../../transport/transports.ts';
import { type CliContext, createContext } from '../context.ts';
import { imageTransports, registryClient } from '../image-ref.ts';
import type { GlobalFlags } from '../settings.ts';
import { terminalSafe } from '../terminal-text.ts';

// `kiln fleet`: declarations (apply), the scheduler and embedded worker (serve), workers that
// scale out on PostgreSQL (worker), and what the fleet looks like (status, history, logs).

interface StateFlags {
  database?: string;
}

/** openState opens the fleet's state: --database (a postgres:// URL or a file), else the data dir's file. */
async function openState(ctx: CliContext, flags: StateFlags): Promise<FleetState> {
  const db = flags.database;
  if (db !== undefined && /^postgres(ql)?:\/\//.test(db)) {
    const { PgState } = await import('../../fleet/pg-state.ts');
    return PgState.connect(db);
  }
  if (db !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(db))
    throw new UsageError(`--database: expected postgres://… or a state file path`);
  return SqliteState.open(db ?? path.join(ctx.settings.dataDir, 'fleet', 'state.db'));
}

async function withState<T>(
  ctx: CliContext,
  flags: StateFlags,
  f: (s: FleetState) => Promise<T>,
): Promise<T> {
  const state = await openState(ctx, flags);
  try {
    return await f(state);
  } finally {
    await state.close();
  }
}

const dbOption = [
  '--database <url>',
  'fleet state: postgres://… (scale out with kiln fleet worker), or a state file (default: fleet/state.db under the kiln data dir)',
] as const;

/** The collaborators of serve and worker. */
function machinery(ctx: CliContext, state: FleetState, log: Logger) {
  const { settings } = ctx;
  // Signing keys' passphrase (KILN_PASSWORD / COSIGN_PASSWORD) never reaches a log of serve or worker.
  if (settings.signingPassphrase) ctx.redactor.add(settings.signingPassphrase);
  // The registry client's own debug lines go to the CLI's logger; the fleet's lines to `log`.
  const transports: Transports = imageTransports(settings, ctx.log);
  const client = registryClient(settings, ctx.log);
  const git = new Git({ env: settings.env });
  const head = async (ref: string) => {
    const r = parseReference(ref);
    const d = await client.repository(r).headManifest(r.digest ?? r.tag ?? 'latest');
    return d?.digest;
  };
  const buildpacks = async (ref: string) => {
    const img = await transports.parse(ref).read();
    return buildpacksOfLabel((await img.configFile()).config?.Labels?.['io.buildpacks.builder.metadata']);
  };
  const observer = new Observer({ state, head, buildpacks, git, log });
  const runner = new JobRunner({
    transports,
    git,
    tmpDir: settings.env.TMPDIR ?? tmpdir(),
    build: (r) => buildInProcess(ctx, r),
    attestRebase: attestRebase(ctx),
  });
  return { observer, runner, transports };
}

/**
 * buildInProcess runs `kiln build IMAGE --publish …` in this process: the build command's own
 * action (flags, checks, sandbox, publishing) on a program of its own with a context whose output
 * is the job's log. (A subprocess would add a Node start-up per build and a second place that
 * knows where the CLI lives; the build's own deadline and sandbox limits bound it either way.
 * main() itself cannot be imported here: when main.ts is the entry point it is still being
 * evaluated while serve runs.)
 */
async function buildInProcess(ctx: CliContext, r: BuildRequest): Promise<{ digest: string }> {
  const d = r.decl;
  const args = [
    ...ctx.settings.insecureRegistries.flatMap((h) => ['--insecure-registry', h]),
    'build',
    d.tag,
    '--publish',
    '--path',
    r.appDir,
    ...(r.builder ? ['--builder', r.builder] : []),
    ...(d.runImage ? ['--run-image', d.runImage] : []),
    ...Object.entries(d.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    ...d.bindings.flatMap((b) => ['--binding', b]),
    ...(d.cacheImage ? ['--cache-image', d.cacheImage] : []),
    // Signed, with provenance and SBOM referrers; the passphrase comes from this process's env.
    ...(d.signingKey ? ['--sign-key', d.signingKey] : []),
  ];
  await signingKeyUsable(ctx, d);
  const job = jobContext(ctx, r.log);
  const bctx = job.ctx;
  const program = new Command('kiln')
    .option('--insecure-registry <host>', 'plain HTTP registry', (v: string, p: string[] = []) => [...p, v])
    .exitOverride()
    .configureOutput({
      writeOut: (s) => bctx.stdout.write(s),
      writeErr: (s) => bctx.stderr.write(s),
      outputError: () => {},
    });
  program.hook('preAction', (_this, action) => bctx.init(action.optsWithGlobals() as GlobalFlags));
  (await import('./build.ts')).register(program, bctx);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    const msg = bctx.redactor.redact((e as Error).message);
    r.log(`ERROR: ${msg}`);
    throw new KilnError(`kiln build of ${d.name} failed: ${msg}`, { cause: e });
  } finally {
    job.flush();
  }
  const digest = /sha256:[0-9a-f]{64}/.exec(job.output())?.[0];
  if (digest === undefined) throw new KilnError(`kiln build of ${d.name} printed no digest`);
  return { digest };
}

/**
 * signingKeyUsable refuses a job whose declared key is encrypted while serve or the worker has no
 * passphrase in its environment: a service must fail the job, never prompt on its terminal.
 */
async function signingKeyUsable(ctx: CliContext, d: ImageDeclaration): Promise<void> {
  if (d.signingKey === undefined || ctx.settings.signingPassphrase !== undefined) return;
  let text: string;
  try {
    text = await readFile(d.signingKey, 'utf8');
  } catch (e) {
    throw new KilnError(`images.${d.name}.signing-key ${d.signingKey}: ${(e as Error).message}`);
  }
  if (needsPassphrase(text))
    throw new KilnError(
      `images.${d.name}.signing-key ${d.signingKey} is encrypted: set KILN_PASSWORD (or COSIGN_PASSWORD) in the environment of kiln fleet serve and workers`,
    );
}

/**
 * jobContext is a CLI context for one job: its log lines go to the job's log (through the
 * context's own redactor, which learns the key and passphrase when they are read), its output is
 * kept for the caller.
 */
function jobContext(ctx: CliContext, log: (line: string) => void) {
  let out = '';
  let partial = '';
  const stderr = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) log(l);
      cb();
    },
  });
  const stdout = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString('utf8');
      cb();
    },
  });
  const io = { stdout, stderr, env: { ...ctx.settings.env, CI: '1', NO_COLOR: '1' }, isTTY: false };
  return {
    ctx: createContext(io),
    output: () => out,
    flush: () => {
      if (partial) log(partial);
      partial = '';
    },
  };
}

/**
 * attestRebase is `kiln rebase --sign-key`'s supply-chain step for a fleet rebase: the key is
 * read (and its passphrase taken from this process's environment) before the rebased image is
 * written; `finish` attaches the rebase provenance, the merged SBOM and the signatures.
 */
const attestRebase =
  (ctx: CliContext): RebaseAttestFn =>
  async (r) => {
    await signingKeyUsable(ctx, r.decl);
    const job = jobContext(ctx, r.log);
    job.ctx.init({ insecureRegistry: [...ctx.settings.insecureRegistries] });
    const { loadSigner } = await import('../supply-chain.ts');
    const { startRebaseAttestation } = await import('../rebase-attest.ts');
    const fail = (e: unknown, what: string) =>
      new KilnError(
        `${what} of ${r.decl.name} (signing-key ${r.decl.signingKey}) failed: ${job.ctx.redactor.redact((e as Error).message)}`,
        { cause: e },
      );
    let signer: Awaited<ReturnType<typeof loadSigner>>;
    try {
      signer = await loadSigner(job.ctx, r.decl.signingKey);
    } catch (e) {
      throw fail(e, 'reading the signing key');
    }
    const attestation = startRebaseAttestation(
      job.ctx,
      { signKey: r.decl.signingKey },
      { app: r.app, appName: r.appName, runImage: r.runImage, force: false },
      signer,
    )!;
    return {
      async finish(target, result, images) {
        try {
          await attestation.finish([target], result, images);
        } catch (e) {
          throw fail(e, 'signing the rebase');
        } finally {
          job.flush();
        }
      },
    };
  };

// A duration as the fleet file writes it (30s, 5m), or milliseconds (500, 500ms).
const ms = (v: string) => {
  const m = /^(\d+)(?:ms)?$/.exec(v.trim());
  const n = m ? Number(m[1]) : parseDuration(v);
  if (n === undefined || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`--poll-interval ${v}: expected a duration such as 30s or 5m, or milliseconds`);
  return n;
};

/** register adds `kiln fleet …`. */
export function register(program: Command, ctx: CliContext): void {
  // Names, errors and logs come from files, registries and buildpacks: no control sequences.
  const out = (s: string) => ctx.stdout.write(terminalSafe(s));
  const fleet = program
    .command('fleet')
    .description('keep a fleet of app images built and patched (declarations, scheduler, workers)');

  fleet
    .command('apply')
    .description('validate a fleet file and record it (images no longer in it stop being managed)')
    .argument('<file>', 'fleet file (TOML)')
    .option(...dbOption)
    .action(async (file: string, flags: StateFlags) => {
      const decl = await readFleetFile(path.resolve(file));
      const applied = await withState(ctx, flags, (s) => s.apply(decl));
      // serve and the workers read the keys (maybe on other machines): a warning, not an error.
      for (const d of decl.images)
        if (d.signingKey !== undefined)
          await access(d.signingKey, constants.R_OK).catch((e: Error) =>
            ctx.log.warn(
              `fleet: images.${d.name}.signing-key ${d.signingKey} is not readable here (serve and workers need it): ${e.message}`,
            ),
          );
      for (const n of applied.added) ctx.log.info(`fleet: managing ${n}`);
      for (const n of applied.changed) ctx.log.info(`fleet: declaration of ${n} changed`);
      for (const n of applied.removed) ctx.log.info(`fleet: no longer managing ${n}`);
      ctx.stdout.write(
        `${decl.images.length} images declared: ${applied.added.length} added, ${applied.changed.length} changed, ${applied.removed.length} removed\n`,
      );
    });

  fleet
    .command('status')
    .description('each image: digest, run image (newest?), last build reason and result, OS patch age')
    .option('--json', 'print JSON')
    .option(...dbOption)
    .action(async (flags: StateFlags & { json?: boolean }) => {
      await withState(ctx, flags, async (s) => {
        const now = Date.now();
        const rows = statusRows(await s.images(), await s.observations(), now).filter((r) => r.managed);
        if (flags.json) {
          // Watched things whose last check failed (an unreachable registry, a missing ref).
          const watch = [...(await s.observations()).values()]
            .filter((o) => o.error !== undefined && !o.key.startsWith('trigger:'))
            .map((o) => ({ key: o.key, error: o.error, checked: o.checked }));
          ctx.stdout.write(
            `${JSON.stringify({ images: rows, queue: await s.queueDepth(), watch }, null, 2)}\n`,
          );
          return;
        }
        for (const r of rows)
          out(
            `${r.name}\t${r.digest ?? '-'}\trun ${r.runImage ?? '-'}${r.runImageNewest === false ? ' (behind)' : ''}\t${(r.lastReasons ?? []).join(',') || '-'}\t${r.lastResult ?? '-'}${r.lastError ? `: ${r.lastError}` : ''}\n`,
          );
        for (const o of (await s.observations()).values())
          if (o.error !== undefined && !o.key.startsWith('trigger:')) out(`watch ${o.key}: ${o.error}\n`);
      });
    });

  fleet
    .command('history')
    .description("an image's builds: reason, result, inputs, digests, timings")
    .argument('<image>', 'image name (a key of [images])')
    .option('--json', 'print JSON')
    .option(...dbOption)
    .action(async (image: string, flags: StateFlags & { json?: boolean }) => {
      await withState(ctx, flags, async (s) => {
        if ((await s.image(image)) === undefined)
          throw new UsageError(`fleet: no image "${image}" (see kiln fleet status)`);
        const jobs = await s.history(image);
        if (flags.json) {
          ctx.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
          return;
        }
        for (const j of jobs)
          out(
            `${j.id}\t${j.kind}\t${j.reasons.join(',')}\t${j.state}\t${j.digest ?? '-'}\t${j.started && j.finished ? `${((j.finished - j.started) / 1000).toFixed(1)}s` : '-'}${j.error ? `\t${j.error}` : ''}\n`,
          );
      });
    });

  fleet
    .command('logs')
    .description('the log of one build (a number from kiln fleet history)')
    .argument('<build>', 'build number')
    .option(...dbOption)
    .action(async (build: string, flags: StateFlags) => {
      if (!/^\d{1,12}$/.test(build)) throw new UsageError(`fleet logs: "${build}" is not a build number`);
      await withState(ctx, flags, async (s) => {
        const job = await s.job(Number(build));
        if (job === undefined) throw new UsageError(`fleet: no build ${build}`);
        ctx.stdout.write(terminalSafe(job.log, true));
      });
    });

  fleet
    .command('rebuild')
    .description('rebuild an image now (reason TRIGGER)')
    .argument('<image>', 'image name (a key of [images])')
    .option(...dbOption)
    .action(async (image: string, flags: StateFlags) => {
      await withState(ctx, flags, async (s) => {
        const i = await s.image(image);
        if (i === undefined || !i.managed) throw new UsageError(`fleet: no managed image "${image}"`);
        await s.observe(keys.trigger(image), `${Date.now()}-${process.pid}`);
        ctx.log.info(`fleet: rebuild of ${image} requested`);
      });
    });

  fleet
    .command('serve')
    .description(
      'schedule (registry and git hooks, polling) and build; serves /healthz, /metrics and a read-only page',
    )
    .option('--listen <host:port>', 'address of the HTTP server', '127.0.0.1:8088')
    .option(...dbOption)
    .option(
      '--webhook-secret-file <file>',
      'file holding the shared secret of git hooks (GitHub, GitLab, Gitea)',
    )
    .option('--registry-token-file <file>', 'file holding the bearer token registry notifications must carry')
    .option(
      '--token-file <file>',
      'file holding the token of the page (required unless listening on loopback)',
    )
    .option(
      '--poll-interval <duration>',
      'poll interval, e.g. 30s, 5m or 1000 (milliseconds) (default: the fleet file poll-interval)',
      ms,
    )
    .option('--workers <n>', 'jobs this process runs at once (0: schedule only)', '1')
    .option('--log-format <format>', 'text, or json: one JSON object per line', 'text')
    .action(async (flags: StateFlags & ServeFlags) => {
      await serve(ctx, flags);
    });

  fleet
    .command('worker')
    .description('take jobs from the fleet state (PostgreSQL) and run them; any number may run, anywhere')
    .option(...dbOption)
    .option('--workers <n>', 'jobs this process runs at once', '1')
    .option(
      '--lease <seconds>',
      "how long a job stays this worker's without a sign of life (renewed every third of it)",
      '60',
    )
    .action(async (flags: StateFlags & { workers: string; lease: string; logFormat?: string }) => {
      const log = serviceLog(ctx, flags.logFormat);
      const lease = Number(flags.lease);
      if (!Number.isFinite(lease) || lease < 1)
        throw new UsageError(`--lease ${flags.lease}: expected seconds >= 1`);
      const state = await openState(ctx, flags);
      const { runner } = machinery(ctx, state, log);
      const worker = new Worker({
        state,
        runner,
        id: `${hostname()}:${process.pid}`,
        log,
        concurrency: Math.max(1, Number(flags.workers) || 1),
        leaseMs: lease * 1000,
      });
      worker.start();
      log.info(`fleet: worker ${hostname()}:${process.pid} started`);
      await untilSignal();
      log.info('fleet: stopping: finishing or handing back running jobs');
      await worker.stop();
      await state.close();
    });
}

interface ServeFlags {
  listen: string;
  logFormat?: string;
  webhookSecretFile?: string;
  registryTokenFile?: string;
  tokenFile?: string;
  pollInterval?: number;
  workers: string;
}

async function readSecret(
  file: string | undefined,
  what: string,
  ctx: CliContext,
): Promise<string | undefined> {
  if (file === undefined) return undefined;
  let s: string;
  try {
    s = (await readFile(file, 'utf8')).trim();
  } catch (e) {
    throw new UsageError(`${what} ${file}: ${(e as Error).message}`);
  }
  if (s.length < 8) throw new UsageError(`${what} ${file}: expected a secret of at least 8 characters`);
  ctx.redactor.add(s);
  return s;
}

async function serve(ctx: CliContext, flags: StateFlags & ServeFlags): Promise<void> {
  const m = /^(.*):(\d{1,5})$/.exec(flags.listen);
  if (!m) throw new UsageError(`--listen ${flags.listen}: expected HOST:PORT`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const pageToken = await readSecret(flags.tokenFile, '--token-file', ctx);
  if (pageToken === undefined && !isLoopback(host))
    throw new UsageError(`--listen ${flags.listen} is not loopback: the page needs --token-file`);
  const log = serviceLog(ctx, flags.logFormat);
  const state = await openState(ctx, flags);
  const { observer, runner, transports } = machinery(ctx, state, log);
  const n = Number(flags.workers);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`--workers ${flags.workers}: expected a whole number`);
  let server: FleetServer | undefined;
  const worker =
    n > 0
      ? new Worker({
          state,
          runner,
          id: `${hostname()}:${process.pid}`,
          log,
          concurrency: n,
          onFinished: (job, ok, t) => server?.finished(job, ok, t),
        })
      : undefined;
  const gitSecret = await readSecret(flags.webhookSecretFile, '--webhook-secret-file', ctx);
  const registryToken = await readSecret(flags.registryTokenFile, '--registry-token-file', ctx);
  server = new FleetServer({
    state,
    observer,
    log,
    ...(worker ? { worker } : {}),
    host,
    port: Number(m[2]),
    ...(gitSecret ? { gitSecret } : {}),
    ...(registryToken ? { registryToken } : {}),
    ...(pageToken ? { pageToken } : {}),
    ...(flags.pollInterval ? { pollMs: flags.pollInterval } : {}),
    ...('isScheduler' in state
      ? { isScheduler: () => (state as { isScheduler(): Promise<boolean> }).isScheduler() }
      : {}),
    sbom: (tag, digest) => sbomSummary(transports, tag, digest),
  });
  const port = await server.start();
  log.info(`fleet: serving on http://${host.includes(':') ? `[${host}]` : host}:${port}/`);
  ctx.stdout.write(`listening ${host}:${port}\n`);
  await untilSignal();
  log.info('fleet: stopping: finishing or handing back running jobs');
  await server.stop();
  await state.close();
}

/**
 * sbomSummary is an image's software for its page, as `kiln inspect` reports it: base, buildpacks
 * and the SBOM layer's counts by ecosystem (config and the small SBOM layer only; remembered by
 * digest, which never changes).
 */
async function sbomSummary(transports: Transports, tag: string, digest: string): Promise<string[]> {
  const cached = summaries.get(digest);
  if (cached) return cached;
  const { inspectImage } = await import('../../inspect/inspect.ts');
  const r = parseReference(tag);
  const ref = `${r.registry}/${r.repository}@${digest}`;
  const report = await inspectImage(await transports.parse(ref).read(), { reference: ref, sbom: true });
  const out = [
    `base: ${report.base.distro ?? report.base.id ?? '?'} (${report.base.reference})`,
    ...report.buildpacks.map((b) => `buildpack: ${b.id}@${b.version}`),
    ...(report.sbom
      ? [
          `SBOM: ${report.sbom.files.length} files, ${report.sbom.files.reduce((n, f) => n + f.components, 0)} components`,
          ...Object.entries(report.sbom.ecosystems).map(([e, n]) => `SBOM ${e}: ${n} packages`),
        ]
      : ['SBOM: none in the image']),
  ];
  if (summaries.size >= 256) summaries.clear();
  summaries.set(digest, out);
  return out;
}

const summaries = new Map<string, string[]>();

/**
 * serviceLog is the log of a long-running fleet process: the CLI's own lines, or with
 * `--log-format json` one JSON object per line (time, level, msg) for log collectors; redacted either way.
 */
function serviceLog(ctx: CliContext, format: string | undefined): Logger {
  if (format === undefined || format === 'text') return ctx.log;
  if (format !== 'json') throw new UsageError(`--log-format ${format}: expected text or json`);
  const line = (level: string) => (msg: string) => {
    if (level === 'debug' && !ctx.settings.verbose) return;
    ctx.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, msg: ctx.redactor.redact(msg) })}\n`,
    );
  };
  return {
    debug: line('debug'),
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    phase: line('info'),
  };
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
