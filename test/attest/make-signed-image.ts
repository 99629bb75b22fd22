// Child-process helper of independent-verify.test.ts (which must not import kiln's signing code):
// builds the e2e fixture app, publishes it to the registry `argv[2]` as `e2e/independent:v1`, and
// attaches what `kiln build --publish --sign-key` attaches, signed with the key file `argv[3]`.
// Prints `{"ref": ..., "digest": ...}`.
import { Writable } from 'node:stream';
import { startBuildAttestation } from '../../src/cli/build-attest.ts';
import { createContext } from '../../src/cli/context.ts';
import { loadSigner } from '../../src/cli/supply-chain.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { Transports } from '../../src/transport/transports.ts';
import { makeE2E } from '../e2e/build-fixture.ts';

const [host, keyFile] = process.argv.slice(2) as [string, string];
const w = await makeE2E();
try {
  const ref = `${host}/e2e/independent:v1`;
  const t = new Transports({ client: new RegistryClient({}), storeDir: w.store.dir }, w.store);
  const app = await w.app('independent', 'checked by others');
  await w.build(app, ref, { dest: ref });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const ctx = createContext({ stdout: sink, stderr: sink, env: { HOME: w.root }, isTTY: false });
  ctx.init({});
  const att = startBuildAttestation(
    ctx,
    {},
    true,
    {
      appDir: app,
      builder: {
        name: 'e2e/builder',
        reference: `docker.io/e2e/builder@${await w.builder.digest()}`,
        image: w.builder,
      },
      buildpacks: [],
      envNames: [],
      options: {},
    },
    await loadSigner(ctx, keyFile),
  );
  await att!.finish([t.parse(ref)], t);
  process.stdout.write(`${JSON.stringify({ ref, digest: (await t.parse(ref).describe()).digest })}\n`);
} finally {
  await w.cleanup();
}
