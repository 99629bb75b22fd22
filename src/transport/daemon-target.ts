import type { DaemonClient } from '../daemon/client.ts';
import { KilnError } from '../internal/errors.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { DOCKER_HUB, type Reference } from '../registry/reference.ts';
import type { ImageStore } from '../store/store.ts';
import {
  type Description,
  describeValue,
  type ImageTarget,
  isIndex,
  noIndexes,
  type Referrer,
  type Referrers,
  type Written,
} from './image-target.ts';

// An image in a Docker or Podman daemon as an ImageTarget (`docker-daemon:NAME[:TAG]`, `kiln build
// --daemon`). Reads export the image (`/images/{name}/get`) into kiln's blob store as it streams;
// writes stream a docker-archive to `/images/load`. Layers the daemon already holds go as empty
// members: both engines skip reading a layer they have (Podman's compatible API by diffID,
// Docker by layer chain), so a rebuild sends only what changed. A daemon that refuses the slim
// archive gets the whole one, once.

const archive = () => import('../archive/docker-archive.ts');
const exporter = () => import('../daemon/export.ts');

/** One command's daemon: the client and the layer chains seen in it so far. */
export class DaemonSession {
  readonly client: DaemonClient;
  readonly #chains: (readonly string[])[] = [];
  readonly #store: () => Promise<ImageStore>;
  readonly #debug: (msg: string) => void;

  constructor(client: DaemonClient, store: () => Promise<ImageStore>, debug?: (msg: string) => void) {
    this.client = client;
    this.#store = store;
    this.#debug = debug ?? (() => {});
  }

  /** remember records that the daemon holds an image with layers `diffIDs`. */
  remember(diffIDs: readonly string[]): void {
    if (diffIDs.length) this.#chains.push([...diffIDs]);
  }

  blobs(): Promise<BlobStore> {
    return this.#store().then((s) => s.blobs);
  }

  debug(msg: string): void {
    this.#debug(msg);
  }

  /**
   * presence tells which layers of an image with `diffIDs` the daemon holds, from the images
   * named `names` there (a previous build) and every daemon image this command read: by diffID
   * on Podman (its storage reuses any layer with that content), by whole chain prefix on Docker
   * (its layer store is keyed by chain ID).
   */
  async presence(names: readonly string[], diffIDs: readonly string[]): Promise<boolean[]> {
    for (const n of names) {
      const info = await this.client.inspect(n);
      if (info) this.remember(info.diffIDs);
    }
    if ((await this.client.engine()) === 'podman') {
      const have = new Set(this.#chains.flat());
      return diffIDs.map((d) => have.has(d));
    }
    const prefixes = new Set(this.#chains.flatMap((c) => c.map((_, i) => c.slice(0, i + 1).join(','))));
    return diffIDs.map((_, i) => prefixes.has(diffIDs.slice(0, i + 1).join(',')));
  }
}

/** daemonRepository is how the daemon names `ref`'s repository (Docker Hub as docker.io). */
function daemonRepository(ref: Reference): string {
  return `${ref.registry === DOCKER_HUB ? 'docker.io' : ref.registry}/${ref.repository}`;
}

/** daemonName is how the daemon names `ref` (Docker Hub as docker.io, a tag always). */
export function daemonName(ref: Reference): string {
  const base = daemonRepository(ref);
  if (ref.digest && ref.tag === undefined) return `${base}@${ref.digest}`;
  return `${base}:${ref.tag ?? 'latest'}`;
}

/** DaemonTarget is one image name in the daemon. */
export class DaemonTarget implements ImageTarget {
  readonly name: string;
  readonly imageName: string;
  readonly ref: Reference;
  readonly referrers: Referrers;
  readonly #session: DaemonSession;

  constructor(ref: Reference, session: DaemonSession) {
    this.ref = ref;
    this.imageName = daemonName(ref);
    this.name = `docker-daemon:${this.imageName}`;
    this.#session = session;
    const name = this.name;
    this.referrers = {
      // A daemon keeps images only: there are no referrers to list, and none can be kept.
      list: async (): Promise<Referrer[]> => [],
      attach: async () => {
        throw new KilnError(`${name}: a Docker or Podman daemon cannot hold referrers (SBOMs, signatures)`);
      },
    };
  }

  async read(): Promise<Image> {
    const s = this.#session;
    const info = await s.client.inspect(this.imageName);
    if (!info)
      throw new KilnError(`image ${this.imageName} not found in the daemon (${s.client.endpoint().display})`);
    const image = await (await exporter()).importExport(
      await s.client.exportImage(this.imageName),
      await s.blobs(),
      `${this.name} (export)`,
    );
    const diffIDs = (await image.configFile()).rootfs.diff_ids;
    s.remember(diffIDs);
    return image;
  }

  readAny(): Promise<Image | ImageIndex> {
    return this.read();
  }

  async find(): Promise<Image | undefined> {
    if (!(await this.#session.client.inspect(this.imageName))) return undefined;
    return this.read();
  }

  write(value: Image | ImageIndex): Promise<Written> {
    return this.writeNames(value, [this]);
  }

  /** writeNames loads `value` once under the names of `targets` (this one first: `--tag`). */
  async writeNames(value: Image | ImageIndex, targets: readonly DaemonTarget[]): Promise<Written> {
    if (isIndex(value)) throw noIndexes(this.name);
    const s = this.#session;
    const names = targets.map((t) => t.imageName);
    for (const t of targets)
      if (t.ref.digest) throw new KilnError(`${t.name}: a daemon image is written under a tag, not a digest`);
    const configDigest = (await value.manifest()).config.digest;
    // The daemon has this very image (same config, so same layers): naming it is all there is to do.
    if (await s.client.inspect(configDigest)) {
      for (const t of targets)
        await s.client.tag(configDigest, daemonRepository(t.ref), t.ref.tag ?? 'latest');
      s.debug(`daemon already holds ${configDigest}: tagged ${names.join(', ')} (nothing loaded)`);
      return { digest: await value.digest(), names };
    }
    const diffIDs = (await value.configFile()).rootfs.diff_ids;
    const present = await s.presence(names, diffIDs);
    const omitted = present.filter(Boolean).length;
    const { dockerArchiveStream } = await archive();
    const load = async (slim: boolean) =>
      s.client.load(
        await dockerArchiveStream([{ image: value, tags: names }], {
          ...(slim ? { present: (_img: Image, i: number) => present[i] === true } : {}),
        }),
      );
    s.debug(
      `daemon load ${names.join(', ')}: ${diffIDs.length - omitted} of ${diffIDs.length} layers sent, ${omitted} already in the daemon`,
    );
    try {
      await load(omitted > 0);
    } catch (e) {
      if (omitted === 0) throw e;
      s.debug(`daemon refused the slim archive (${(e as Error).message}); sending every layer`);
      await load(false);
    }
    for (const n of names) {
      const info = await s.client.inspect(n);
      if (info?.id !== configDigest)
        throw new KilnError(
          `${this.name}: after the load the daemon names ${info?.id ?? 'nothing'}, not ${configDigest}`,
        );
    }
    s.remember(diffIDs);
    return { digest: await value.digest(), names };
  }

  async describe(): Promise<Description> {
    return describeValue(await this.read());
  }

  digestReference(digest: string): string {
    return `${this.name.replace(/:[^:/@]+$/, '')}@${digest}`;
  }

  stagingBlobs(): Promise<BlobStore> {
    return this.#session.blobs();
  }
}
