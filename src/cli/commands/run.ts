import { type Command, Option } from 'commander';
import { KilnError, UsageError } from '../../internal/errors.ts';
import { lstatInRoot, readdirInRootIfExists, readTextInRootIfExists } from '../../internal/safe-read.ts';
import { extract } from '../../layers/extract.ts';
import type { Image } from '../../oci/image.ts';
import { hostPlatform } from '../../oci/platform.ts';
import type { ConfigFile } from '../../oci/schema.ts';
import { BubblewrapExecutor } from '../../sandbox/bubblewrap.ts';
import type { RunSpec } from '../../sandbox/executor.ts';
import { leaseHostIds } from '../../sandbox/identity.ts';
import {
  HOST_NETWORK_WARNING,
  NETWORK_MODES,
  type NetworkMode,
  openNetwork,
  parseAllowHost,
} from '../../sandbox/network.ts';
import { RootfsCache, sandboxCacheDir } from '../../sandbox/rootfs-cache.ts';
import { isIndex } from '../../transport/image-target.ts';
import type { CliContext } from '../context.ts';
import { ProcessExit } from '../exit-codes.ts';
import { imageTransports } from '../image-ref.ts';
import { rootfsBound, rootfsLimits } from './cache.ts';

export { ProcessExit } from '../exit-codes.ts';

interface RunOptions {
  process?: string;
  port?: string;
  env: string[];
  network: NetworkMode;
  allowHost: string[];
}

/**
 * register adds `kiln run IMAGE [--process TYPE] [-p PORT] [-e K=V] [--network MODE] [-- ARGS]`:
 * the image's entrypoint and cmd in the bubblewrap sandbox, as the image's user, on a read-only
 * root with a tmpfs /tmp, in an isolated network by default (as `kiln build`: own namespace,
 * outbound through slirp4netns, nothing of this host reachable).
 *
 * `-p PORT` publishes the app's PORT on this host's 127.0.0.1:PORT (only there, like Docker's
 * `-p 127.0.0.1:PORT:PORT`; the app must listen on 0.0.0.0 inside), and sets `PORT` (unless the
 * image or `-e` sets it — the kiln/node-start convention) and prints the URL. With `--network
 * host` nothing is mapped: the app's ports are this machine's.
 * The rootfs comes from the content-addressed rootfs cache (one unpack per image digest).
 */
/**
 * The whole command is the platform spec's launch step: whatever kiln itself fails at ends with 82;
 * the app's own exit status ends the CLI as it is (ProcessExit).
 */
