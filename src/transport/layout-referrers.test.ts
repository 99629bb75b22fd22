// Referrers in an OCI layout: kiln notes each untagged referrer's subject on its index.json entry,
// so that listing one image's referrers reads only the manifests that may refer to it; entries
// without the note (older kiln, other tools) are still read and checked.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileEntry } from '../../test/helpers/tar-entries.ts';
import { writeLayer } from '../layers/layer-writer.ts';
import { Layout, SUBJECT_HINT } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { imageFrom } from '../oci/memory.ts';
import { artifactImage } from '../sbom/artifact.ts';
import { layoutReferrers } from './layout-referrers.ts';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'kiln-layout-referrers-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function sbomOf(subject: { digest: Digest; size: number; mediaType: string }): Image {
  return artifactImage({
    artifactType: 'application/vnd.cyclonedx+json',
    subject,
    files: [
      {
        mediaType: 'application/vnd.cyclonedx+json',
        data: new Uint8Array([123, 125]),
        title: 'sbom.cdx.json',
      },
    ],
  });
}

test("another image's referrers are not read; unnoted entries are read and checked", async () => {
  const layout = await Layout.init(path.join(root, 'oci'));
  const subjects = [];
  for (const name of ['a', 'b']) {
    const layer = await writeLayer([fileEntry(`${name}.txt`, `${name}\n`)], { store: layout.blobs });
    const img = imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [layer] });
    subjects.push(await layout.writeImage(img, name));
  }
  const [a, b] = subjects as [{ digest: string; size: number; mediaType: string }, ...typeof subjects];
  const refs = layoutReferrers(async () => layout);
  const art = sbomOf({ digest: b!.digest as Digest, size: b!.size, mediaType: b!.mediaType });
  const artDigest = await refs.attach(art);

  const entry = (await layout.index()).manifests.find((m) => m.digest === artDigest);
  assert.equal(entry?.annotations?.[SUBJECT_HINT], b!.digest);

  const reads: string[] = [];
  const readBytes = layout.blobs.readBytes.bind(layout.blobs);
  layout.blobs.readBytes = (d: Digest) => {
    reads.push(d);
    return readBytes(d);
  };
  assert.deepEqual(await refs.list(a.digest as Digest), []);
  assert.deepEqual(reads, [], "b's referrer is not read to list a's");
  assert.deepEqual(
    (await refs.list(b!.digest as Digest)).map((r) => r.descriptor.digest),
    [artDigest],
  );

  // An entry without the note (as older kiln wrote them) is still found by reading it.
  const indexFile = path.join(root, 'oci', 'index.json');
  const idx = JSON.parse(await readFile(indexFile, 'utf8')) as { manifests: { annotations?: object }[] };
  for (const m of idx.manifests) if (m.annotations && SUBJECT_HINT in m.annotations) delete m.annotations;
  await writeFile(indexFile, JSON.stringify(idx));
  assert.deepEqual(
    (await refs.list(b!.digest as Digest)).map((r) => r.descriptor.digest),
    [artDigest],
  );
  assert.deepEqual(await refs.list(a.digest as Digest), []);
});
