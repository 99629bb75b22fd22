// Others check what kiln signs. This file imports no kiln code at all: a child process builds and
// publishes a signed image (make-signed-image.ts) with a plain PKCS#8 key made here by node:crypto;
// then the registry is read over plain HTTP and
//  - the provenance's DSSE signature is checked by recomputing the spec's PAE
//    ("DSSEv1" SP LEN(type) SP type SP LEN(body) SP body) and node:crypto's ECDSA verify;
//  - the same bundle is verified by sigstore-js (@sigstore/verify, a public-key trust root, no
//    transparency log) — the maintained implementation npm itself uses;
//  - the cosign signature under the `sha256-<hex>.sig` tag is checked the way cosign does (the
//    simple-signing payload's digest, ECDSA over the payload bytes).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { bundleFromJSON } from '@sigstore/bundle';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

const execFileP = promisify(execFile);
let reg: RegistryHandle;
let work: string;
let publicKeyPem: string;
let image: { ref: string; digest: string };

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

async function get(p: string, accept?: string): Promise<Response> {
  const res = await fetch(`${reg.url}/v2/e2e/independent/${p}`, accept ? { headers: { accept } } : {});
  assert.equal(res.status, 200, `GET ${p}: ${res.status}`);
  return res;
}

async function blob(d: Descriptor): Promise<Buffer> {
  const b = Buffer.from(await (await get(`blobs/${d.digest}`)).arrayBuffer());
  assert.equal(`sha256:${createHash('sha256').update(b).digest('hex')}`, d.digest);
  return b;
}

/** The referrer artifacts of the image, from the tag-schema index (the registry has no referrers API). */
async function referrers(): Promise<Descriptor[]> {
  const tag = image.digest.replace(':', '-');
  const index = (await (await get(`manifests/${tag}`, 'application/vnd.oci.image.index.v1+json')).json()) as {
    manifests: Descriptor[];
  };
  return index.manifests;
}

async function manifestOf(
  d: Descriptor,
): Promise<{ layers: Descriptor[]; subject: Descriptor; annotations?: Record<string, string> }> {
  return (await get(`manifests/${d.digest}`, d.mediaType)).json() as never;
}

function pae(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${body.length} `), body]);
}

async function provenanceBundle(): Promise<Record<string, unknown>> {
  for (const d of await referrers()) {
    if (d.artifactType !== 'application/vnd.dev.sigstore.bundle.v0.3+json') continue;
    const m = await manifestOf(d);
    if (m.annotations?.['dev.sigstore.bundle.predicateType'] !== 'https://slsa.dev/provenance/v1') continue;
    assert.equal(m.subject.digest, image.digest);
    return JSON.parse((await blob(m.layers[0]!)).toString('utf8'));
  }
  throw new Error('no provenance bundle among the referrers');
}

before(async () => {
  reg = await startRegistry();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-independent-'));
  const { privateKey, publicKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  publicKeyPem = publicKey;
  const keyFile = path.join(work, 'plain.pem');
  await writeFile(keyFile, privateKey, { mode: 0o600 });
  const { stdout } = await execFileP(
    process.execPath,
    [path.join(import.meta.dirname, 'make-signed-image.ts'), reg.host, keyFile],
    { maxBuffer: 1 << 20 },
  );
  image = JSON.parse(stdout.trim().split('\n').pop()!);
});
after(async () => {
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test("the provenance's DSSE signature verifies over the spec's PAE, and its subject is the image", async () => {
  const bundle = await provenanceBundle();
  const env = bundle.dsseEnvelope as {
    payload: string;
    payloadType: string;
    signatures: { sig: string; keyid: string }[];
  };
  assert.equal(env.payloadType, 'application/vnd.in-toto+json');
  const body = Buffer.from(env.payload, 'base64');
  const sig = Buffer.from(env.signatures[0]!.sig, 'base64');
  const key = createPublicKey(publicKeyPem);
  assert.equal(verify('sha256', pae(env.payloadType, body), key, sig), true);
  // Not over the bare payload, and not after a flipped bit.
  assert.equal(verify('sha256', body, key, sig), false);
  const flipped = Buffer.from(body);
  flipped[flipped.length - 3] = flipped[flipped.length - 3]! ^ 1;
  assert.equal(verify('sha256', pae(env.payloadType, flipped), key, sig), false);
  const statement = JSON.parse(body.toString('utf8'));
  assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
  assert.equal(statement.predicateType, 'https://slsa.dev/provenance/v1');
  assert.deepEqual(statement.subject[0].digest, { sha256: image.digest.slice('sha256:'.length) });
  // The key id is the SPKI digest of the key that verified.
  const spki = key.export({ type: 'spki', format: 'der' });
  assert.equal(env.signatures[0]!.keyid, createHash('sha256').update(spki).digest('hex'));
});

test('sigstore-js (@sigstore/verify) verifies the bundle with the public key', async () => {
  const json = await provenanceBundle();
  const bundle = bundleFromJSON(json);
  const key = createPublicKey(publicKeyPem);
  const hint = (json.verificationMaterial as { publicKey: { hint: string } }).publicKey.hint;
  const trust = toTrustMaterial(
    {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [],
      certificateAuthorities: [],
      ctlogs: [],
      timestampAuthorities: [],
    } as never,
    (h: string) => {
      assert.equal(h, hint);
      return { publicKey: key, validFor: () => true };
    },
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  // The same bundle with a flipped signature byte is refused by sigstore-js too.
  const bad = structuredClone(json) as { dsseEnvelope: { signatures: { sig: string }[] } };
  const s = Buffer.from(bad.dsseEnvelope.signatures[0]!.sig, 'base64');
  s[8] = s[8]! ^ 0x40;
  bad.dsseEnvelope.signatures[0]!.sig = s.toString('base64');
  assert.throws(() => verifier.verify(toSignedEntity(bundleFromJSON(bad))));
});

test('the cosign signature under the .sig tag verifies the way cosign checks it', async () => {
  const tag = `${image.digest.replace(':', '-')}.sig`;
  const m = (await (await get(`manifests/${tag}`, 'application/vnd.oci.image.manifest.v1+json')).json()) as {
    layers: Descriptor[];
  };
  const layer = m.layers[0]!;
  assert.equal(layer.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  const payload = await blob(layer);
  const p = JSON.parse(payload.toString('utf8'));
  assert.equal(p.critical.type, 'cosign container image signature');
  assert.equal(p.critical.image['docker-manifest-digest'], image.digest);
  assert.equal(p.critical.identity['docker-reference'], `${reg.host}/e2e/independent`);
  const sig = Buffer.from(layer.annotations!['dev.cosignproject.cosign/signature']!, 'base64');
  assert.equal(verify('sha256', payload, createPublicKey(publicKeyPem), sig), true);
});