export const step = 'launch';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run an image here in the sandbox (no container engine needed); Ctrl-C stops it')
    .argument(
      '<image>',
      'image: a name in the local store, a registry reference, oci:DIR[:TAG], docker-archive:FILE',
    )
    .argument('[args...]', 'arguments for the process (after --); they replace the image Cmd')
    .option('--process <type>', 'process type to run (/cnb/process/<type>) instead of the default')
    .option('-p, --port <port>', 'port the app should listen on: sets PORT unless the image or -e sets it')
    .addOption(
      new Option(
        '--network <mode>',
        "network of the app: isolated (default: own network namespace, outbound through slirp4netns, -p publishes on 127.0.0.1), none, or host (this machine's network)",
      )
        .choices([...NETWORK_MODES])
        .default('isolated'),
    )
    .option(
      '--allow-host <host:port>',
      'with --network isolated: let the app reach this port of this host (repeatable)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option(
      '-e, --env <K=V>',
      'environment variable for the process (repeatable; K alone passes kiln’s own value)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (imageArg: string, args: string[], opts: RunOptions) => {
      const log = ctx.log;
      const settings = ctx.settings;
      const images = imageTransports(settings, log, { progress: log.progress() });
      const target = await images.locate(imageArg);
      log.info(`Resolving ${target.name}`);
      // An index runs as this machine's platform; a single image of another one runs as it is
      // (under emulation where binfmt_misc has it registered).
      const top = await target.readAny();
      const image = isIndex(top) ? await target.read({ platform: hostPlatform(process.arch) }) : top;
      const config = await image.configFile();
      const hostUid = process.getuid?.() ?? 0;

      const cache = new RootfsCache(await sandboxCacheDir(settings.cacheDir, hostUid), {
        bound: await rootfsBound(settings),
        limits: await rootfsLimits(settings),
        onPruned: (e) => log.debug(`pruned unused rootfs ${e.path} (${e.reason})`),
      });
      const started = Date.now();
      const rootfs = await unpackRootfs(cache, image);
      log.debug(`rootfs ${rootfs} ready in ${Date.now() - started} ms`);

      const spec = await runSpecFor(config.config ?? {}, rootfs, {
        args,
        process: opts.process,
        port: opts.port,
        env: opts.env,
        hostEnv: settings.env,
      });
      const allow = opts.allowHost.map((h) => parseAllowHost(h));
      if (opts.network === 'host') log.warn(HOST_NETWORK_WARNING);
      const net = await openNetwork(opts.network, { allow, env: spec.env, hostUid });
      log.debug(`Network: ${net.description}`);

      // Ctrl-C / SIGTERM go to the app (it runs in its own session); a second one kills it.
      const ac = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals === 1) ac.abort(sig);
        else ac.abort('SIGKILL');
      };
      const forward = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
      process.on('SIGINT', forward.SIGINT);
      process.on('SIGTERM', forward.SIGTERM);
      // As root, the app runs as host ids leased for this run: no real account's, and no other
      // build's or run's (each has its own process budget and cannot be signalled by the others).
      const lease = hostUid === 0 ? await leaseHostIds() : undefined;
      try {
        if (opts.port) {
          const port = Number(spec.env.PORT ?? opts.port);
          if (net.sandbox) {
            await net.sandbox.publish(Number(opts.port), port);
            log.info(`The app's port ${port} is published at http://127.0.0.1:${opts.port}/`);
          } else if (opts.network === 'host')
            log.info(`The app shares this machine's network: http://127.0.0.1:${port}/`);
          else log.warn(`-p ${opts.port}: nothing is published with --network none`);
        }
        log.info(`Running ${spec.argv.join(' ')} as ${spec.uid}:${spec.gid}`);
        const result = await new BubblewrapExecutor({ hostUid }).run({
          ...spec,
          ...(lease ? { hostIds: { uid: lease.uid, gid: lease.gid } } : {}),
          env: net.env,
          network: net.network,
          signal: ac.signal,
          graceMs: 10_000,
        });
        for (const note of result.notes) log.warn(note);
        if (result.exitCode !== 0) throw new ProcessExit(result.exitCode);
      } finally {
        await lease?.release();
        process.off('SIGINT', forward.SIGINT);
        process.off('SIGTERM', forward.SIGTERM);
        await net.close();
      }
    });
}

/**
 * Unpacks `image` once into the rootfs cache (whiteouts applied), inert: no setuid/setgid bits,
 * device nodes or group/other-writable entries, owned by kiln's user (the image's non-root users
 * keep read access through the other-bits; the rootfs is read-only in the sandbox anyway).
 */
export function unpackRootfs(cache: RootfsCache, image: Image): Promise<string> {
  return cache.ensureImage(image, async (tar, dest, limits) => {
    await extract(tar, dest, { whiteouts: true, inert: true, special: 'skip', limits });
  });
}

/** Inputs of runSpecFor besides the image config. */
export interface RunRequest {
  readonly args: readonly string[];
  readonly process?: string | undefined;
  readonly port?: string | undefined;
  readonly env: readonly string[];
  /** kiln's own environment, only for `-e NAME` without a value. */
  readonly hostEnv: Readonly<Record<string, string | undefined>>;
}

/**
 * runSpecFor turns an image config into the sandbox run: entrypoint (or /cnb/process/<type>)
 * + cmd (replaced by user args), env from the config then -e then PORT, the config's user
 * (names resolved in the image's /etc/passwd and /etc/group) and working directory.
 */
