import { KilnError } from '../internal/errors.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { repositoryString } from '../registry/reference.ts';
import type { ImageStore } from '../store/store.ts';
import { DaemonTarget } from './daemon-target.ts';
import type { Description, ImageTarget, ReadOptions, Referrers, Written } from './image-target.ts';
import { RegistryTarget } from './registry-target.ts';
import { StoreTarget, writeToStore } from './store-target.ts';

// `--tag`: one image written to several names and places in one write. Names in the local store
// share one store write; tags of one registry repository share one push (the manifest is put
// under each tag, the blobs once); every other destination is written after those, and skips
// the blobs it already has. Reads come from the first target (the primary name).

/** FanOut writes to every target; it reads (previous image, referrers) from the first. */
export class FanOut implements ImageTarget {
  readonly targets: readonly ImageTarget[];
  readonly #store: () => Promise<ImageStore>;

  constructor(targets: readonly ImageTarget[], store: () => Promise<ImageStore>) {
    if (targets.length === 0) throw new TypeError('FanOut: at least one target is required');
    this.targets = targets;
    this.#store = store;
  }

  get #first(): ImageTarget {
    return this.targets[0]!;
  }
  get name(): string {
    return this.#first.name;
  }
  get imageName(): string {
    return this.#first.imageName;
  }
  get registry(): string | undefined {
    return this.#first.registry;
  }
  get referrers(): Referrers {
    return this.#first.referrers;
  }
  read(opts?: ReadOptions): Promise<Image> {
    return this.#first.read(opts);
  }
  readAny(): Promise<Image | ImageIndex> {
    return this.#first.readAny();
  }
  find(): Promise<Image | undefined> {
    return this.#first.find();
  }
  describe(): Promise<Description> {
    return this.#first.describe();
  }
  digestReference(digest: string): string {
    return this.#first.digestReference(digest);
  }
  stagingBlobs(): Promise<BlobStore | undefined> {
    return this.#first.stagingBlobs();
  }

  async write(value: Image | ImageIndex): Promise<Written> {
    const names = new Map<ImageTarget, readonly string[]>();
    let digest: Written['digest'] | undefined;
    const record = (ts: readonly ImageTarget[], w: Written) => {
      if (digest !== undefined && w.digest !== digest)
        throw new KilnError(`${ts[0]!.name}: wrote ${w.digest}, the other names have ${digest}`);
      digest = w.digest;
      for (const [i, t] of ts.entries()) names.set(t, [w.names[i] ?? t.imageName]);
    };
    const stored = this.targets.filter((t) => t instanceof StoreTarget);
    if (stored.length) record(stored, await writeToStore(await this.#store(), stored, value));
    const byRepo = new Map<string, RegistryTarget[]>();
    for (const t of this.targets) {
      if (!(t instanceof RegistryTarget)) continue;
      // A digest reference takes no tags; it is pushed as it is.
      const key = t.ref.digest || t.ref.tag === undefined ? `${t.name}\0` : repositoryString(t.ref);
      byRepo.set(key, [...(byRepo.get(key) ?? []), t]);
    }
    for (const group of byRepo.values()) {
      const [head, ...rest] = group;
      const w = await head!.writeTagged(
        value,
        rest.map((t) => t.ref.tag!),
      );
      record(group, { digest: w.digest, names: group.map((t) => t.imageName) });
    }
    // Names in the daemon share one load.
    const daemons = this.targets.filter((t) => t instanceof DaemonTarget);
    if (daemons.length) record(daemons, await daemons[0]!.writeNames(value, daemons));
    const handled = (t: ImageTarget) =>
      t instanceof StoreTarget || t instanceof RegistryTarget || t instanceof DaemonTarget;
    for (const t of this.targets) if (!handled(t)) record([t], await t.write(value));
    return { digest: digest!, names: this.targets.flatMap((t) => names.get(t) ?? []) };
  }
}
