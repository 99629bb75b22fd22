import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect, rootCertificates } from 'node:tls';
import { ExitCode } from '../../src/cnb/exit-codes.ts';
import { type CliResult, copySample, kiln, layerShas, prepareHome } from './samples-harness.ts';

// The host's CA trust through the real network of the machine: the README's first command
// (`kiln build my-app --path samples/node-express`) works with no flags and no kiln config, because
// builds trust the host's CA bundle by default; with `trust-host-ca-certs = false` the build fails
// with the one-line explanation instead of only npm's or the buildpack's error. The second half
// needs a TLS-intercepting proxy (these machines have one) and is skipped elsewhere.

let app: { dir: string; cleanup: () => Promise<void> };
let scratch: string;
let intercepted: string | undefined; // why the registry's certificate is not publicly trusted

before(async () => {
  await prepareHome();
  app = await copySample('node-express');
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-ca-'));
  intercepted = await interceptionOf(npmRegistryHost());
});
after(async () => {
  await app?.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** kilnWith runs the CLI on the e2e home with its own config file (the home's config is not read). */
function kilnWith(config: string, args: readonly string[]): Promise<CliResult> {
  return kiln(args, { env: { KILN_CONFIG: config } });
}

/** The npm registry host as the machine's npm is configured (never written into the project). */
function npmRegistryHost(): string {
  const url = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', cwd: tmpdir() }).trim();
  return new URL(url).hostname;
}

/**
 * interceptionOf connects to host:443 trusting only Node's built-in public roots: a certificate
 * error means a TLS-intercepting proxy sits in between (undefined: publicly trusted or unreachable).
 */
function interceptionOf(host: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host, port: 443, servername: host, ca: [...rootCertificates] });
    s.setTimeout(10_000, () => {
      s.destroy();
      resolve(undefined);
    });
    s.on('secureConnect', () => {
      s.end();
      resolve(undefined);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      resolve(/CERT|SELF_SIGNED|ISSUER/.test(e.code ?? '') ? e.code : undefined);
    });
  });
}

test('with no kiln config, the Express sample builds with the host CA bundle trusted (README command)', async () => {
  // --clear-cache: Node.js and the npm packages really come through the proxy, not from the cache.
  const image = 'kiln-e2e-ca-default';
  const res = await kilnWith(path.join(scratch, 'none.toml'), [
    'build',
    image,
    '--path',
    app.dir,
    '--clear-cache',
  ]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /Trusting the host's CA bundle .* during the build, not in the image/);
  const { layers } = await layerShas(image);
  assert.ok(layers.get('kiln/npm-install:modules'), 'node_modules was installed through the network');
});

test('with trust-host-ca-certs = false, the build fails with the explained certificate message', async (t) => {
  if (!intercepted) {
    t.skip('no TLS-intercepting proxy between this machine and the npm registry');
    return;
  }
  const config = path.join(scratch, 'no-host-trust.toml');
  await writeFile(config, 'trust-host-ca-certs = false\n');
  const res = await kilnWith(config, ['build', 'kiln-e2e-ca-off', '--path', app.dir, '--clear-cache']);
  assert.equal(res.code, ExitCode.BuildFailed, res.stderr);
  const last = res.stderr.trim().split('\n').at(-1) ?? '';
  assert.match(
    last,
    /^ERROR: buildpack kiln\/nodejs-engine@\S+ failed: .*certificate not trusted: .*--ca-certs FILE.*kiln config trust-host-ca-certs true.*\(seen: /,
  );
  assert.doesNotMatch(res.stderr, /Trusting the host's CA bundle/);
});
