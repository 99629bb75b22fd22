// Supply chain end to end against a real registry (Docker Distribution, no referrers API: the
// `sha256-<hex>` tag-schema fallback carries every referrer): a fixture build published with
// provenance, merged SBOMs and a cosign-style signature by a key `kiln key generate` made; then
// `kiln verify` (the CLI, in process) passes, and fails with the right line for each way an
// image can be wrong: re-tagged to another digest, a flipped signature byte, a builder the policy
// does not allow, no SBOM, the wrong key. The provenance validates against the vendored in-toto
// Statement v1 and SLSA Provenance v1 schemas and names the builder, run image and buildpacks with
// the digests the image's own labels and the builder's record.

import assert from 'node:assert/strict';
import { verify as cryptoVerify } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { attestations } from '../../src/attest/artifacts.ts';
import { signatureImage, simpleSigningPayload } from '../../src/attest/cosign-signature.ts';
import { readPrivateKey } from '../../src/attest/keys.ts';
import type { Provenance } from '../../src/attest/provenance.ts';
import { keySigner } from '../../src/attest/signer.ts';
import { startBuildAttestation } from '../../src/cli/build-attest.ts';
import { createContext } from '../../src/cli/context.ts';
import { loadSigner } from '../../src/cli/supply-chain.ts';
import {
  BUILD_METADATA_LABEL,
  LIFECYCLE_METADATA_LABEL,
  parseBuildMetadata,
  parseLifecycleMetadata,
} from '../../src/cnb/lifecycle-metadata.ts';
import { type Digest, sha256 } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { ImageStore } from '../../src/store/store.ts';
import { Transports } from '../../src/transport/transports.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';
import { runMain } from '../helpers/cli.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

const addFormats = addFormatsModule as unknown as (a: Ajv) => Ajv;
const SCHEMAS = path.join(import.meta.dirname, 'schemas');
const PASS = 'correct horse battery staple';

let w: E2E;
let reg: RegistryHandle;
let work: string;
let env: Record<string, string>;
let key: string;
let pub: string;
let otherPub: string;
let t: Transports;
let signedRef: string;
let signedDigest: Digest;
let provenance: Provenance;

const sink = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

async function kiln(...argv: string[]) {
  return runMain(['--insecure-registry', reg.host, ...argv], env);
}

/** publish builds `app` into `ref` (fixture build) and, with `attest`, attaches as kiln build does. */
async function publish(
  app: string,
  ref: string,
  attest: boolean,
  buildEnv: Record<string, string> = {},
): Promise<Provenance | undefined> {
  const dest = t.parse(ref);
  await w.build(app, ref, { dest: ref, env: buildEnv });
  if (!attest) return undefined;
  const ctx = createContext({ stdout: sink(), stderr: sink(), env, isTTY: false });
  ctx.init({});
  const signer = await loadSigner(ctx, key, app);
  const out = path.join(work, 'provenance.json');
  const att = startBuildAttestation(
    ctx,
    { provenanceOutput: out },
    true,
    {
      appDir: app,
      builder: {
        name: 'e2e/builder',
        reference: `docker.io/e2e/builder@${await w.builder.digest()}`,
        image: w.builder,
      },
      buildpacks: [],
      envNames: Object.keys(buildEnv),
      options: { compression: 'gzip' },
    },
    signer,
  );
  assert.ok(att);
  await att.finish([dest], t);
  return JSON.parse(await readFile(out, 'utf8')) as Provenance;
}

