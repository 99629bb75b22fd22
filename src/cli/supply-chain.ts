import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type Attestations,
  attestations,
  IN_TOTO_PREDICATE_ANNOTATION,
  SIGNER_ANNOTATION,
} from '../attest/artifacts.ts';
import { PREDICATE_TYPE_ANNOTATION } from '../attest/bundle.ts';
import {
  type AttestationLayer,
  attestationImage,
  cosignAttestationTag,
  DSSE_ENVELOPE_MEDIA_TYPE,
  MAX_ATTESTATION_LAYERS,
  mergeAttestations,
} from '../attest/cosign-attestation.ts';
import { COSIGN_SIG_ARTIFACT_TYPE, cosignSignatureTag } from '../attest/cosign-signature.ts';
import { needsPassphrase, readPrivateKey } from '../attest/keys.ts';
import type { Provenance } from '../attest/provenance.ts';
import { referrerImage } from '../attest/referrer-image.ts';
import { keySigner, type Signer } from '../attest/signer.ts';
import { statementBytes } from '../attest/statement.ts';
import type { InspectReferrer } from '../inspect/inspect.ts';
import { downloadSbom } from '../inspect/sbom-download.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { type Digest, sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { DEFAULT_EPOCH } from '../oci/memory.ts';
import type { Descriptor } from '../oci/schema.ts';
import { repositoryString } from '../registry/reference.ts';
import { CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE } from '../sbom/document.ts';
import { KILN_TOOL } from '../stack/sbom.ts';
import type { ImageTarget, Referrer } from '../transport/image-target.ts';
import type { Transports } from '../transport/transports.ts';
import type { CliContext } from './context.ts';
import type { SupplyChainFlags } from './supply-chain-options.ts';

// The supply-chain steps commands share: load the signing key (in kiln's process only; its
// passphrase from KILN_PASSWORD / COSIGN_PASSWORD or a prompt), write the provenance file, and
// attach SBOMs, provenance and signatures to the image as referrers (plus cosign's `.sig` tag in
// registries). build, rebase and sign call these.

/** Flags of the supply-chain options of build and rebase. */
/** promptPassphrase reads a passphrase from the terminal without echoing it. */
async function promptPassphrase(ctx: CliContext, what: string): Promise<string> {
  if (!process.stdin.isTTY)
    throw new UsageError(`${what} is encrypted: set KILN_PASSWORD (or COSIGN_PASSWORD) to its passphrase`);
  ctx.stderr.write(`Passphrase for ${what}: `);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let text = '';
  try {
    for await (const chunk of process.stdin) {
      const s = String(chunk);
      if (s === '\u0003') throw new UsageError('passphrase prompt interrupted');
      const end = s.search(/[\r\n]/);
      text += end < 0 ? s : s.slice(0, end);
      if (end >= 0) break;
    }
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.pause();
    ctx.stderr.write('\n');
  }
  return text;
}

/** passphraseOf is the key passphrase from the environment, else asked for. */
export function passphraseOf(ctx: CliContext, what: string): () => Promise<string> {
  return async () => {
    const p = ctx.settings.signingPassphrase ?? (await promptPassphrase(ctx, what));
    ctx.redactor.add(p);
    return p;
  };
}

/**
 * loadSigner reads `keyFile` into a signer. A key inside the app directory is refused: the build
 * copies that directory into the sandbox and, maybe, the image.
 */
