import { existsSync } from 'node:fs';
import path from 'node:path';
import type { DaemonClient } from '../daemon/client.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import type { Platform } from '../oci/schema.ts';
import type { RegistryClient } from '../registry/client.ts';
import { RegistryUnreachableError } from '../registry/errors.ts';
import type { ProgressSink } from '../registry/progress.ts';
import { parseReference, type Reference } from '../registry/reference.ts';
import { ImageStore, storeNameOf } from '../store/store.ts';
import { DockerArchiveTarget } from './archive-target.ts';
import { DaemonSession, DaemonTarget } from './daemon-target.ts';
import { FanOut } from './fan-out.ts';
import type { ImageTarget, Referrers } from './image-target.ts';
import { layoutReferrers } from './layout-referrers.ts';
import { LayoutTarget } from './layout-target.ts';
import { type RegistryAccess, RegistryTarget } from './registry-target.ts';
import { StoreTarget } from './store-target.ts';

// The one place where a user's image argument becomes an ImageTarget:
//   oci:DIR[:TAG]                  an OCI image layout directory (skopeo's syntax; first ':' splits)
//   docker-archive:FILE[:NAME:TAG] a `docker save` tarball (the name it is loaded under)
//   local:NAME                     kiln's local image store (an OCI layout under the data dir)
//   docker-daemon:NAME[:TAG]       an image in a Docker or Podman daemon (skopeo's syntax)
//   [docker://]REGISTRY/REPO[:TAG][@DIGEST]   a registry
// A bare name (no transport) is pack's: the local store's image when reading and the store holds
// it, or when writing without --publish; otherwise its registry. Add new transports here.

/** The collaborators of one command's image reads and writes. */
export interface TransportOptions {
  readonly client: RegistryClient;
  /** Directory of kiln's local image store (opened at most once, when first needed). */
  readonly storeDir: string;
  /**
   * The platform every read is for: picked from indexes, and a single image of another platform is
   * refused (none given: indexes resolve to DEFAULT_PLATFORM and single images are taken as they are).
   */
  readonly platform?: Platform;
  readonly progress?: ProgressSink;
  /** The pull mirror of a registry (kiln config registry-mirrors); writes never use mirrors. */
  readonly mirrorFor?: (registry: string) => string | undefined;
  readonly debug?: (msg: string) => void;
  /** The Docker Engine API client (`docker-daemon:`), when the command may use a daemon. */
  readonly daemon?: DaemonClient;
  /**
   * `--daemon` (pack's default flow): a bare name is written to the daemon, and read from it
   * when the local store does not hold it and the daemon does.
   */
  readonly preferDaemon?: boolean;
  /** Reading images a build uses (locate): see PullPolicy; default if-not-present. */
  readonly pullPolicy?: PullPolicy;
}

/**
 * pack's `--pull-policy` as kiln reads images (kiln keeps no pulled copies: a registry read is
 * always fresh). `always`: a name with a registry host comes from its registry even when the
 * local store (or daemon) holds it; a bare name stays local-first, since the store holds images no
 * registry has (kiln stack create, builder create). `if-not-present`: a local copy first, then the
 * registry. `never`: no registry is asked; an image found nowhere local fails.
 */
export type PullPolicy = 'always' | 'if-not-present' | 'never';

/** The one store (and daemon session) of a command, opened when first needed. */
interface StoreSlot {
  opened?: Promise<ImageStore>;
  daemon?: DaemonSession;
}

/** Transports parses image arguments into targets that share one registry client and one store. */
export class Transports {
  readonly options: TransportOptions;
  #slot: StoreSlot;

  /** `store`: the command's store when it is open already (it is then never opened again). */
  constructor(options: TransportOptions, store?: ImageStore | Promise<ImageStore>) {
    this.options = options;
    this.#slot = store ? { opened: Promise.resolve(store) } : {};
  }

  get client(): RegistryClient {
    return this.options.client;
  }
  get storeDir(): string {
    return this.options.storeDir;
  }

