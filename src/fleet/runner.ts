import { mkdtemp, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { KilnError } from '../internal/errors.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { RebaseRefusedError, rebase } from '../rebase/rebase.ts';
import { parseReference } from '../registry/reference.ts';
import type { ImageTarget } from '../transport/image-target.ts';
import type { Transports } from '../transport/transports.ts';
import type { ImageDeclaration } from './declarations.ts';
import type { Git } from './git.ts';
import type { Job, JobKind } from './state.ts';

// How one job is done. A rebase happens here, in process, through src/rebase/ exactly as
// `kiln rebase --publish` does it (manifests only: the app layers and the new run image's layers
// are already in the registry, so nothing but a config and a manifest is uploaded). A build is
// handed to `build`, which the CLI implements by running `kiln build --publish` in process
// (src/cli/commands/fleet.ts): one code path for every build, whoever starts it.

/** One build as `kiln build --publish` takes it. */
export interface BuildRequest {
  readonly decl: ImageDeclaration;
  readonly appDir: string;
  /** The builder to use, pinned by digest when it is watched. */
  readonly builder: string | undefined;
  readonly log: (line: string) => void;
}

/** Runs one build; resolves with the published manifest digest. */
export type BuildFn = (r: BuildRequest) => Promise<{ digest: string }>;

/** What a rebase of an image with a signing key knows before it writes (as `kiln rebase`). */
export interface RebaseAttestRequest {
  readonly decl: ImageDeclaration & { readonly signingKey: string };
  /** The app image as read, and its digest reference. */
  readonly app: Image;
  readonly appName: string;
  readonly runImage: { readonly reference: string; readonly digest: Digest };
  readonly log: (line: string) => void;
}

/**
 * Starts the supply-chain step of a signed rebase: loads the key (a bad key fails the job before
 * anything is written) and resolves with `finish`, which attaches provenance, SBOM and signatures
 * to the written image.
 */
export type RebaseAttestFn = (
  r: RebaseAttestRequest,
) => Promise<{ finish(target: ImageTarget, result: Image, images: Transports): Promise<void> }>;

export interface RunnerOptions {
  readonly transports: Transports;
  readonly build: BuildFn;
  /** Signs and attests rebases of images that declare a signing key (required for them). */
  readonly attestRebase?: RebaseAttestFn;
  readonly git: Git;
  /** Where source checkouts go (removed after each build). */
  readonly tmpDir: string;
}

export class JobRunner {
  readonly #o: RunnerOptions;
  readonly #runImages = new Map<string, Promise<Image>>();
  constructor(o: RunnerOptions) {
    this.#o = o;
  }

  /** run does `job` for `decl`; resolves with the digest published and what was done. */
  async run(
    job: Job,
    decl: ImageDeclaration,
    log: (line: string) => void,
  ): Promise<{ digest: string; kind: JobKind }> {
    if (job.kind === 'rebase') {
      try {
        return { digest: await this.#rebase(job, decl, log), kind: 'rebase' };
      } catch (e) {
        // Not rebasable (no metadata, marked not rebasable, another base): a rebuild instead.
        if (!(e instanceof RebaseRefusedError)) throw e;
        log(`${e.message}: rebuilding instead`);
      }
    }
    return { digest: await this.#build(job, decl, log), kind: 'build' };
  }

  async #rebase(job: Job, decl: ImageDeclaration, log: (line: string) => void): Promise<string> {
    const runName = decl.watchedRunImage;
    const runDigest = job.inputs.runImage;
    if (runName === undefined || runDigest === undefined)
      throw new KilnError(`cannot rebase ${decl.name}: no watched run image`);
    const images0 = this.#o.transports;
    const target = images0.parse(decl.tag);
    if (target.registry === undefined)
      throw new KilnError(`${decl.name}: tag ${decl.tag} is not a registry reference`);
    const app = await target.read();
    const cfg = await app.configFile();
    const images = images0.with({
      platform: {
        os: cfg.os,
        architecture: cfg.architecture,
        ...(cfg.variant ? { variant: cfg.variant } : {}),
      },
    });
    // The run image exactly as observed (by digest), so a retried job rebases onto the same base;
    // read once for all the images that move onto it (a digest never changes).
    const runTarget = images.parse(pinned(runName, runDigest));
    const key = `${pinned(runName, runDigest)} ${cfg.os}/${cfg.architecture}/${cfg.variant ?? ''}`;
    let reading = this.#runImages.get(key);
    if (reading === undefined) {
      reading = runTarget.read();
      reading.catch(() => this.#runImages.delete(key));
      if (this.#runImages.size >= 8) this.#runImages.clear();
      this.#runImages.set(key, reading);
    }
    const run = await reading;
    const readDigest = await run.digest();
    const runReference = runTarget.digestReference(readDigest);
    const attest = await this.#startAttestation(decl, app, target, runReference, readDigest, log);
    log(`Rebasing ${decl.tag} onto ${runName}@${runDigest}`);
    const result = await rebase({
      image: app,
      imageName: decl.tag,
      runImage: run,
      runImageName: runName,
      runImageReference: runReference,
      explicitRunImage: true,
      force: false,
    });
    if (attest !== undefined) {
      // Signed: the image by digest, then its referrers and signature, and only then the tag
      // moves, so whoever pulls the tag never gets an unsigned image (`kiln rebase --sign-key`
      // tags first; a retry after a failure here rewrites the same digest).
      const byDigest = images.parse(pinned(decl.tag, await result.image.digest()));
      await byDigest.write(result.image);
      await attest.finish(target, result.image, images);
    }
    const written = await target.write(result.image);
    log(
      `Rebased ${decl.tag}: ${result.removedBaseLayers} base layers replaced by ${result.addedBaseLayers}, ${result.appLayers} app layers kept: ${written.digest}`,
    );
    return written.digest;
  }

  async #startAttestation(
    decl: ImageDeclaration,
    app: Image,
    target: ImageTarget,
    runReference: string,
    runDigest: Digest,
    log: (line: string) => void,
  ) {
    const signingKey = decl.signingKey;
    if (signingKey === undefined) return undefined;
    if (this.#o.attestRebase === undefined)
      throw new KilnError(`${decl.name}: cannot sign a rebase here (no signer configured)`);
    return this.#o.attestRebase({
      decl: { ...decl, signingKey },
      app,
      appName: target.digestReference(await app.digest()),
      runImage: { reference: runReference, digest: runDigest },
      log,
    });
  }

  async #build(job: Job, decl: ImageDeclaration, log: (line: string) => void): Promise<string> {
    let scratch: string | undefined;
    try {
      let appDir: string;
      if ('git' in decl.source) {
        const commit = job.inputs.commit;
        if (commit === undefined)
          throw new KilnError(`${decl.name}: no commit observed for ${decl.source.git}`);
        scratch = await mkdtemp(path.join(this.#o.tmpDir, 'kiln-fleet-src-'));
        const root = path.join(scratch, 'src');
        log(`Checking out ${decl.source.git} ${decl.source.ref} at ${commit}`);
        await this.#o.git.checkout(decl.source.git, commit, root);
        appDir = root;
        if (decl.source.subdir !== undefined) {
          // The repository is untrusted: its subdir must not be a link out of the checkout.
          appDir = await realpath(path.join(root, decl.source.subdir));
          if (!appDir.startsWith(`${await realpath(root)}${path.sep}`))
            throw new KilnError(
              `${decl.name}: source.subdir ${decl.source.subdir} leads out of the repository`,
            );
        }
      } else appDir = decl.source.path;
      const builder =
        decl.builder !== undefined && job.inputs.builder !== undefined
          ? pinned(decl.builder, job.inputs.builder)
          : decl.builder;
      const { digest } = await this.#o.build({ decl, appDir, builder, log });
      return digest;
    } finally {
      if (scratch) await rm(scratch, { recursive: true, force: true });
    }
  }
}

/** pinned is `ref`'s repository at `digest` (`host/repo@sha256:…`). */
export function pinned(ref: string, digest: string): string {
  const r = parseReference(ref);
  return `${r.registry}/${r.repository}@${digest}`;
}
