import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CnbFileError, toTomlText } from '../cnb/toml-file.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { deepFreeze, type FileErrorOf, parseTomlData } from '../internal/data-file.ts';
import { KilnError } from '../internal/errors.ts';
import { checkOwnedFile, ensureOwnedDir } from '../internal/owned-dir.ts';
import { parseDuration as parseLimitDuration, parseSize } from '../sandbox/limits.ts';
import { parseByteSize, parseDuration } from './units.ts';

// kiln's user configuration: one TOML file (`KILN_CONFIG`, else `<config dir>/config.toml`, where
// the config dir is KILN_HOME/config or $XDG_CONFIG_HOME/kiln or ~/.config/kiln; the CLI's
// settings resolve it). Written atomically (temp file + rename). Keys kiln does not know are kept
// when it rewrites the file (comments are not: TOML is re-encoded).
//
//   default-builder = "registry.example.com/builders/bookworm:1"
//   insecure-registries = ["localhost:5000"]
//   trust-host-ca-certs = false       # default true: builds trust the host's CA bundle
//   ca-certs = ["/etc/corp/root-ca.pem"]
//   npm-registry = "https://npm.example.com/"
//   debian-mirror = "http://deb.example.com/debian"
//   disk-budget = "20GiB"              # limits of `kiln build` (flags override; README of src/sandbox)
//   disk-reserve = "4GiB"
//   file-size-limit = "8GiB"
//   memory-limit = "6GiB"
//   process-limit = 8192
//   timeout = "45m"                    # "none": no build timeout even in CI
//   [rootfs-cache]                      # unpacked builder and run-image roots (kiln cache prune)
//   max-size = "8GiB"                   # least recently used go first beyond this
//   max-age = "30d"                     # entries unused for longer are removed
//   max-image-size = "20GiB"            # what one image may unpack to (gzip bombs, layers/README)
//   max-image-entries = 2000000         # files, dirs and links of one image
//   [[registry-mirrors]]
//   registry = "index.docker.io"        # or "*" for every registry
//   mirror = "mirror.example.com:5000"

/** A registry host, optionally with a port: `ghcr.io`, `localhost:5000`, `[::1]:5000`. */
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

const host = z
  .string()
  .regex(HOST, { message: 'expected a registry host such as "ghcr.io" or "localhost:5000"' });
const url = z.string().regex(/^https?:\/\/[^\s]+$/, { message: 'expected an http(s) URL' });

const mirrorEntry = z.strictObject({
  registry: z.union([z.literal('*'), host]),
  mirror: host,
});

const Schema = z.looseObject({
  'default-builder': z.string().min(1).optional(),
  // pack writes a table `[registry-mirrors] "index.docker.io" = "mirror"`; both spellings are read.
  'registry-mirrors': z.union([z.array(mirrorEntry), z.record(z.string(), z.string())]).optional(),
  'insecure-registries': z.array(host).optional(),
  'trust-host-ca-certs': z.boolean().optional(),
  'ca-certs': z.array(z.string().min(1)).optional(),
  'npm-registry': url.optional(),
  'debian-mirror': url.optional(),
  'disk-budget': z.string().optional(),
  'disk-reserve': z.string().optional(),
  'file-size-limit': z.string().optional(),
  'memory-limit': z.string().optional(),
  'process-limit': z.number().int().positive().optional(),
  timeout: z.string().optional(),
  'rootfs-cache': z
    .strictObject({
      'max-size': z
        .string()
        .refine((v) => parseByteSize(v) !== undefined, { message: 'expected a size such as "8GiB"' })
        .optional(),
      'max-age': z
        .string()
        .refine((v) => parseDuration(v) !== undefined, { message: 'expected a duration such as "30d"' })
        .optional(),
      'max-image-size': z
        .string()
        .refine((v) => parseByteSize(v) !== undefined, { message: 'expected a size such as "20GiB"' })
        .optional(),
      'max-image-entries': z.number().int().positive().optional(),
    })
    .optional(),
});

