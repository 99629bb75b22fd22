import path from 'node:path';
import type { Command } from 'commander';
import {
  configToToml,
  isHost,
  type KilnConfig,
  loadConfig,
  type RegistryMirror,
  updateConfig,
} from '../../config/config-file.ts';
import { KilnError, UsageError } from '../../internal/errors.ts';
import { readCaCertFile } from '../../platform/ca-certs.ts';
import { parseDuration, parseSize } from '../../sandbox/limits.ts';
import type { CliContext } from '../context.ts';

// `kiln config`: reads and changes kiln's config file (src/config/config-file.ts), like
// `pack config`. Every change is validated and written atomically.

/** register adds `kiln config` and its subcommands. */
export function register(program: Command, ctx: CliContext): void {
  const config = program
    .command('config')
    .description("show or change kiln's configuration (KILN_CONFIG or ~/.config/kiln/config.toml)");

  const file = () => ctx.settings.configFile;
  const out = (s: string): void => {
    ctx.stdout.write(s.endsWith('\n') || s === '' ? s : `${s}\n`);
  };
  const change = async (fn: (c: KilnConfig) => KilnConfig, done: string) => {
    await updateConfig(file(), fn);
    ctx.log.info(done);
  };

  config
    .command('show')
    .description('print the configuration (TOML, or JSON with --json)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const c = await loadConfig(file());
      if (opts.json) {
        const { extra, ...known } = c;
        out(JSON.stringify({ file: file(), ...known, ...extra }, null, 2));
      } else {
        out(`# ${file()}\n${configToToml(c)}`);
      }
    });

  config
    .command('path')
    .description('print the path of the config file')
    .action(() => out(file()));

  scalar(
    config,
    'default-builder',
    'NAME',
    'the builder `kiln build` uses without --builder',
    'defaultBuilder',
    {
      file,
      out,
      change,
    },
  );
  scalar(config, 'npm-registry', 'URL', 'the npm registry builds use (npm_config_registry)', 'npmRegistry', {
    file,
    out,
    change,
    check: checkUrl,
  });
  scalar(config, 'debian-mirror', 'URL', 'the Debian mirror `kiln stack` uses', 'debianMirror', {
    file,
    out,
    change,
    check: checkUrl,
  });

  // Build limits (src/sandbox/limits.ts); `kiln build` flags of the same names win.
  for (const [name, key, what] of [
    ['disk-budget', 'diskBudget', 'the bytes /layers and /workspace of a build may hold (default 10GiB)'],
    ['disk-reserve', 'diskReserve', 'the free space builds keep on the host filesystem (default 2GiB)'],
    ['file-size-limit', 'fileSizeLimit', 'the largest file a buildpack may write (default 4GiB)'],
    ['memory-limit', 'memoryLimit', 'the memory of each buildpack process tree (default 4GiB)'],
  ] as const)
    scalar(config, name, 'SIZE', what, key, { file, out, change, check: (v) => void parseSize(v, name) });
  scalar(
    config,
    'timeout',
    'DURATION',
    'the build timeout, e.g. 30m or none (default: 1h unattended)',
    'timeout',
    {
      file,
      out,
      change,
      check: (v) => void parseDuration(v, 'timeout'),
    },
  );

  config
    .command('trust-host-ca-certs')
    .description(
      "trust the host's CA bundle in every build, never in the image (default true; print the value without an argument)",
    )
    .argument('[value]', 'true or false')
    .action(async (value: string | undefined) => {
      if (value === undefined) {
        out(String((await loadConfig(file())).trustHostCaCerts));
        return;
      }
      if (value !== 'true' && value !== 'false')
        throw new UsageError(`trust-host-ca-certs "${value}": expected true or false`);
      await change((c) => ({ ...c, trustHostCaCerts: value === 'true' }), `trust-host-ca-certs = ${value}`);
    });

  list(config, 'insecure-registries', 'HOST', 'registries reached over plain HTTP', 'insecureRegistries', {
    file,
    out,
    change,
    normalize: async (v) => {
      if (!isHost(v)) throw new UsageError(`"${v}": expected a registry host such as "localhost:5000"`);
      return v;
    },
  });
  // pack's trusted builders run its lifecycle with the registry credentials inside the build
  // container. kiln never hands credentials to a builder: every builder's buildpacks run in the
  // sandbox and kiln does all registry work itself, so trust would change nothing. The command
  // says so instead of storing a list nothing reads.
  config
    .command('trusted-builders')
    .description('(pack) not used by kiln: every builder runs sandboxed and never sees registry credentials')
    .argument('[args...]')
    .allowUnknownOption()
    .action(() => {
      throw new UsageError(
        "config trusted-builders: kiln has no trusted builders: every builder's buildpacks run in the sandbox and none ever gets registry credentials (pack trusts a builder to run its lifecycle with them), so trust would change nothing",
      );
    });
  list(config, 'ca-certs', 'FILE', 'extra CA certificate files for every build', 'caCerts', {
    file,
    out,
    change,
    normalize: async (v) => {
      const abs = path.resolve(v);
      await readCaCertFile(abs); // refuse a file that is not PEM now, not at the next build
      return abs;
    },
    normalizeRemove: (v) => path.resolve(v),
  });

  const mirrors = config.command('registry-mirrors').description('pull from mirrors instead of registries');
  mirrors
    .command('list')
    .description('list the registry mirrors')
    .action(async () => {
      for (const m of (await loadConfig(file())).registryMirrors) out(`${m.registry} => ${m.mirror}`);
    });
  mirrors
    .command('add')
    .description('use MIRROR for pulls from REGISTRY ("*" for every registry)')
    .argument('<registry>', 'registry host, e.g. index.docker.io, or "*"')
    .requiredOption('-m, --mirror <mirror>', 'mirror registry host')
    .action(async (registry: string, opts: { mirror: string }) => {
      if (registry !== '*' && !isHost(registry))
        throw new UsageError(`registry "${registry}": expected a registry host or "*"`);
      if (!isHost(opts.mirror)) throw new UsageError(`mirror "${opts.mirror}": expected a registry host`);
      const entry: RegistryMirror = { registry, mirror: opts.mirror };
      await change(
        (c) => ({
          ...c,
          registryMirrors: [...c.registryMirrors.filter((m) => m.registry !== registry), entry],
        }),
        `registry mirror ${registry} => ${opts.mirror}`,
      );
    });
  mirrors
    .command('remove')
    .description('stop mirroring REGISTRY')
    .argument('<registry>')
    .action(async (registry: string) => {
      const c = await loadConfig(file());
      if (!c.registryMirrors.some((m) => m.registry === registry))
        throw new UsageError(`registry-mirrors: no mirror for "${registry}"`);
      await change(
        (x) => ({ ...x, registryMirrors: x.registryMirrors.filter((m) => m.registry !== registry) }),
        `removed the mirror of ${registry}`,
      );
    });
}