export async function loadSigner(ctx: CliContext, keyFile: string, appDir?: string): Promise<Signer> {
  const file = path.resolve(keyFile);
  if (appDir) {
    const rel = path.relative(path.resolve(appDir), file);
    if (!rel.startsWith('..') && !path.isAbsolute(rel))
      throw new UsageError(
        `--sign-key ${keyFile} is inside the app directory ${appDir}: the build would copy it into the sandbox; keep keys elsewhere`,
      );
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--sign-key ${keyFile}: ${(e as Error).message}`);
  }
  ctx.redactor.add(text);
  const ask = needsPassphrase(text) ? passphraseOf(ctx, keyFile) : async () => '';
  return keySigner(await readPrivateKey(text, ask, keyFile));
}

/** An image's merged SBOM documents, and the per-layer CycloneDX documents buildpacks wrote. */
export interface MergedSboms {
  cyclonedx?: Uint8Array;
  spdx?: Uint8Array;
  layers: Uint8Array[];
}

/** mergedSboms are the image's merged CycloneDX and SPDX documents, as `kiln sbom download` writes them. */
export async function mergedSboms(
  ctx: CliContext,
  image: Image,
  name: string,
  images: Transports,
): Promise<MergedSboms> {
  const { runImageSbom } = await import('./commands/sbom.ts');
  const dir = await mkdtemp(path.join(ctx.settings.env.TMPDIR ?? tmpdir(), 'kiln-sbom-'));
  try {
    const baseSbom = await runImageSbom(image, images, (m) => ctx.log.debug(m));
    const r = await downloadSbom({
      image,
      name,
      outputDir: dir,
      formats: ['cyclonedx', 'spdx'],
      ...(baseSbom ? { baseSbom } : {}),
      epoch: ctx.settings.sourceDateEpoch ?? DEFAULT_EPOCH,
      tool: KILN_TOOL,
    });
    const out: MergedSboms = {
      layers: await Promise.all(
        r.files.filter((f) => f.endsWith('/sbom.cdx.json')).map((f) => readFile(path.join(dir, f))),
      ),
    };
    if (r.merged.includes('sbom.cdx.json')) out.cyclonedx = await readFile(path.join(dir, 'sbom.cdx.json'));
    if (r.merged.includes('sbom.spdx.json')) out.spdx = await readFile(path.join(dir, 'sbom.spdx.json'));
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** writeProvenance writes the statement to `file` (whole or not at all). */
export async function writeProvenance(file: string, p: Provenance): Promise<void> {
  await writeFileAtomic(
    path.resolve(file),
    Buffer.from(`${JSON.stringify(JSON.parse(new TextDecoder().decode(statementBytes(p))), null, 2)}\n`),
  );
}

/** repositoryOf is the repository an image target names (for the simple-signing payload). */
export function repositoryOf(target: ImageTarget, images: Transports): string {
  if (target.registry === undefined) return target.imageName;
  return repositoryString(images.registryReference(target.name, 'image'));
}

/**
 * attachAll writes the artifacts as referrers of the image at each target, and the signature
 * under cosign's `.sig` tag where the target is a registry (what `cosign verify` reads).
 */
export async function attachAll(
  targets: readonly ImageTarget[],
  a: Attestations,
  digest: Digest,
  images: Transports,
): Promise<void> {
  for (const t of targets) {
    const sig = a.signature;
    const tag =
      sig && t.registry !== undefined
        ? images.parse(
            `${repositoryString(images.registryReference(t.name, 'image'))}:${cosignSignatureTag(digest)}`,
          )
        : undefined;
    if (t.referrers.attachAll) await t.referrers.attachAll(digest, a.referrers, supersedes);
    // One at a time: without a referrers API each attach rewrites the same `sha256-<hex>` index.
    else for (const r of a.referrers) await t.referrers.attach(r);
    if (tag && sig) await tag.write(sig);
    if (a.cosignAttestations?.length && t.registry !== undefined)
      await writeAttestationTag(t, digest, a.cosignAttestations, images);
  }
}

function attestationTag(target: ImageTarget, digest: Digest, images: Transports): ImageTarget {
  const repo = repositoryString(images.registryReference(target.name, 'image'));
  return images.parse(`${repo}:${cosignAttestationTag(digest)}`);
}

/**
 * readAttestationTag reads the DSSE layers under cosign's `sha256-<hex>.att` tag next to a
 * registry image ([] when there is none). The registry is untrusted: at most
 * MAX_ATTESTATION_LAYERS layers of at most 16 MiB each, checked against their digests.
 */
async function readAttestationTag(
  target: ImageTarget,
  digest: Digest,
  images: Transports,
): Promise<AttestationLayer[]> {
  let img: Image;
  try {
    img = await attestationTag(target, digest, images).read();
  } catch {
    return []; // no attestations yet (a missing tag is the usual case)
  }
  const [manifest, layers] = await Promise.all([img.manifest(), img.layers()]);
  if (manifest.layers.length > MAX_ATTESTATION_LAYERS)
    throw new KilnError(
      `${target.name}: cosign attestation tag of ${digest} has ${manifest.layers.length} layers; refusing more than ${MAX_ATTESTATION_LAYERS}`,
    );
  const out: AttestationLayer[] = [];
  for (const [i, d] of manifest.layers.entries()) {
    if (d.mediaType !== DSSE_ENVELOPE_MEDIA_TYPE) continue;
    if (d.size > 16 << 20) throw new KilnError(`${target.name}: attestation layer ${d.digest} is too large`);
    const bytes = new Uint8Array(await new Response(await layers[i]!.compressed()).arrayBuffer());
    if (sha256(bytes) !== d.digest)
      throw new KilnError(`${target.name}: attestation layer ${d.digest} does not match its digest`);
    out.push({ envelope: bytes, annotations: { ...(d.annotations ?? {}) } });
  }
  return out;
}

/** writeAttestationTag adds `added` to the `.att` tag, replacing the same signer's earlier ones. */
async function writeAttestationTag(
  target: ImageTarget,
  digest: Digest,
  added: readonly AttestationLayer[],
  images: Transports,
): Promise<void> {
  const existing = await readAttestationTag(target, digest, images);
  const layers = mergeAttestations(existing, added, SIGNER_ANNOTATION);
  await attestationTag(target, digest, images).write(attestationImage(layers));
}

/** The whole step after an image was written: provenance file, artifacts, attach. */
export async function attestImage(o: {
  ctx: CliContext;
  images: Transports;
  targets: readonly ImageTarget[];
  image: Image;
  provenance: Provenance;
  flags: SupplyChainFlags;
  signer: Signer | undefined;
  /** Attach when the flags say nothing (build: when publishing). */
  attachByDefault: boolean;
  /** The SBOM documents to attach; default: the image's merged documents. */
  sboms?: { cyclonedx?: Uint8Array; spdx?: Uint8Array };
}): Promise<void> {
  const { ctx, images, targets, image, provenance, flags, signer } = o;
  if (flags.provenanceOutput) await writeProvenance(flags.provenanceOutput, provenance);
  const attach = flags.attest ?? (o.attachByDefault || signer !== undefined);
  if (!attach) return;
  if (flags.attest === false && signer)
    throw new UsageError('--sign-key and --no-attest exclude each other: signatures are attached');
  const first = targets[0];
  if (!first) throw new KilnError('no image to attach attestations to');
  const started = performance.now();
  const digest = (await image.digest()) as Digest;
  const raw = await image.rawManifest();
  const subject = { mediaType: await image.mediaType(), digest, size: raw.length };
  const sboms = o.sboms ?? (await mergedSboms(ctx, image, first.imageName, images));
  ctx.log.debug(`Attestations: SBOMs merged at ${(performance.now() - started).toFixed(0)} ms`);
  const a = await attestations({
    subject,
    name: first.imageName,
    repository: repositoryOf(first, images),
    provenance,
    ...sboms,
    ...(signer ? { signer } : {}),
  });
  ctx.log.debug(`Attestations: signed at ${(performance.now() - started).toFixed(0)} ms`);
  await attachAll(targets, a, digest, images);
  ctx.log.debug(`Attestations: ${(performance.now() - started).toFixed(0)} ms`);
  ctx.log.info(
    `Attached ${a.referrers.length} artifacts to ${first.name}@${digest}${signer ? ` (signed, key ${signer.keyId.slice(0, 12)})` : ''}`,
  );
}

/** newRun starts the run facts of a provenance. */
export function runStart(): { invocationId: string; startedOn: Date } {
  return { invocationId: `urn:uuid:${randomUUID()}`, startedOn: new Date() };
}

/**
 * copyReferrers attaches every referrer of `digest` at `from` (SBOMs, provenance, signatures) to
 * `to`, unchanged; a cosign signature also goes under its `.sig` tag in a registry. Returns how many.
 */
export async function copyReferrers(
  from: ImageTarget,
  to: ImageTarget,
  digest: Digest,
  images: Transports,
): Promise<number> {
  const found = await from.referrers.list(digest);
  // Nothing to carry: the destination gets no (empty) referrers index or tag either.
  if (found.length === 0) return 0;
  const all: Image[] = [];
  let signature: Image | undefined;
  for (const r of found) {
    const img = await referrerImage(r);
    all.push(img);
    if (r.descriptor.artifactType === COSIGN_SIG_ARTIFACT_TYPE) signature = img;
  }
  await attachAll([to], { referrers: all, ...(signature ? { signature } : {}) }, digest, images);
  // cosign's `.att` tag is no referrer: copied (merged into the destination's) between registries.
  if (from.registry !== undefined && to.registry !== undefined) {
    const att = await readAttestationTag(from, digest, images);
    if (att.length) await writeAttestationTag(to, digest, att, images);
  }
  return found.length;
}

/**
 * attachedTo lists the referrers of `digest` at `target` for `kiln inspect` (undefined when the
 * location cannot be asked; inspect still shows the image).
 */
export async function attachedTo(
  target: ImageTarget,
  digest: string,
  debug: (m: string) => void,
): Promise<InspectReferrer[] | undefined> {
  try {
    const rs = await target.referrers.list(digest as Digest);
    return rs.map((r) => {
      const a = r.manifest.annotations ?? {};
      const predicateType = a[PREDICATE_TYPE_ANNOTATION] ?? a[IN_TOTO_PREDICATE_ANNOTATION];
      return {
        digest: r.descriptor.digest,
        artifactType: r.descriptor.artifactType ?? '',
        ...(predicateType ? { predicateType } : {}),
      };
    });
  } catch (e) {
    debug(`referrers of ${target.name}: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * writeAttachedSboms writes the image's SBOM referrers (the first CycloneDX and SPDX document
 * attached) to `<dir>/attached/sbom.cdx.json` and `sbom.spdx.json`; returns the relative paths.
 */
export async function writeAttachedSboms(
  target: ImageTarget,
  digest: string,
  dir: string,
  formats: readonly string[],
): Promise<string[]> {
  const out: string[] = [];
  const kinds = [
    { format: 'cyclonedx', type: CYCLONEDX_MEDIA_TYPE, file: 'attached/sbom.cdx.json' },
    { format: 'spdx', type: SPDX_MEDIA_TYPE, file: 'attached/sbom.spdx.json' },
  ].filter((k) => formats.includes(k.format));
  for (const k of kinds) {
    const r = (await target.referrers.list(digest as Digest, k.type))[0];
    const l = r?.manifest.layers.find((x) => x.mediaType === k.type);
    if (!r || !l) continue;
    await writeFileAtomic(path.join(dir, k.file), await r.blob(l));
    out.push(k.file);
  }
  return out;
}

/**
 * supersedes: a newer attestation of the same kind (artifact type and predicate type) by the
 * same kiln signer replaces an older one in the referrers index; others' entries stay.
 */
function supersedes(old: Descriptor, added: Descriptor): boolean {
  const signer = added.annotations?.[SIGNER_ANNOTATION];
  if (!signer || old.annotations?.[SIGNER_ANNOTATION] !== signer) return false;
  const predicate = (d: Descriptor) =>
    d.annotations?.[PREDICATE_TYPE_ANNOTATION] ?? d.annotations?.[IN_TOTO_PREDICATE_ANNOTATION];
  return old.artifactType === added.artifactType && predicate(old) === predicate(added);
}

/**
 * cosignTagSignature reads the manifest under cosign's `sha256-<hex>.sig` tag next to a registry
 * image as a Referrer (cosign's own signatures carry no subject, so no referrers list names them);
 * undefined when there is none.
 */
export async function cosignTagSignature(
  target: ImageTarget,
  digest: Digest,
  images: Transports,
  debug: (m: string) => void,
): Promise<Referrer | undefined> {
  try {
    const repo = repositoryString(images.registryReference(target.name, 'image'));
    const img = await images.parse(`${repo}:${cosignSignatureTag(digest)}`).read();
    const [manifest, raw, layers] = await Promise.all([img.manifest(), img.rawManifest(), img.layers()]);
    return {
      descriptor: {
        mediaType: await img.mediaType(),
        digest: await img.digest(),
        size: raw.length,
        artifactType: COSIGN_SIG_ARTIFACT_TYPE,
      },
      manifest,
      raw,
      blob: async (d) => {
        const i = manifest.layers.findIndex((l) => l.digest === d.digest);
        const layer = layers[i];
        if (!layer || d.size > 16 << 20) throw new KilnError(`signature blob ${d.digest} cannot be read`);
        return new Uint8Array(await new Response(await layer.compressed()).arrayBuffer());
      },
    };
  } catch (e) {
    debug(`cosign signature tag of ${target.name}: ${(e as Error).message}`);
    return undefined;
  }
}