/** A registry mirror: pulls from `registry` go to `mirror` (`*` matches every registry). */
export interface RegistryMirror {
  readonly registry: string;
  readonly mirror: string;
}

/** KilnConfig is the user configuration, with defaults filled in. */
export interface KilnConfig {
  readonly defaultBuilder: string | undefined;
  readonly registryMirrors: readonly RegistryMirror[];
  readonly insecureRegistries: readonly string[];
  /**
   * Add the host's CA bundle to every build; default true. kiln runs on the host, so
   * builds trust what the user's own npm, curl and git already trust (behind a TLS-intercepting
   * proxy `kiln build` works with no flags); only detect and build see it, never the image.
   */
  readonly trustHostCaCerts: boolean;
  /** Extra CA certificate files (absolute paths) for every build, like repeated --ca-certs. */
  readonly caCerts: readonly string[];
  /** npm registry for builds (`npm_config_registry`), above the host's npm configuration. */
  readonly npmRegistry: string | undefined;
  /** Debian mirror for `kiln stack` (overrides the one the host's apt uses). */
  readonly debianMirror: string | undefined;
  /** Build limits as written (`10GiB`, `30m`; checked when read); the flags of `kiln build` win. */
  readonly diskBudget: string | undefined;
  readonly diskReserve: string | undefined;
  readonly fileSizeLimit: string | undefined;
  readonly memoryLimit: string | undefined;
  readonly processLimit: number | undefined;
  readonly timeout: string | undefined;
  /** Bound of the rootfs cache, applied after a build unpacks a new root (undefined: the default). */
  readonly rootfsCache: {
    readonly maxBytes?: number;
    readonly maxAgeMs?: number;
    /** What one image may unpack to (undefined: ROOTFS_LIMITS of layers/extract-limits.ts). */
    readonly maxImageBytes?: number;
    readonly maxImageEntries?: number;
  };
  /** Keys kiln does not know, kept as they were. */
  readonly extra: Readonly<Record<string, unknown>>;
}

const KNOWN = [
  'default-builder',
  'registry-mirrors',
  'insecure-registries',
  'trust-host-ca-certs',
  'ca-certs',
  'npm-registry',
  'debian-mirror',
  'disk-budget',
  'disk-reserve',
  'file-size-limit',
  'memory-limit',
  'process-limit',
  'timeout',
  'rootfs-cache',
];

/** emptyConfig is the configuration of a user who has none. */
export function emptyConfig(): KilnConfig {
  return {
    defaultBuilder: undefined,
    registryMirrors: [],
    insecureRegistries: [],
    trustHostCaCerts: true,
    caCerts: [],
    npmRegistry: undefined,
    debianMirror: undefined,
    diskBudget: undefined,
    diskReserve: undefined,
    fileSizeLimit: undefined,
    memoryLimit: undefined,
    processLimit: undefined,
    timeout: undefined,
    rootfsCache: {},
    extra: {},
  };
}

/**
 * configFilePath picks the config file: `KILN_CONFIG` when set, else `config.toml` in the config
 * directory. Pure: the CLI passes its environment and resolved config directory.
 */
export function configFilePath(env: Readonly<Record<string, string | undefined>>, configDir: string): string {
  const explicit = env.KILN_CONFIG;
  return explicit !== undefined && explicit !== ''
    ? path.resolve(explicit)
    : path.join(configDir, 'config.toml');
}

