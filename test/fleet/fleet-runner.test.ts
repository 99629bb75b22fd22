// The job runner against a real registry: a STACK job rebases a rebasable image (manifests only,
// onto the run image pinned by the observed digest) and rebuilds one marked not rebasable; a
// registry failure is not mistaken for "not rebasable".

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseFleet } from '../../src/fleet/declarations.ts';
import { Git } from '../../src/fleet/git.ts';
import { type BuildRequest, JobRunner } from '../../src/fleet/runner.ts';
import type { Job } from '../../src/fleet/state.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { writeImage } from '../../src/registry/write.ts';
import { Transports } from '../../src/transport/transports.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

let registry: RegistryHandle;
let dir: string;
before(async () => {
  registry = await startRegistry();
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-fleet-runner-'));
});
after(async () => {
  await registry.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('JobRunner', () => {
  test('STACK: rebase when rebasable, rebuild when not; registry errors stay errors', async () => {
    const client = new RegistryClient({});
    const host = registry.host;
    const runRef = `${host}/stack/run:latest`;
    const run1 = await runImage({ patch: '1' });
    const d1 = (await writeImage(client, parseReference(runRef), run1)).digest;
    const run2 = await runImage({ patch: '2' });
    const d2 = (await writeImage(client, parseReference(runRef), run2)).digest;
    // The tag moves on after the job was queued: the job still rebases onto what it observed.
    await writeImage(client, parseReference(runRef), await runImage({ patch: '3' }));
    for (const [name, rebasable] of [
      ['yes', undefined],
      ['no', false],
    ] as const) {
      const app = await appImage({
        run: run1,
        runImageName: runRef,
        runImageReference: `${host}/stack/run@${d1}`,
        ...(rebasable === false ? { rebasable } : {}),
      });
      await writeImage(client, parseReference(`${host}/apps/${name}:latest`), app);
    }
    const fleet = parseFleet(
      `schema-version = 1\n[run-images.base]\nimage = "${runRef}"\n${['yes', 'no', 'gone']
        .map(
          (n) =>
            `[images.${n}]\ntag = "${host}/apps/${n}:latest"\nrun-image = "base"\nsource = { path = "${dir}" }\n`,
        )
        .join('')}`,
      'f',
    );
    const builds: BuildRequest[] = [];
    const transports = new Transports({ client, storeDir: path.join(dir, 'store') });
    const runner = new JobRunner({
      transports,
      git: new Git({ env: { PATH: process.env.PATH } }),
      tmpDir: dir,
      build: async (r) => {
        builds.push(r);
        return { digest: 'sha256:built' };
      },
    });
    const job = (image: string): Job => ({
      id: 1,
      image,
      kind: 'rebase',
      reasons: ['STACK'],
      inputs: { declHash: 'h', runImage: d2 },
      key: 'k',
      state: 'running',
      attempts: 1,
      created: 0,
    });
    const decl = (n: string) => fleet.images.find((d) => d.name === n)!;
    const lines: string[] = [];
    const yes = await runner.run(job('yes'), decl('yes'), (l) => lines.push(l));
    assert.equal(yes.kind, 'rebase');
    const rebased = await transports.parse(`${host}/apps/yes@${yes.digest}`).read();
    const layers = (await rebased.manifest()).layers.map((l) => l.digest);
    const base2 = (await run2.manifest()).layers.map((l) => l.digest);
    assert.deepEqual(layers.slice(0, base2.length), base2, 'onto the observed run image, not the newer tag');
    assert.equal(builds.length, 0);
    const no = await runner.run(job('no'), decl('no'), (l) => lines.push(l));
    assert.deepEqual(no, { digest: 'sha256:built', kind: 'build' });
    assert.equal(builds.length, 1);
    assert.ok(lines.some((l) => /not rebasable.*rebuilding instead/.test(l)));
    await assert.rejects(
      runner.run(job('gone'), decl('gone'), () => {}),
      /gone/,
    );
    assert.equal(builds.length, 1, 'a missing image is an error, not a rebuild');

    // A declared signing key: the key is read before the rebase is written (a bad key publishes
    // nothing), and the attestation is finished on the written image.
    const signedFleet = parseFleet(
      `schema-version = 1\n[run-images.base]\nimage = "${runRef}"\n[images.yes]\ntag = "${host}/apps/yes:latest"\nrun-image = "base"\nsource = { path = "${dir}" }\nsigning-key = "/nonexistent/k.key"\n`,
      'f',
    );
    const signed = signedFleet.images[0]!;
    const tagBefore = await (await transports.parse(`${host}/apps/yes:latest`).read()).digest();
    await assert.rejects(
      runner.run(job('yes'), signed, () => {}),
      /cannot sign a rebase here/,
    );
    const calls: string[] = [];
    let tagAtFinish: string | undefined;
    const signing = new JobRunner({
      transports,
      git: new Git({ env: { PATH: process.env.PATH } }),
      tmpDir: dir,
      build: async () => ({ digest: 'sha256:built' }),
      attestRebase: async (r) => {
        calls.push(`start ${r.decl.signingKey} ${r.runImage.digest} ${r.appName}`);
        if (calls.length === 1) throw new Error('bad passphrase for /nonexistent/k.key');
        return {
          finish: async (target, result) => {
            calls.push(`finish ${target.imageName} ${await result.digest()}`);
            // The rebased image is in the registry by digest, the tag not moved yet.
            await transports.parse(`${host}/apps/yes@${await result.digest()}`).read();
            tagAtFinish = await (await target.read()).digest();
          },
        };
      },
    });
    await assert.rejects(
      signing.run(job('yes'), signed, () => {}),
      /bad passphrase/,
    );
    assert.equal(
      await (await transports.parse(`${host}/apps/yes:latest`).read()).digest(),
      tagBefore,
      'nothing published when the key cannot be read',
    );
    const ok = await signing.run(job('yes'), signed, () => {});
    assert.equal(ok.kind, 'rebase');
    assert.equal(calls.length, 3);
    assert.equal(calls[1], `start /nonexistent/k.key ${d2} ${host}/apps/yes@${tagBefore}`);
    assert.match(calls[2]!, new RegExp(`^finish ${host}/apps/yes:latest ${ok.digest}$`));
    assert.equal(tagAtFinish, tagBefore, 'the tag moves only after the attestation');
    assert.equal(await (await transports.parse(`${host}/apps/yes:latest`).read()).digest(), ok.digest);
  });
});