interface Io {
  file(): string;
  out(s: string): void;
  change(fn: (c: KilnConfig) => KilnConfig, done: string): Promise<void>;
}

type ScalarKey =
  | 'defaultBuilder'
  | 'npmRegistry'
  | 'debianMirror'
  | 'diskBudget'
  | 'diskReserve'
  | 'fileSizeLimit'
  | 'memoryLimit'
  | 'timeout';
type ListKey = 'insecureRegistries' | 'caCerts';

function scalar(
  config: Command,
  name: string,
  arg: string,
  what: string,
  key: ScalarKey,
  io: Io & { check?: (v: string) => void },
): void {
  config
    .command(name)
    .description(`set ${what} (print it without an argument)`)
    .argument(`[${arg.toLowerCase()}]`)
    .option('-u, --unset', `remove the setting`)
    .action(async (value: string | undefined, opts: { unset?: boolean }) => {
      if (opts.unset) {
        await io.change((c) => ({ ...c, [key]: undefined }), `${name} unset`);
        return;
      }
      if (value === undefined) {
        const v = (await loadConfig(io.file()))[key];
        if (v === undefined) throw new KilnError(`${name} is not set`);
        io.out(v);
        return;
      }
      io.check?.(value);
      await io.change((c) => ({ ...c, [key]: value }), `${name} = ${value}`);
    });
}

function list(
  config: Command,
  name: string,
  arg: string,
  what: string,
  key: ListKey,
  io: Io & { normalize: (v: string) => Promise<string>; normalizeRemove?: (v: string) => string },
): void {
  const cmd = config.command(name).description(what);
  cmd
    .command('list')
    .description(`list ${name}`)
    .action(async () => {
      for (const v of (await loadConfig(io.file()))[key]) io.out(v);
    });
  cmd
    .command('add')
    .description(`add ${arg}`)
    .argument(`<${arg.toLowerCase()}>`)
    .action(async (raw: string) => {
      const v = await io.normalize(raw);
      await io.change(
        (c) => ({ ...c, [key]: c[key].includes(v) ? c[key] : [...c[key], v] }),
        `${name}: added ${v}`,
      );
    });
  cmd
    .command('remove')
    .description(`remove ${arg}`)
    .argument(`<${arg.toLowerCase()}>`)
    .action(async (raw: string) => {
      const v = io.normalizeRemove ? io.normalizeRemove(raw) : raw;
      const c = await loadConfig(io.file());
      if (!c[key].includes(v)) throw new UsageError(`${name}: "${v}" is not in the list`);
      await io.change((x) => ({ ...x, [key]: x[key].filter((e) => e !== v) }), `${name}: removed ${v}`);
    });
}

function checkUrl(v: string): void {
  if (!/^https?:\/\/\S+$/.test(v)) throw new UsageError(`"${v}": expected an http(s) URL`);
}