/** parseConfig validates config file text; errors name the file and the key. */
export function parseConfig(text: string, file: string): KilnConfig {
  // Every error about the config file is a usage error (exit 3), naming the file and the key.
  const configError: FileErrorOf = (f, message, options) =>
    new CnbFileError(f, message, { ...options, userInput: true });
  const d = parseTomlData(text, Schema, file, configError);
  const mirrorsRaw = d['registry-mirrors'];
  let registryMirrors: RegistryMirror[] = [];
  if (Array.isArray(mirrorsRaw))
    registryMirrors = mirrorsRaw.map((m) => ({ registry: m.registry, mirror: m.mirror }));
  else if (mirrorsRaw) {
    for (const [registry, mirror] of Object.entries(mirrorsRaw)) {
      if (registry !== '*' && !HOST.test(registry))
        throw new CnbFileError(file, `registry-mirrors: "${registry}" is not a registry host`, {
          userInput: true,
        });
      if (!HOST.test(mirror))
        throw new CnbFileError(file, `registry-mirrors.${registry}: "${mirror}" is not a registry host`, {
          userInput: true,
        });
      registryMirrors.push({ registry, mirror });
    }
  }
  // Limits are kept as written, but a value that does not parse is an error now, naming the key.
  const checked = <T>(key: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new CnbFileError(file, `${key}: ${(err as Error).message}`, { userInput: true });
    }
  };
  for (const key of ['disk-budget', 'disk-reserve', 'file-size-limit', 'memory-limit'] as const) {
    const v = d[key];
    if (v !== undefined) checked(key, () => parseSize(v, key));
  }
  if (d.timeout !== undefined) checked('timeout', () => parseLimitDuration(d.timeout!, 'timeout'));
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) if (!KNOWN.includes(k)) extra[k] = v;
  return {
    defaultBuilder: d['default-builder'],
    registryMirrors,
    insecureRegistries: d['insecure-registries'] ?? [],
    trustHostCaCerts: d['trust-host-ca-certs'] ?? true,
    caCerts: d['ca-certs'] ?? [],
    npmRegistry: d['npm-registry'],
    debianMirror: d['debian-mirror'],
    diskBudget: d['disk-budget'],
    diskReserve: d['disk-reserve'],
    fileSizeLimit: d['file-size-limit'],
    memoryLimit: d['memory-limit'],
    processLimit: d['process-limit'],
    timeout: d.timeout,
    rootfsCache: rootfsCacheOf(d['rootfs-cache']),
    extra,
  };
}

function rootfsCacheOf(
  t:
    | { 'max-size'?: string; 'max-age'?: string; 'max-image-size'?: string; 'max-image-entries'?: number }
    | undefined,
): KilnConfig['rootfsCache'] {
  const maxBytes = t?.['max-size'] !== undefined ? parseByteSize(t['max-size']) : undefined;
  const maxAgeMs = t?.['max-age'] !== undefined ? parseDuration(t['max-age']) : undefined;
  const maxImageBytes = t?.['max-image-size'] !== undefined ? parseByteSize(t['max-image-size']) : undefined;
  const maxImageEntries = t?.['max-image-entries'];
  return {
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    ...(maxImageBytes !== undefined ? { maxImageBytes } : {}),
    ...(maxImageEntries !== undefined ? { maxImageEntries } : {}),
  };
}

/** loadConfig reads the config file; a missing file is the empty configuration. */
export async function loadConfig(file: string): Promise<KilnConfig> {
  checkOwnedFile(file, { what: 'the kiln config' });
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return missingConfig(file, err);
  }
  return parsedConfig(text, file);
}

/**
 * loadConfigSync is loadConfig for code that builds its collaborators synchronously (the CLI's
 * registry client); the file is a few lines of TOML.
 */
export function loadConfigSync(file: string): KilnConfig {
  checkOwnedFile(file, { what: 'the kiln config' });
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return missingConfig(file, err);
  }
  return parsedConfig(text, file);
}

/**
 * The last config text parsed and its result: one `kiln build` loads the config five or six
 * times (limits, platform setup, builder, registry client, rootfs cache), always the same text.
 * Still read each time; frozen, as it is shared.
 */
let lastParsed: { readonly file: string; readonly text: string; readonly config: KilnConfig } | undefined;

