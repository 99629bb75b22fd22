import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runMain } from '../../../test/helpers/cli.ts';
import { appImage, runImage } from '../../../test/helpers/cnb-images.ts';
import { Layout } from '../../layout/layout.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-inspect-cli-'));
  const run = await runImage({ patch: '1' });
  const app = await appImage({
    run,
    runImageName: 'reg.example.com/run:1',
    runImageReference: 'reg.example.com/run@sha256:0',
  });
  await (await Layout.init(path.join(dir, 'layout'))).writeImage(app, 'app');
  await (await Layout.init(path.join(dir, 'layout'))).writeImage(run, 'run');
});
after(() => rm(dir, { recursive: true, force: true }));

function kiln(...argv: string[]) {
  return runMain(argv, { HOME: dir, KILN_HOME: dir });
}

test('kiln inspect reads an OCI layout image in every format', async () => {
  const human = await kiln('inspect', `oci:${dir}/layout:app`);
  assert.equal(human.code, 0, human.err);
  assert.match(human.out, /^Image: oci:.*:app\n/);
  assert.match(human.out, /web \(default\)\s+node server\.js/);
  const json = JSON.parse((await kiln('inspect', `oci:${dir}/layout:app`, '--output', 'json')).out);
  assert.deepEqual(json.sbom.ecosystems, { generic: 1, npm: 2 });
  const nosbom = JSON.parse((await kiln('inspect', `oci:${dir}/layout:app`, '-o', 'json', '--no-sbom')).out);
  assert.equal(nosbom.sbom, undefined);
  assert.equal((await kiln('inspect', `oci:${dir}/layout:app`, '-o', 'xml')).code, 3);
});

test('kiln inspect of a plain image says it is not a buildpacks image', async () => {
  const r = await kiln('inspect', `oci:${dir}/layout:run`);
  assert.equal(r.code, 1);
  assert.match(r.err, /is not a buildpacks app image/);
});