export async function runSpecFor(
  cfg: NonNullable<ConfigFile['config']>,
  rootfs: string,
  req: RunRequest,
): Promise<RunSpec> {
  let entrypoint = [...(cfg.Entrypoint ?? [])];
  let cmd = [...(cfg.Cmd ?? [])];
  if (req.process !== undefined) {
    if (!/^[A-Za-z0-9._-]+$/.test(req.process)) {
      throw new UsageError(`invalid process type "${req.process}"`);
    }
    if (!lstatInRoot(rootfs, `cnb/process/${req.process}`, IMAGE)) {
      const types = listProcessTypes(rootfs);
      throw new UsageError(
        `process type "${req.process}" not found in the image: it has ${types.length > 0 ? types.join(', ') : 'no /cnb/process entries'}`,
      );
    }
    entrypoint = [`/cnb/process/${req.process}`];
    cmd = [];
  }
  if (req.args.length > 0) cmd = [...req.args];
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0) {
    throw new UsageError('the image has no Entrypoint or Cmd: pass the command after --');
  }

  const env: Record<string, string> = {};
  for (const kv of cfg.Env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  for (const e of req.env) {
    const i = e.indexOf('=');
    if (i === 0) throw new UsageError(`invalid -e "${e}": expected NAME=VALUE or NAME`);
    if (i < 0) {
      const v = req.hostEnv[e];
      if (v !== undefined) env[e] = v;
    } else env[e.slice(0, i)] = e.slice(i + 1);
  }
  if (req.port !== undefined) {
    if (!/^\d{1,5}$/.test(req.port) || Number(req.port) > 65535 || Number(req.port) === 0) {
      throw new UsageError(`invalid port "${req.port}": expected 1-65535`);
    }
    env.PORT ??= req.port;
  }
  env.PATH ??= '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

  const user = await resolveUser(cfg.User ?? '', rootfs);
  env.HOME ??= user.home;
  return {
    argv,
    env,
    cwd: cfg.WorkingDir || '/',
    uid: user.uid,
    gid: user.gid,
    rootfs,
    mounts: [],
    network: 'host',
    tmpfs: ['/tmp'],
    stdin: 'inherit',
    stdout: 'inherit',
    stderr: 'inherit',
    // The image's own user, even root: uid 0 inside maps to an unprivileged uid outside.
    allowRoot: true,
  };
}

/**
 * How the image's files are read: inside its unpacked rootfs, links resolved against that root
 * (as the container will), never on the host. The image is untrusted (pulled, or built from an
 * untrusted builder).
 */
const IMAGE = { what: "the image's root filesystem", shown: '/', follow: 'in-root' } as const;

function listProcessTypes(rootfs: string): string[] {
  return (readdirInRootIfExists(rootfs, 'cnb/process', IMAGE) ?? []).map((e) => e.name).sort();
}

/** Resolves an image `User` (`name`, `uid`, `name:group`, `uid:gid`) against the image's files. */
export async function resolveUser(
  user: string,
  rootfs: string,
): Promise<{ uid: number; gid: number; home: string }> {
  const passwd = readColonFile(rootfs, 'etc/passwd');
  const group = readColonFile(rootfs, 'etc/group');
  const [u = '', g] = user.split(':');
  let uid: number;
  let gid: number | undefined;
  let home = '/';
  if (u === '') uid = 0;
  else if (/^\d+$/.test(u)) uid = Number(u);
  else {
    const row = passwd.find((r) => r[0] === u);
    if (!row) throw new KilnError(`image user "${u}" is not in the image's /etc/passwd`);
    uid = Number(row[2]);
  }
  const prow = passwd.find((r) => Number(r[2]) === uid);
  if (prow) {
    gid = Number(prow[3]);
    home = prow[5] || '/';
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const row = group.find((r) => r[0] === g);
      if (!row) throw new KilnError(`image group "${g}" is not in the image's /etc/group`);
      gid = Number(row[2]);
    }
  }
  return { uid, gid: gid ?? uid, home };
}

function readColonFile(rootfs: string, rel: string): string[][] {
  const text = readTextInRootIfExists(rootfs, rel, IMAGE) ?? '';
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}