before(async () => {
  [w, reg] = await Promise.all([makeE2E(), startRegistry()]);
  work = await mkdtemp(path.join(tmpdir(), 'kiln-attest-'));
  env = { HOME: work, KILN_HOME: path.join(work, 'home'), KILN_PASSWORD: PASS };
  t = new Transports({ client: new RegistryClient({}), storeDir: w.store.dir }, w.store);
  const gen = await kiln('key', 'generate', '--output-key-prefix', path.join(work, 'release'));
  assert.equal(gen.code, 0, gen.err);
  key = path.join(work, 'release.key');
  pub = path.join(work, 'release.pub');
  assert.match(await readFile(key, 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
  const other = await kiln('key', 'generate', '--output-key-prefix', path.join(work, 'other'));
  assert.equal(other.code, 0, other.err);
  otherPub = path.join(work, 'other.pub');
  signedRef = `${reg.host}/e2e/signed:v1`;
  provenance = (await publish(await w.app('signed', 'signed app'), signedRef, true, {
    SECRET_TOKEN: 'sup3r-s3cr3t-value',
  }))!;
  signedDigest = (await t.parse(signedRef).describe()).digest;
});
after(async () => {
  await reg?.stop();
  await w?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('provenance', () => {
  test('validates against the in-toto Statement v1 and SLSA Provenance v1 schemas', async () => {
    const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
    const statement = ajv.compile(
      JSON.parse(await readFile(path.join(SCHEMAS, 'in-toto-statement-v1.schema.json'), 'utf8')),
    );
    const slsa = ajv.compile(
      JSON.parse(await readFile(path.join(SCHEMAS, 'slsa-provenance-v1.schema.json'), 'utf8')),
    );
    assert.ok(statement(provenance), JSON.stringify(statement.errors));
    assert.ok(slsa(provenance.predicate), JSON.stringify(slsa.errors));
    assert.equal(provenance.predicateType, 'https://slsa.dev/provenance/v1');
    assert.deepEqual(provenance.subject[0]?.digest, { sha256: signedDigest.slice(7) });
    // The schemas can fail: a statement without a subject digest does not validate.
    assert.equal(statement({ ...provenance, subject: [{ name: 'x' }] }), false);
    assert.equal(
      slsa({ buildDefinition: { externalParameters: {} }, runDetails: { builder: { id: 'x' } } }),
      false,
    );
  });

  test('resolvedDependencies name the builder, run image, buildpacks and launcher with the digests the image records', async () => {
    const img: Image = await t.parse(signedRef).read();
    const labels = (await img.configFile()).config?.Labels ?? {};
    const life = parseLifecycleMetadata(labels[LIFECYCLE_METADATA_LABEL]!);
    const build = parseBuildMetadata(labels[BUILD_METADATA_LABEL]!);
    const deps = provenance.predicate.buildDefinition.resolvedDependencies ?? [];
    const byName = (n: string) => deps.find((d) => d.name === n);
    assert.equal(byName('builder')?.digest?.sha256, (await w.builder.digest()).slice(7));
    const runDigest = life.runImage.reference.slice(life.runImage.reference.lastIndexOf('@') + 8);
    assert.equal(byName('run-image')?.digest?.sha256, runDigest);
    assert.equal(byName('launcher')?.digest?.sha256, life.launcher.sha.slice(7));
    // The build image the (kiln-made) builder was made from, and its top layer in the builder.
    const buildImage = (await w.store.find('e2e/build'))!;
    assert.equal(byName('build-image')?.digest?.sha256, (await buildImage.digest()).slice(7));
    const buildLayers = (await buildImage.configFile()).rootfs.diff_ids;
    assert.equal(byName('build-image')?.annotations?.topLayer, buildLayers.at(-1));
    const layers = JSON.parse(
      (await w.builder.configFile()).config!.Labels!['io.buildpacks.buildpack.layers']!,
    );
    assert.ok((build.buildpacks ?? []).length >= 3);
    for (const bp of build.buildpacks ?? []) {
      const d = byName(`buildpack:${bp.id}`);
      assert.ok(d, `buildpack ${bp.id} listed`);
      assert.equal(`sha256:${d.digest?.sha256}`, layers[bp.id][bp.version].layerDiffID, bp.id);
    }
  });

  test('names env variables, never their values', async () => {
    const text = JSON.stringify(provenance);
    assert.deepEqual(provenance.predicate.buildDefinition.externalParameters.env, ['SECRET_TOKEN']);
    assert.ok(!text.includes('sup3r-s3cr3t-value'));
    const src = provenance.predicate.buildDefinition.externalParameters.source as {
      tree: { digest: { sha256: string } };
    };
    assert.match(src.tree.digest.sha256, /^[0-9a-f]{64}$/);
  });
});

describe('kiln verify', () => {
  test('passes for the signed image, in the registry by tag and by digest', async () => {
    const r = await kiln('verify', signedRef, '--key', pub);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^Verified .*signed by .*slsa\.dev\/provenance\/v1.*cyclonedx.*spdx/m);
    const byDigest = await kiln('verify', `${reg.host}/e2e/signed@${signedDigest}`, '--key', pub);
    assert.equal(byDigest.code, 0, byDigest.out + byDigest.err);
  });

  test('a policy that the image meets passes; one key of several suffices', async () => {
    const policy = path.join(work, 'ok.toml');
    await writeFile(
      policy,
      `[provenance]\nrequired = true\nbuilders = ["docker.io/e2e/builder*"]\nrun-images = ["*e2e/run*"]\n[sbom]\nrequired = true\n[signature]\nkeys = ["other.pub", "release.pub"]\n`,
    );
    const r = await kiln('verify', signedRef, '--policy', policy);
    assert.equal(r.code, 0, r.out + r.err);
  });

  test('fails with one line when the tag now names another (unsigned) digest', async () => {
    const ref = `${reg.host}/e2e/retag:v1`;
    await publish(await w.app('retag-a', 'first'), ref, true);
    assert.equal((await kiln('verify', ref, '--key', pub)).code, 0);
    await publish(await w.app('retag-b', 'second'), ref, false);
    const now = (await t.parse(ref).describe()).digest;
    const r = await kiln('verify', ref, '--key', pub);
    assert.notEqual(r.code, 0);
    assert.equal(r.out, `signature: ${now} has no cosign signature\n`);
  });

  test('fails when a byte of the signature is flipped (and for a DSSE envelope)', async () => {
    const img = await t.parse(signedRef).read();
    const copy = t.parse(`${reg.host}/e2e/tampered:v1`);
    await copy.write(img);
    const digest = (await img.digest()) as Digest;
    const subject = { mediaType: await img.mediaType(), digest, size: (await img.rawManifest()).length };
    const signer = keySigner(await readPrivateKey(await readFile(key, 'utf8'), async () => PASS, key));
    const payload = simpleSigningPayload(`${reg.host}/e2e/tampered`, digest);
    const sig = await signer.sign(payload);
    sig[10] = sig[10]! ^ 0x01;
    await copy.referrers.attach(signatureImage(subject, payload, sig));
    const r = await kiln('verify', copy.name, '--key', pub);
    assert.notEqual(r.code, 0);
    assert.equal(r.out, `signature: none of the 1 signatures of ${digest} verifies with the given key(s)\n`);

    // A provenance bundle whose DSSE signature has a flipped byte.
    const a = await attestations({ subject, name: copy.name, repository: 'x', provenance, signer });
    const bundle = a.referrers[0]!;
    const layer = (await bundle.layers())[0]!;
    const json = JSON.parse(
      Buffer.from(await new Response(await layer.compressed()).arrayBuffer()).toString(),
    );
    const s = Buffer.from(json.dsseEnvelope.signatures[0].sig, 'base64');
    s[12] = s[12]! ^ 0x80;
    json.dsseEnvelope.signatures[0].sig = s.toString('base64');
    const { artifactImage } = await import('../../src/sbom/artifact.ts');
    const bad = artifactImage({
      artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      subject,
      files: [
        {
          mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
          data: Buffer.from(JSON.stringify(json)),
          title: 'x',
        },
      ],
    });
    await copy.referrers.attach(bad);
    const r2 = await kiln('verify', copy.name, '--key', pub);
    assert.match(
      r2.out,
      new RegExp(`^attestation ${await bad.digest()}: no DSSE signature verifies with the given key$`, 'm'),
    );
  });

  test('fails when the policy does not allow the builder', async () => {
    const policy = path.join(work, 'builders.toml');
    await writeFile(policy, `[provenance]\nbuilders = ["docker.io/acme/builder*"]\n`);
    const r = await kiln('verify', signedRef, '--key', pub, '--policy', policy);
    assert.notEqual(r.code, 0);
    assert.equal(
      r.out,
      `policy: builder docker.io/e2e/builder@${await w.builder.digest()} is not allowed (allowed: docker.io/acme/builder*)\n`,
    );
  });

  test('fails when the policy requires an SBOM and none is attested', async () => {
    const img = await t.parse(signedRef).read();
    const copy = t.parse(`${reg.host}/e2e/no-sbom:v1`);
    await copy.write(img);
    const digest = (await img.digest()) as Digest;
    const subject = { mediaType: await img.mediaType(), digest, size: (await img.rawManifest()).length };
    const signer = keySigner(await readPrivateKey(await readFile(key, 'utf8'), async () => PASS, key));
    const a = await attestations({
      subject,
      name: copy.name,
      repository: `${reg.host}/e2e/no-sbom`,
      provenance,
      signer,
    });
    for (const r of a.referrers) await copy.referrers.attach(r);
    const policy = path.join(work, 'sbom.toml');
    await writeFile(policy, `[provenance]\nrequired = true\n[sbom]\nrequired = true\n`);
    const r = await kiln('verify', copy.name, '--key', pub, '--policy', policy);
    assert.notEqual(r.code, 0);
    assert.equal(r.out, 'policy: no signed SBOM attestation (CycloneDX or SPDX) of the image\n');
  });

  test("fails when a signed attestation's subject is another image", async () => {
    const img = await t.parse(signedRef).read();
    const copy = t.parse(`${reg.host}/e2e/other-subject:v1`);
    await copy.write(img);
    const digest = (await img.digest()) as Digest;
    const subject = { mediaType: await img.mediaType(), digest, size: (await img.rawManifest()).length };
    const signer = keySigner(await readPrivateKey(await readFile(key, 'utf8'), async () => PASS, key));
    const elsewhere = 'a'.repeat(64);
    const moved = { ...provenance, subject: [{ name: 'elsewhere', digest: { sha256: elsewhere } }] };
    const a = await attestations({
      subject,
      name: copy.name,
      repository: copy.name,
      provenance: moved,
      signer,
    });
    for (const r of a.referrers) await copy.referrers.attach(r);
    const r = await kiln('verify', copy.name, '--key', pub);
    assert.notEqual(r.code, 0);
    assert.equal(
      r.out,
      `attestation ${await a.referrers[0]!.digest()} (https://slsa.dev/provenance/v1): its subject is sha256:${elsewhere}, not the image ${digest}\n`,
    );
  });

  test('fails with the wrong key: one line for the signature; bundles of other keys are not evidence', async () => {
    const r = await kiln('verify', signedRef, '--key', otherPub);
    assert.notEqual(r.code, 0);
    assert.equal(
      r.out,
      `signature: none of the 1 signatures of ${signedDigest} verifies with the given key(s)\n`,
    );
    // With a policy that needs provenance, its absence (for this key) is a second line.
    const policy = path.join(work, 'prov-required.toml');
    await writeFile(policy, '[provenance]\nrequired = true\n');
    const p = await kiln('verify', signedRef, '--key', otherPub, '--policy', policy);
    assert.equal(
      p.out,
      `signature: none of the 1 signatures of ${signedDigest} verifies with the given key(s)\npolicy: no signed SLSA v1 provenance from kiln of the image\n`,
    );
  });

  test('kiln sign and kiln verify on an OCI layout', async () => {
    const img = await t.parse(signedRef).read();
    const dir = path.join(work, 'layout');
    await t.parse(`oci:${dir}:app`).write(img);
    const unsigned = await kiln('verify', `oci:${dir}:app`, '--key', pub);
    assert.equal(unsigned.out, `signature: ${signedDigest} has no cosign signature\n`);
    const s = await kiln('sign', `oci:${dir}:app`, '--key', key);
    assert.equal(s.code, 0, s.err);
    const r = await kiln('verify', `oci:${dir}:app`, '--key', pub);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /cyclonedx/);
  });

  test('referrers survive kiln image copy to another registry and into an OCI layout; --no-referrers leaves them', async () => {
    const reg2 = await startRegistry();
    try {
      const to = `${reg2.host}/copied/app:v1`;
      const c = await runMain(
        ['--insecure-registry', reg.host, '--insecure-registry', reg2.host, 'image', 'copy', signedRef, to],
        env,
      );
      assert.equal(c.code, 0, c.err);
      assert.match(c.err, /Copied 6 referrer\(s\)/);
      const r = await runMain(['--insecure-registry', reg2.host, 'verify', to, '--key', pub], env);
      assert.equal(r.code, 0, r.out + r.err);
      // cosign's own place for the signature: the `.sig` tag next to the image.
      const sig = await fetch(`${reg2.url}/v2/copied/app/manifests/sha256-${signedDigest.slice(7)}.sig`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(sig.status, 200);
      const layer = (
        (await sig.json()) as { layers: { mediaType: string; annotations: Record<string, string> }[] }
      ).layers[0]!;
      assert.equal(layer.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
      assert.ok(layer.annotations['dev.cosignproject.cosign/signature']);

      const dir = path.join(work, 'copied-layout');
      const l = await runMain(['--insecure-registry', reg2.host, 'image', 'copy', to, `oci:${dir}:app`], env);
      assert.equal(l.code, 0, l.err);
      const rl = await kiln('verify', `oci:${dir}:app`, '--key', pub);
      assert.equal(rl.code, 0, rl.out + rl.err);

      // The local store (kiln's own layout) keeps them the same way.
      const st = await runMain(
        ['--insecure-registry', reg2.host, 'image', 'copy', to, 'local:copied/app:v1'],
        env,
      );
      assert.equal(st.code, 0, st.err);
      const rs = await kiln('verify', 'local:copied/app:v1', '--key', pub);
      assert.equal(rs.code, 0, rs.out + rs.err);

      const bare = `${reg2.host}/copied/bare:v1`;
      const n = await runMain(
        [
          '--insecure-registry',
          reg.host,
          '--insecure-registry',
          reg2.host,
          'image',
          'copy',
          '--no-referrers',
          signedRef,
          bare,
        ],
        env,
      );
      assert.equal(n.code, 0, n.err);
      const rn = await runMain(['--insecure-registry', reg2.host, 'verify', bare, '--key', pub], env);
      assert.equal(rn.out, `signature: ${signedDigest} has no cosign signature\n`);
    } finally {
      await reg2.stop();
    }
  });

  test('kiln rebase --sign-key: a rebase provenance naming the input image and both run images; verify passes', async () => {
    const ref = `${reg.host}/e2e/rebased:v1`;
    await t.parse(ref).write(await t.parse(signedRef).read());
    const run = `${reg.host}/e2e/run:latest`;
    const runDigest = (await t.parse(run).write(await w.store.find('e2e/run').then((i) => i!))).digest;
    const out = path.join(work, 'rebase-provenance.json');
    const r = await kiln(
      'rebase',
      ref,
      '--publish',
      '--force',
      '--run-image',
      run,
      '--sign-key',
      key,
      '--provenance-output',
      out,
    );
    assert.equal(r.code, 0, r.err);
    const p = JSON.parse(await readFile(out, 'utf8')) as Provenance;
    assert.equal(p.predicate.buildDefinition.buildType, 'https://kiln.invalid/buildtypes/cnb-rebase/v1');
    const deps = p.predicate.buildDefinition.resolvedDependencies ?? [];
    assert.equal(deps.find((d) => d.name === 'app-image')?.digest?.sha256, signedDigest.slice(7));
    assert.equal(deps.find((d) => d.name === 'run-image')?.digest?.sha256, runDigest.slice(7));
    assert.ok(deps.find((d) => d.name === 'previous-run-image')?.digest?.sha256);
    const rebased = (await t.parse(ref).describe()).digest;
    assert.deepEqual(p.subject[0]?.digest, { sha256: rebased.slice(7) });
    const v = await kiln('verify', ref, '--key', pub);
    assert.equal(v.code, 0, v.out + v.err);
  });

  test('kiln inspect lists the referrers; kiln sbom download writes the attached SBOMs', async () => {
    const i = await kiln('inspect', signedRef, '--no-sbom');
    assert.equal(i.code, 0, i.err);
    assert.match(
      i.out,
      /^ {2}application\/vnd\.dev\.sigstore\.bundle\.v0\.3\+json \(https:\/\/slsa\.dev\/provenance\/v1\) {2}sha256:/m,
    );
    assert.match(i.out, /^ {2}application\/vnd\.dev\.cosign\.artifact\.sig\.v1\+json {2}sha256:/m);
    const dir = path.join(work, 'sbom-out');
    const d = await kiln('sbom', 'download', signedRef, '-o', dir);
    assert.equal(d.code, 0, d.err);
    const cdx = JSON.parse(await readFile(path.join(dir, 'attached', 'sbom.cdx.json'), 'utf8'));
    assert.equal(cdx.bomFormat, 'CycloneDX');
    assert.equal(cdx.metadata.component.name.includes('e2e/signed'), true);
    const spdx = JSON.parse(await readFile(path.join(dir, 'attached', 'sbom.spdx.json'), 'utf8'));
    assert.equal(spdx.spdxVersion, 'SPDX-2.3');
  });

  test("signing again replaces the same signer's earlier attestations in the referrers index; another key adds its own", async () => {
    const ref = `${reg.host}/e2e/resigned:v1`;
    const c = await kiln('image', 'copy', signedRef, ref);
    assert.equal(c.code, 0, c.err);
    const count = async () => (await t.parse(ref).referrers.list(signedDigest)).length;
    assert.equal(await count(), 6);
    assert.equal((await kiln('sign', ref, '--key', key)).code, 0);
    assert.equal(await count(), 6, 'a re-sign by the same key replaces, not piles up');
    const other = path.join(work, 'other.key');
    assert.equal((await kiln('sign', ref, '--key', other)).code, 0);
    assert.equal(await count(), 9, "another key's signature and SBOM attestations are added");
    // Each key alone verifies its own signature; the other key's bundles are not evidence.
    for (const k of [pub, otherPub]) {
      const one = await kiln('verify', ref, '--key', k);
      assert.equal(one.code, 0, `${k}: ${one.out}${one.err}`);
    }
    const both = await kiln('verify', ref, '--key', pub, '--key', otherPub);
    assert.equal(both.code, 0, both.out + both.err);
  });

  test("re-signing in an OCI layout and the local store replaces the signer's earlier referrers there too", async () => {
    const layoutDir = path.join(work, 'resign-layout');
    for (const dest of [`oci:${layoutDir}:app`, 'local:e2e/resigned']) {
      const c = await kiln('image', 'copy', signedRef, dest);
      assert.equal(c.code, 0, c.err);
      // What the CLI's store is (KILN_HOME's), opened afresh for each look.
      const listed = async () => {
        const home = new Transports({
          client: new RegistryClient({}),
          storeDir: ImageStore.defaultDir(env.KILN_HOME!),
        });
        const rs = await home.parse(dest).referrers.list(signedDigest);
        return rs.map((r) => r.descriptor.digest).sort();
      };
      const copied = await listed();
      assert.equal(copied.length, 6, dest);
      assert.equal((await kiln('sign', dest, '--key', key)).code, 0);
      const resigned = await listed();
      assert.equal(resigned.length, 6, `${dest}: a re-sign by the same key replaces, not piles up`);
      assert.notDeepEqual(resigned, copied, `${dest}: the new signature and bundles are the ones listed`);
      assert.equal((await kiln('sign', dest, '--key', path.join(work, 'other.key'))).code, 0);
      assert.equal((await listed()).length, 9, `${dest}: another key's referrers are added`);
      const both = await kiln('verify', dest, '--key', pub, '--key', otherPub);
      assert.equal(both.code, 0, both.out + both.err);
    }
  });

  test("cosign's classic .att tag: one DSSE envelope layer per signed statement, in cosign's layout; re-signing replaces, another key adds; image copy carries it", async () => {
    const att = async (ref: string) => {
      const repo = ref.slice(0, ref.lastIndexOf(':'));
      const img = await t.parse(`${repo}:${signedDigest.replace(':', '-')}.att`).read();
      const [m, cfg, layers] = await Promise.all([img.manifest(), img.configFile(), img.layers()]);
      const blobs = await Promise.all(
        layers.map(async (l) => Buffer.from(await new Response(await l.compressed()).arrayBuffer())),
      );
      return { m, cfg, blobs };
    };
    const { m, cfg, blobs } = await att(signedRef);
    assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(m.subject, undefined, "cosign's classic form names the image by its tag only");
    assert.equal(m.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    assert.deepEqual(
      cfg.rootfs.diff_ids,
      m.layers.map((l) => l.digest),
    );
    const keyPem = await readFile(pub, 'utf8');
    const predicates: string[] = [];
    for (const [i, l] of m.layers.entries()) {
      assert.equal(l.mediaType, 'application/vnd.dsse.envelope.v1+json');
      assert.equal(l.annotations?.['dev.cosignproject.cosign/signature'], '');
      const env = JSON.parse(blobs[i]!.toString('utf8'));
      assert.equal(env.payloadType, 'application/vnd.in-toto+json');
      const payload = Buffer.from(env.payload, 'base64');
      // DSSE v1 PAE, recomputed here; the signature is ECDSA-SHA256 (DER), as cosign checks it.
      const paeBytes = Buffer.concat([
        Buffer.from(`DSSEv1 ${env.payloadType.length} ${env.payloadType} ${payload.length} `),
        payload,
      ]);
      assert.equal(
        cryptoVerify('sha256', paeBytes, keyPem, Buffer.from(env.signatures[0].sig, 'base64')),
        true,
        `layer ${i} verifies`,
      );
      const st = JSON.parse(payload.toString('utf8'));
      assert.equal(st._type, 'https://in-toto.io/Statement/v1');
      assert.equal(st.subject[0].digest.sha256, signedDigest.slice(7));
      assert.equal(l.annotations?.predicateType, st.predicateType);
      predicates.push(st.predicateType);
    }
    assert.deepEqual(predicates.sort(), [
      'https://cyclonedx.org/bom',
      'https://slsa.dev/provenance/v1',
      'https://spdx.dev/Document',
    ]);
    // The re-signed copy of the previous test: copied, re-signed by the same key, then by another.
    const resigned = await att(`${reg.host}/e2e/resigned:v1`);
    // The first key's three statements once (the re-sign replaced them), the other key's SBOMs
    // (kiln sign signs what is attached unsigned: the SBOMs; the provenance came signed).
    assert.equal(resigned.m.layers.length, 5, 'three statements by one key, two by the other');
    assert.deepEqual(
      [...new Set(resigned.m.layers.map((l) => l.annotations?.['dev.kiln.attestation.signer']))].length,
      2,
    );
  });

  test('a signature cosign itself made (no subject, only under the .sig tag) verifies', async () => {
    const ref = `${reg.host}/e2e/cosigned:v1`;
    const c = await kiln('image', 'copy', '--no-referrers', signedRef, ref);
    assert.equal(c.code, 0, c.err);
    const signer = keySigner(await readPrivateKey(await readFile(key, 'utf8'), async () => PASS, key));
    const img = await t.parse(ref).read();
    const subject = {
      mediaType: await img.mediaType(),
      digest: signedDigest,
      size: (await img.rawManifest()).length,
    };
    const payload = simpleSigningPayload(`${reg.host}/e2e/cosigned`, signedDigest);
    const withSubject = signatureImage(subject, payload, await signer.sign(payload));
    // cosign's manifest: the same layer and config, no subject, no artifactType.
    const { subject: _s, artifactType: _a, ...plain } = await withSubject.manifest();
    const raw = new TextEncoder().encode(JSON.stringify(plain));
    const cosignMade: Image = {
      ...withSubject,
      manifest: async () => plain,
      rawManifest: async () => raw,
      digest: async () => sha256(raw),
    };
    await t.parse(`${reg.host}/e2e/cosigned:${signedDigest.replace(':', '-')}.sig`).write(cosignMade);
    const r = await kiln('verify', ref, '--key', pub);
    assert.equal(r.code, 0, r.out + r.err);
    const wrong = await kiln('verify', ref, '--key', otherPub);
    assert.equal(
      wrong.out,
      `signature: none of the 1 signatures of ${signedDigest} verifies with the given key(s)\n`,
    );
  });

  test('the key never shows in logs: a wrong passphrase is one clear line', async () => {
    const r = await runMain(['sign', signedRef, '--key', key], {
      ...env,
      KILN_PASSWORD: 'not-the-passphrase',
    });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /cannot decrypt the private key \(wrong passphrase, or not a key\)/);
    assert.ok(!r.err.includes('PRIVATE KEY'));
  });
});