  /** store opens kiln's local store (creating it when missing), once per command. */
  store(): Promise<ImageStore> {
    this.#slot.opened ??= ImageStore.open(this.options.storeDir);
    return this.#slot.opened;
  }

  /** with returns Transports over the same client and store with other read/write options. */
  with(o: {
    platform?: Platform;
    progress?: ProgressSink;
    preferDaemon?: boolean;
    pullPolicy?: PullPolicy;
  }): Transports {
    const t = new Transports({ ...this.options, ...o });
    t.#slot = this.#slot;
    return t;
  }

  readonly #openStore = (): Promise<ImageStore> => this.store();

  /** parse maps an argument to its target as written: a bare name is a registry reference. */
  parse(arg: string): ImageTarget {
    const bad = (why: string): never => {
      throw new UsageError(`invalid image "${arg}": ${why}`);
    };
    const split = (rest: string): [string, string | undefined] => {
      const i = rest.indexOf(':');
      return i < 0 ? [rest, undefined] : [rest.slice(0, i), rest.slice(i + 1) || undefined];
    };
    if (arg.startsWith('oci:')) {
      const [dir, tag] = split(arg.slice(4));
      if (!dir) bad('oci: needs a directory (oci:DIR[:TAG])');
      return new LayoutTarget(path.resolve(dir), tag, this.options.platform);
    }
    if (arg.startsWith('docker-archive:')) {
      const [file, tag] = split(arg.slice('docker-archive:'.length));
      if (!file) bad('docker-archive: needs a file (docker-archive:FILE[:TAG])');
      return new DockerArchiveTarget(path.resolve(file), tag, this.options.platform);
    }
    if (arg.startsWith('docker-daemon:')) {
      const rest = arg.slice('docker-daemon:'.length);
      if (!rest) bad('docker-daemon: needs an image name (docker-daemon:NAME[:TAG])');
      return this.daemon(this.#reference(rest, bad));
    }
    if (arg.startsWith('local:')) {
      const name = arg.slice('local:'.length);
      if (!name) bad('local: needs an image name');
      try {
        storeNameOf(name);
      } catch (e) {
        bad((e as Error).message);
      }
      return this.local(name);
    }
    return new RegistryTarget(this.#reference(arg, bad), this.#registryAccess());
  }

  /** daemon is the image `ref` in the Docker or Podman daemon. */
  daemon(ref: Reference): ImageTarget {
    const client = this.options.daemon;
    if (!client) throw new UsageError(`docker-daemon: images are not available to this command`);
    this.#slot.daemon ??= new DaemonSession(client, this.#openStore, this.options.debug);
    return new DaemonTarget(ref, this.#slot.daemon);
  }

  /** local is the image stored under `name` in kiln's local store. */
  local(name: string): ImageTarget {
    return new StoreTarget(name, this.#openStore, this.options.platform);
  }

  /**
   * locate is where a command reads `arg` from: an explicit transport as given; a bare name that
   * the local store holds (what `kiln build NAME` or `kiln stack create` wrote) is that image;
   * anything else its registry, and a failure to read a bare name there names both places.
   * Never creates the store.
   */
  async locate(arg: string): Promise<ImageTarget> {
    const t = this.parse(arg);
    const policy = this.options.pullPolicy ?? 'if-not-present';
    const never = () =>
      new KilnError(
        `image ${arg} is not in the local store${this.options.preferDaemon ? ' or the daemon' : ''} and --pull-policy is never (no registry is asked)`,
      );
    if (!(t instanceof RegistryTarget)) return t;
    if (arg.startsWith('docker://')) {
      if (policy === 'never') throw never();
      return t;
    }
    if (policy !== 'always' || isBareName(arg)) {
      if (await this.held(arg)) return this.local(arg);
      if (this.options.preferDaemon) {
        const d = this.daemon(t.ref);
        if (await this.options.daemon!.inspect(d.imageName)) return d;
      }
    }
    if (policy === 'never') throw never();
    if (!isBareName(arg)) return t;
    return new RegistryTarget(t.ref, this.#registryAccess(), (e) =>
      explainUnreachable(arg, t.ref.registry, this.storeDir, e),
    );
  }

  /**
   * held is the store's image when `arg` is a plain name (no transport) the local store holds;
   * undefined otherwise (and when there is no store yet: it is not created).
   */
  async held(arg: string): Promise<ImageTarget | undefined> {
    if (/^(oci|docker-archive|docker-daemon|local):/.test(arg) || arg.startsWith('docker://'))
      return undefined;
    if (!this.#slot.opened && !existsSync(path.join(this.storeDir, 'index.json'))) return undefined;
    const store = await this.#openStore();
    return (await store.digestOf(arg)) ? this.local(arg) : undefined;
  }

  /**
   * destination is where a command writes what it makes (`kiln build IMAGE`, `--tag`, `kiln
   * buildpack package NAME`): an explicit transport as given; a plain name goes to the local
   * store, or with `publish` (`--publish`) to its registry.
   */
  destination(arg: string, publish: boolean): ImageTarget {
    const t = this.parse(arg);
    if (t instanceof RegistryTarget && !publish && !arg.startsWith('docker://'))
      return this.options.preferDaemon ? this.daemon(t.ref) : this.local(arg);
    return t;
  }

  /** fanOut writes to every target in one write (`--tag`); a single target is itself. */
  fanOut(targets: readonly ImageTarget[]): ImageTarget {
    return targets.length === 1 ? targets[0]! : new FanOut(targets, this.#openStore);
  }

  /** storeReferrers are the referrers in kiln's local store, of any image it holds. */
  storeReferrers(): Referrers {
    return layoutReferrers(async () => (await this.store()).layout);
  }

  /** registryReference parses `arg` as a registry reference; `what` names the flag in the error. */
  registryReference(arg: string, what: string): Reference {
    const t = this.parse(arg);
    if (!(t instanceof RegistryTarget)) throw new UsageError(`${what} ${arg}: must be a registry reference`);
    return t.ref;
  }

  #registryAccess(): RegistryAccess {
    const o = this.options;
    return {
      client: o.client,
      ...(o.platform ? { platform: o.platform } : {}),
      ...(o.progress ? { progress: o.progress } : {}),
      ...(o.mirrorFor ? { mirrorFor: o.mirrorFor } : {}),
      ...(o.debug ? { debug: o.debug } : {}),
    };
  }

  #reference(arg: string, bad: (why: string) => never): Reference {
    const m = /^([a-z][a-z0-9+.-]*):\/\//.exec(arg);
    if (m && m[1] !== 'docker')
      bad(`unknown transport "${m[1]}://" (use oci:, docker-archive:, docker-daemon:, local: or docker://)`);
    try {
      return parseReference(arg);
    } catch (e) {
      return bad((e as Error).message.replace(/^invalid image reference "[^"]*": /, ''));
    }
  }
}

/**
 * explainUnreachable turns the failure to read a bare name (no registry host: `my-app`,
 * `team/app:v1`) that locate sent to `registry` because the local store at `storeDir` does not
 * hold it into one line naming both places looked in; the registry's error alone hides that the
 * local store was searched. Any other error is returned as it is.
 */
export function explainUnreachable(arg: string, registry: string, storeDir: string, e: unknown): unknown {
  if (!isBareName(arg)) return e;
  if (!(e instanceof RegistryUnreachableError)) return e;
  return new KilnError(
    `image ${arg} not found in the local store (${storeDir}) and registry ${registry} unreachable: ${e.reason}`,
    { cause: e },
  );
}

/**
 * isBareName says whether an image argument names no registry host: no transport and a first
 * path part without '.', ':' or "localhost" (the distribution reference rule), so Docker Hub is
 * only the default.
 */
export function isBareName(arg: string): boolean {
  if (arg.startsWith('docker://')) return false;
  if (!arg.includes('/')) return true;
  const first = arg.split('/')[0]!;
  return !(first.includes('.') || first.includes(':') || first === 'localhost');
}
