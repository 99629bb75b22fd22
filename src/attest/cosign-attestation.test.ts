import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  attestationImage,
  attestationLayer,
  MAX_ATTESTATION_LAYERS,
  mergeAttestations,
} from './cosign-attestation.ts';

const SIGNER = 'dev.kiln.attestation.signer';
const layer = (text: string, predicate: string, signer?: string) =>
  attestationLayer(new TextEncoder().encode(text), predicate, signer ? { [SIGNER]: signer } : {});

test("mergeAttestations: the same signer's layer of a predicate type is replaced; other keys' and cosign's own stay", () => {
  const cosignMade = layer('c', 'https://slsa.dev/provenance/v1');
  const oldA = layer('a1', 'https://slsa.dev/provenance/v1', 'A');
  const sbomA = layer('a-sbom', 'https://cyclonedx.org/bom', 'A');
  const b = layer('b1', 'https://slsa.dev/provenance/v1', 'B');
  const newA = layer('a2', 'https://slsa.dev/provenance/v1', 'A');
  const merged = mergeAttestations([cosignMade, oldA, sbomA, b], [newA], SIGNER);
  assert.deepEqual(
    merged.map((l) => new TextDecoder().decode(l.envelope)),
    ['c', 'a-sbom', 'b1', 'a2'],
  );
  const many = Array.from({ length: 100 }, (_, i) => layer(`x${i}`, 'p', `k${i}`));
  const capped = mergeAttestations(many, [newA], SIGNER);
  assert.equal(capped.length, MAX_ATTESTATION_LAYERS);
  assert.equal(capped.at(-1), newA, 'the newest is kept');
});

test("attestationImage: cosign's layout (DSSE layers, predicateType, empty signature annotation, no subject)", async () => {
  const img = attestationImage([layer('{"payload":""}', 'https://spdx.dev/Document', 'A')]);
  const m = await img.manifest();
  assert.equal(m.subject, undefined);
  assert.equal(m.layers[0]?.mediaType, 'application/vnd.dsse.envelope.v1+json');
  assert.deepEqual(m.layers[0]?.annotations, {
    'dev.cosignproject.cosign/signature': '',
    predicateType: 'https://spdx.dev/Document',
    [SIGNER]: 'A',
  });
  assert.deepEqual((await img.configFile()).rootfs.diff_ids, [m.layers[0]?.digest]);
});