function parsedConfig(text: string, file: string): KilnConfig {
  if (lastParsed?.file === file && lastParsed.text === text) return lastParsed.config;
  const config = deepFreeze(parseConfig(text, file));
  lastParsed = { file, text, config };
  return config;
}

// A missing file is the empty configuration; any other read failure names the file.
function missingConfig(file: string, err: unknown): KilnConfig {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return emptyConfig();
  throw new KilnError(`${file}: cannot read kiln config (${code})`, { cause: err });
}

/** configToToml encodes a configuration as the file's TOML (defaults left out). */
export function configToToml(c: KilnConfig): string {
  const doc: Record<string, unknown> = { ...c.extra };
  if (c.defaultBuilder !== undefined) doc['default-builder'] = c.defaultBuilder;
  if (c.insecureRegistries.length) doc['insecure-registries'] = [...c.insecureRegistries];
  if (!c.trustHostCaCerts) doc['trust-host-ca-certs'] = false;
  if (c.caCerts.length) doc['ca-certs'] = [...c.caCerts];
  if (c.npmRegistry !== undefined) doc['npm-registry'] = c.npmRegistry;
  if (c.debianMirror !== undefined) doc['debian-mirror'] = c.debianMirror;
  if (c.diskBudget !== undefined) doc['disk-budget'] = c.diskBudget;
  if (c.diskReserve !== undefined) doc['disk-reserve'] = c.diskReserve;
  if (c.fileSizeLimit !== undefined) doc['file-size-limit'] = c.fileSizeLimit;
  if (c.memoryLimit !== undefined) doc['memory-limit'] = c.memoryLimit;
  if (c.processLimit !== undefined) doc['process-limit'] = c.processLimit;
  if (c.timeout !== undefined) doc.timeout = c.timeout;
  const rc = c.rootfsCache;
  if (Object.values(rc).some((v) => v !== undefined))
    doc['rootfs-cache'] = {
      ...(rc.maxBytes !== undefined ? { 'max-size': String(rc.maxBytes) } : {}),
      ...(rc.maxAgeMs !== undefined ? { 'max-age': `${Math.round(rc.maxAgeMs / 1000)}s` } : {}),
      ...(rc.maxImageBytes !== undefined ? { 'max-image-size': String(rc.maxImageBytes) } : {}),
      ...(rc.maxImageEntries !== undefined ? { 'max-image-entries': rc.maxImageEntries } : {}),
    };
  if (c.registryMirrors.length) doc['registry-mirrors'] = c.registryMirrors.map((m) => ({ ...m }));
  return toTomlText(doc);
}

/** saveConfig writes the configuration atomically (temp file in the same directory, then rename). */
export async function saveConfig(file: string, c: KilnConfig): Promise<void> {
  // Validate what we are about to write, so a bad value never lands in the file.
  const text = configToToml(c);
  parseConfig(text, file);
  ensureOwnedDir(path.dirname(file), { what: "kiln's config directory", mode: 0o755 });
  await writeFileAtomic(file, text, 0o644);
}

/** updateConfig loads, changes and saves the configuration; returns the new one. */
export async function updateConfig(file: string, change: (c: KilnConfig) => KilnConfig): Promise<KilnConfig> {
  const next = change(await loadConfig(file));
  await saveConfig(file, next);
  return next;
}

/**
 * mirrorFor returns the mirror to pull from instead of `registry` (a normalized registry host such
 * as `index.docker.io`): an exact entry first, then `*`; undefined when none is configured.
 */
export function mirrorFor(c: KilnConfig, registry: string): string | undefined {
  return (
    c.registryMirrors.find((m) => m.registry === registry)?.mirror ??
    c.registryMirrors.find((m) => m.registry === '*')?.mirror
  );
}

/** isHost says whether a string is a registry host[:port] as the config accepts it. */
export function isHost(s: string): boolean {
  return HOST.test(s);
}
