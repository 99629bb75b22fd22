import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { makeTestCa, type TestCa } from '../../test/helpers/test-ca.ts';
import { Logger } from '../cli/logger.ts';
import { Redactor } from '../internal/redactor.ts';
import { parseBindingFlag, readBindingDir, secretFragments } from './bindings.ts';
import {
  caSbom,
  caSecrets,
  parsePemCertificates,
  readCaCertFile,
  readSystemCaBundle,
  splitPemCertificates,
  writeCaLaunchLayer,
} from './ca-certs.ts';
import { hostNpmConfigGet, registryFromNpmrc, resolveNpmRegistry } from './npm-registry.ts';
import { hostCaBundlePath, preparePlatformInputs } from './platform-inputs.ts';
import { proxyEnv, proxySecrets } from './proxy.ts';

let dir: string;
let ca: TestCa;
let ca2: TestCa;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-inputs-'));
  ca = await makeTestCa('kiln unit CA one');
  ca2 = await makeTestCa('kiln unit CA two');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await ca.cleanup();
  await ca2.cleanup();
});

async function bindingDir(name: string, files: Record<string, string>): Promise<string> {
  const d = path.join(dir, 'bindings-src', name);
  await mkdir(d, { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(path.join(d, k), v);
  return d;
}

describe('Redactor', () => {
  test('redacts values, their trimmed, per-line and percent-encoded forms; ignores tiny ones', () => {
    const r = new Redactor();
    r.add('s3cr3t-value\n');
    r.add('line-one-secret\nline-two-secret\n');
    r.add('p@ss word');
    r.add('no');
    assert.equal(r.redact('token=s3cr3t-value.'), 'token=[REDACTED].');
    assert.equal(r.redact('got line-two-secret here'), 'got [REDACTED] here');
    assert.equal(r.redact('http://u:p%40ss%20word@proxy'), 'http://[REDACTED]@proxy');
    assert.equal(r.redact('no problem'), 'no problem');
    const lines: string[] = [];
    assert.deepEqual(
      secretFragments(
        '//reg/:_authToken=npm_tok3n_value\nalways-auth=true\n{"auths":{"h":{"auth":"dXNlcjpwYXNz"}}}',
      ),
      ['npm_tok3n_value', 'dXNlcjpwYXNz'],
    );
    r.lineFilter((l) => lines.push(l))('x s3cr3t-value y');
    assert.deepEqual(lines, ['x [REDACTED] y']);
  });

  test('the Logger redacts what was added to the redactor it was given', () => {
    const chunks: string[] = [];
    const out = new Writable({
      write(c, _e, cb) {
        chunks.push(String(c));
        cb();
      },
    });
    const r = new Redactor();
    const log = new Logger({ out, level: 'debug', color: false, bars: false, redactor: r });
    r.add('canary-logger-7f3a9');
    log.info('buildpack said: canary-logger-7f3a9');
    assert.equal(chunks.join(''), 'buildpack said: [REDACTED]\n');
  });
});

describe('bindings', () => {
  test('parseBindingFlag() splits NAME=DIR and checks the name', () => {
    assert.deepEqual(parseBindingFlag('db=./creds', '/work'), { name: 'db', dir: '/work/creds' });
    assert.throws(() => parseBindingFlag('db', '/w'), /--binding "db": expected NAME=DIR/);
    assert.throws(() => parseBindingFlag('../x=/d', '/w'), /binding name "\.\.\/x"/);
  });

  test('readBindingDir() reads type, provider and entries, following Kubernetes-style symlinks', async () => {
    const d = await bindingDir('k8s', {});
    await mkdir(path.join(d, '..2026_11_21'));
    await writeFile(path.join(d, '..2026_11_21', 'type'), 'postgresql\n');
    await writeFile(path.join(d, '..2026_11_21', 'password'), 'pw-canary-1234');
    await symlink('..2026_11_21', path.join(d, '..data'));
    await symlink('..data/type', path.join(d, 'type'));
    await symlink('..data/password', path.join(d, 'password'));
    const b = await readBindingDir('db', d);
    assert.equal(b.type, 'postgresql');
    assert.equal(b.provider, undefined);
    assert.deepEqual(
      b.entries.map((e) => [e.name, e.content.toString()]),
      [
        ['password', 'pw-canary-1234'],
        ['type', 'postgresql\n'],
      ],
    );
  });

  test('readBindingDir() refuses a missing type, a sub-directory and a missing dir, naming them', async () => {
    const dotted = await readBindingDir('npm', await bindingDir('npmrc', { type: 'npmrc', '.npmrc': 'x' }));
    assert.deepEqual(
      dotted.entries.map((e) => e.name),
      ['.npmrc', 'type'],
      'Paketo npmrc bindings use the key .npmrc',
    );
    const noType = await bindingDir('notype', { username: 'u' });
    await assert.rejects(
      readBindingDir('x', noType),
      /binding "x" \(.*notype\): needs a non-empty "type" file/,
    );
    const sub = await bindingDir('sub', { type: 't' });
    await mkdir(path.join(sub, 'nested'));
    await assert.rejects(readBindingDir('x', sub), /binding "x" .*entry "nested" is not a file/);
    await assert.rejects(readBindingDir('x', path.join(dir, 'absent')), /directory does not exist/);
  });
});

describe('proxies', () => {
  test('proxyEnv() takes kiln env, lets --env win and fills the other case', () => {
    assert.deepEqual(
      proxyEnv(
        { HTTPS_PROXY: 'http://proxy:3128', no_proxy: 'localhost', PATH: '/bin', HOME: '/root' },
        { HTTP_PROXY: 'http://other:8080' },
      ),
      {
        HTTP_PROXY: 'http://other:8080',
        http_proxy: 'http://other:8080',
        HTTPS_PROXY: 'http://proxy:3128',
        https_proxy: 'http://proxy:3128',
        NO_PROXY: 'localhost',
        no_proxy: 'localhost',
      },
    );
    assert.deepEqual(proxyEnv({}), {});
  });

  test('proxySecrets() finds passwords in proxy URLs, raw and decoded', () => {
    assert.deepEqual(
      proxySecrets({ HTTPS_PROXY: 'http://bob:pa%24%24word@proxy:3128', NO_PROXY: 'a:b@c' }).sort(),
      ['bob:pa%24%24word', 'pa$$word', 'pa%24%24word'],
    );
    assert.deepEqual(proxySecrets({ HTTP_PROXY: 'http://proxy:3128' }), []);
  });
});

describe('npm registry', () => {
  const base = { kilnEnv: {}, userEnv: {}, home: '/nonexistent-home', globalNpmrc: [] as string[] };

  test('registryFromNpmrc() reads the unscoped registry and expands $-brace variables', () => {
    const text =
      '; comment\n@corp:registry=https://corp/\n//npm.example.com/:_authToken=SECRET\nregistry = $' +
      '{REG}/npm\n';
    assert.equal(registryFromNpmrc(text, { REG: 'https://npm.example.com' }), 'https://npm.example.com/npm');
    assert.equal(registryFromNpmrc('_authToken=x\n', {}), undefined);
  });

  test('precedence: --env, project .npmrc, kiln env, config, host npm', async () => {
    const app = path.join(dir, 'npm-app');
    await mkdir(app, { recursive: true });
    const host = async () => 'https://host.example.com/npm/';
    const r1 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      userEnv: { NPM_CONFIG_REGISTRY: 'https://flag/' },
      npmConfigGet: host,
    });
    assert.deepEqual([r1.source, r1.env], ['flag', {}]);
    const r3 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      kilnEnv: { npm_config_registry: 'https://env.example.com' },
      configured: 'https://cfg/',
      npmConfigGet: host,
    });
    assert.deepEqual([r3.source, r3.env], ['env', { npm_config_registry: 'https://env.example.com/' }]);
    const r4 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      configured: 'https://cfg.example.com/',
      npmConfigGet: host,
    });
    assert.deepEqual([r4.source, r4.env], ['config', { npm_config_registry: 'https://cfg.example.com/' }]);
    const r5 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      npmConfigGet: async () => 'https://u:t0ken-canary@host.example.com/npm',
    });
    assert.deepEqual(
      [r5.source, r5.env],
      ['host-npm', { npm_config_registry: 'https://host.example.com/npm/' }],
    );
    assert.ok(r5.secrets.includes('t0ken-canary'));
    // npm's answer is passed as it is (npm's built-in default included): no host is assumed.
    const r6 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      npmConfigGet: async () => 'https://npm-default.example.com',
    });
    assert.deepEqual(
      [r6.source, r6.env],
      ['host-npm', { npm_config_registry: 'https://npm-default.example.com/' }],
    );
    await writeFile(path.join(app, '.npmrc'), 'registry=https://project.example.com/\n');
    const r2 = await resolveNpmRegistry({
      ...base,
      appDir: app,
      kilnEnv: { npm_config_registry: 'https://env/' },
      npmConfigGet: host,
    });
    assert.deepEqual([r2.source, r2.env], ['project', {}]);
  });

  test('hostNpmConfigGet() asks the real npm, with the environment it is given', async () => {
    const home = path.join(dir, 'npm-home');
    await mkdir(home, { recursive: true });
    await writeFile(path.join(home, '.npmrc'), 'registry=https://from-user-npmrc.example.com/\n');
    const get = hostNpmConfigGet({ PATH: process.env.PATH, HOME: home });
    assert.equal(await get(), 'https://from-user-npmrc.example.com/');
    assert.equal(await hostNpmConfigGet({ PATH: '/nonexistent' })(), undefined);
  });

  test('without npm, ~/.npmrc is parsed and its auth token never crosses over', async () => {
    const home = path.join(dir, 'home');
    await mkdir(home, { recursive: true });
    await writeFile(
      path.join(home, '.npmrc'),
      'registry=https://mirror.example.com/\n//mirror.example.com/:_authToken=TOKEN-canary\n',
    );
    const r = await resolveNpmRegistry({ ...base, appDir: path.join(dir, 'none'), home });
    assert.deepEqual([r.source, r.env], ['npmrc', { npm_config_registry: 'https://mirror.example.com/' }]);
    assert.ok(!JSON.stringify(r).includes('TOKEN-canary'));
  });
});

describe('CA certificates', () => {
  test('parsePemCertificates() parses each block and fingerprints it', () => {
    const certs = parsePemCertificates(ca.caPem + ca2.caPem, 'both.pem');
    assert.equal(certs.length, 2);
    assert.match(certs[0]!.subject, /CN=kiln unit CA one/);
    assert.match(certs[0]!.fingerprint, /^[0-9a-f]{64}$/);
  });

  test('splitPemCertificates() fingerprints like X.509 parsing, and parses subjects only on demand', async () => {
    const full = parsePemCertificates(ca.caPem + ca2.caPem, 'both.pem');
    const split = splitPemCertificates(`junk\n${ca.caPem}\n${ca2.caPem}`, 'both.pem');
    assert.deepEqual(
      split.map((c) => [c.fingerprint, c.pem, c.subject, c.source]),
      full.map((c) => [c.fingerprint, c.pem, c.subject, c.source]),
    );
    // A system bundle is not validated: an odd block passes through, an empty file gives nothing.
    const odd = path.join(dir, 'odd-bundle.pem');
    await writeFile(odd, `${ca.caPem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`);
    const sys = await readSystemCaBundle(odd);
    assert.equal(sys.length, 2);
    assert.equal(sys[1]!.subject, 'unparsable certificate');
    assert.deepEqual(splitPemCertificates('', 'empty.pem'), []);
    await assert.rejects(readSystemCaBundle(path.join(dir, 'missing.pem')), /missing\.pem: does not exist/);
    // The same certificates again (another bundle, CRLF line ends): the same fingerprints and PEM
    // text, this bundle named as their source.
    const again = splitPemCertificates(`${ca2.caPem}${ca.caPem}`.replaceAll('\n', '\r\n'), 'image.pem');
    assert.deepEqual(
      again.map((c) => [c.fingerprint, c.pem, c.subject, c.source]),
      [...full].reverse().map((c) => [c.fingerprint, c.pem, c.subject, 'image.pem']),
    );
  });

  test('parsePemCertificates() takes certificates of the known (system) bundle as they are', () => {
    const odd = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    assert.throws(
      () => parsePemCertificates(ca.caPem + odd, 'u.pem'),
      /certificate #2 is not a valid X\.509/,
    );
    // The same bytes are in the host's bundle: the system vouches for them, no second validation.
    const known = new Set(splitPemCertificates(odd + ca2.caPem, 'host.pem').map((c) => c.fingerprint));
    const certs = parsePemCertificates(ca.caPem + odd, 'u.pem', known);
    assert.deepEqual(
      certs.map((c) => c.subject),
      ['CN=kiln unit CA one', 'unparsable certificate'],
    );
    assert.deepEqual(
      parsePemCertificates(ca2.caPem, 'u.pem', known).map((c) => c.fingerprint),
      parsePemCertificates(ca2.caPem, 'u.pem').map((c) => c.fingerprint),
    );
  });

  test('caSecrets() leaves out certificates the public (system) bundle holds', () => {
    const certs = parsePemCertificates(ca.caPem + ca2.caPem, 'both.pem');
    const all = caSecrets(certs);
    assert.ok(all.length > 2);
    const onlySecond = caSecrets(certs, new Set([certs[0]!.fingerprint]));
    assert.deepEqual(onlySecond, caSecrets([certs[1]!]));
  });

  test('invalid files are refused with the file named', async () => {
    const none = path.join(dir, 'none.pem');
    await writeFile(none, 'hello\n');
    await assert.rejects(readCaCertFile(none), /CA certificate file .*none\.pem: no PEM certificate found/);
    const broken = path.join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    await assert.rejects(
      readCaCertFile(broken),
      /broken\.pem: certificate #1 is not a valid X\.509 certificate/,
    );
    await assert.rejects(readCaCertFile(path.join(dir, 'missing.pem')), /missing\.pem: does not exist/);
  });

  test('writeCaLaunchLayer() writes certs, env.launch, layer toml and a CycloneDX SBOM', async () => {
    const layer = path.join(dir, 'layers', 'kiln_ca-certificates', 'ca-certificates');
    const certs = await readCaCertFile(ca.caFile);
    await writeCaLaunchLayer(layer, { certs, layerPath: '/layers/kiln_ca-certificates/ca-certificates' });
    assert.equal(await readFile(path.join(layer, 'ca-certificates.crt'), 'utf8'), certs[0]!.pem);
    assert.deepEqual(await readdir(path.join(layer, 'env.launch')), ['NODE_EXTRA_CA_CERTS.override']);
    assert.equal(
      await readFile(`${layer}.toml`, 'utf8'),
      '[types]\nlaunch = true\nbuild = false\ncache = false\n',
    );
    const sbom = JSON.parse(await readFile(`${layer}.sbom.cdx.json`, 'utf8'));
    assert.deepEqual(sbom, JSON.parse(JSON.stringify(caSbom(certs))));
    assert.equal(sbom.components[0].cryptoProperties.assetType, 'certificate');
    // With the run image's bundle the layer carries a merged bundle and sets SSL_CERT_FILE too.
    const layer2 = path.join(dir, 'layers', 'b', 'ca');
    await writeCaLaunchLayer(layer2, { certs, layerPath: '/l', runImageBundle: ca2.caPem });
    assert.deepEqual((await readdir(path.join(layer2, 'env.launch'))).sort(), [
      'NODE_EXTRA_CA_CERTS.override',
      'SSL_CERT_FILE.override',
    ]);
    assert.equal(
      await readFile(path.join(layer2, 'env.launch', 'SSL_CERT_FILE.override'), 'utf8'),
      '/l/ca-certificates.crt',
    );
  });
});

describe('preparePlatformInputs()', () => {
  test('writes env files and bindings, returns mounts and env, and registers every secret', async () => {
    const rootfs = path.join(dir, 'rootfs');
    await mkdir(path.join(rootfs, 'etc/ssl/certs'), { recursive: true });
    await writeFile(path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt'), ca2.caPem);
    const creds = await bindingDir('creds', {
      type: 'mysql',
      provider: 'acme',
      password: 'binding-canary-91x',
    });
    const redactor = new Redactor();
    const platformDir = path.join(dir, 'platform');
    const r = await preparePlatformInputs({
      platformDir,
      stageDir: path.join(dir, 'stage'),
      buildRootfs: rootfs,
      env: { BP_NODE_VERSION: '22', HTTP_PROXY: 'http://x' },
      userEnv: {},
      kilnEnv: { HTTPS_PROXY: 'http://me:proxy-canary-55@proxy:3128', SECRET_OF_KILN: 'nope' },
      bindings: [await readBindingDir('creds', creds)],
      // CA two is in the image's bundle already: trusted, but no binding entry of its own.
      caCertFiles: [ca.caFile, ca2.caFile, ca.caFile],
      redactor,
      ...(process.getuid?.() === 0 && { uid: 1000, gid: 1000 }),
    });
    assert.deepEqual(r.bindings, ['creds', 'ca-certificates']);
    assert.deepEqual(r.mounts, [
      {
        src: path.join(dir, 'stage', 'ca-certificates.crt'),
        dst: '/etc/ssl/certs/ca-certificates.crt',
        readonly: true,
      },
    ]);
    const bundle = '/etc/ssl/certs/ca-certificates.crt';
    assert.deepEqual(r.env, {
      HTTPS_PROXY: 'http://me:proxy-canary-55@proxy:3128',
      https_proxy: 'http://me:proxy-canary-55@proxy:3128',
      NODE_EXTRA_CA_CERTS: bundle,
      SSL_CERT_FILE: bundle,
      REQUESTS_CA_BUNDLE: bundle,
      PIP_CERT: bundle,
      CURL_CA_BUNDLE: bundle,
      GIT_SSL_CAINFO: bundle,
      SERVICE_BINDING_ROOT: '/platform/bindings',
    });
    // The merged bundle: the image's own CA first, then the extra one (once).
    const merged = parsePemCertificates(
      await readFile(path.join(dir, 'stage', 'ca-certificates.crt'), 'utf8'),
      'm',
    );
    assert.deepEqual(
      merged.map((c) => c.subject),
      ['CN=kiln unit CA two', 'CN=kiln unit CA one'],
    );
    assert.deepEqual(
      await readdir(path.join(platformDir, 'env')),
      ['BP_NODE_VERSION'],
      'proxies stay out of env files',
    );
    assert.equal(await readFile(path.join(platformDir, 'env', 'BP_NODE_VERSION'), 'utf8'), '22');
    assert.deepEqual((await readdir(path.join(platformDir, 'bindings', 'creds'))).sort(), [
      'password',
      'provider',
      'type',
    ]);
    const caBinding = await readdir(path.join(platformDir, 'bindings', 'ca-certificates'));
    assert.equal(caBinding.length, 3); // type, provider, one certificate (CA one; two is the image's)
    assert.equal(
      await readFile(path.join(platformDir, 'bindings', 'ca-certificates', 'type'), 'utf8'),
      'ca-certificates',
    );
    const st = await lstat(path.join(platformDir, 'bindings', 'creds', 'password'));
    assert.equal(st.mode & 0o777, 0o400);
    if (process.getuid?.() === 0) assert.equal(st.uid, 1000);
    assert.equal((await lstat(path.join(platformDir, 'bindings', 'creds'))).mode & 0o777, 0o500);
    // Secrets are redacted; the CA body too; metadata (type, provider) is not.
    const caBody = ca.caPem.split('\n')[1]!;
    const line = `pw binding-canary-91x proxy proxy-canary-55 ca ${caBody} type mysql acme`;
    assert.equal(redactor.redact(line), 'pw [REDACTED] proxy [REDACTED] ca [REDACTED] type mysql acme');
  });

  test('an image without a bundle: no mount, extras-only bundle in the platform dir, additive env only', async () => {
    const rootfs = path.join(dir, 'bare-rootfs');
    await mkdir(rootfs, { recursive: true });
    const platformDir = path.join(dir, 'platform-bare');
    const r = await preparePlatformInputs({
      platformDir,
      stageDir: path.join(dir, 'stage-bare'),
      buildRootfs: rootfs,
      env: {},
      userEnv: {},
      kilnEnv: {},
      bindings: [],
      caCertFiles: [ca.caFile],
      redactor: new Redactor(),
    });
    assert.deepEqual(r.mounts, []);
    assert.deepEqual(r.env, {
      NODE_EXTRA_CA_CERTS: '/platform/kiln/ca-certificates.crt',
      SERVICE_BINDING_ROOT: '/platform/bindings',
    });
    const staged = await readCaCertFile(path.join(platformDir, 'kiln', 'ca-certificates.crt'));
    assert.deepEqual(
      staged.map((c) => c.pem),
      (await readCaCertFile(ca.caFile)).map((c) => c.pem),
    );
  });

  test('nothing asked, nothing added', async () => {
    const r = await preparePlatformInputs({
      platformDir: path.join(dir, 'platform-empty'),
      stageDir: path.join(dir, 'stage-empty'),
      buildRootfs: dir,
      env: {},
      userEnv: {},
      kilnEnv: { PATH: '/bin' },
      bindings: [],
      caCertFiles: [],
      redactor: new Redactor(),
    });
    assert.deepEqual(r, { mounts: [], env: {}, bindings: [], caCerts: [] });
    assert.deepEqual((await readdir(path.join(dir, 'platform-empty'))).sort(), ['bindings', 'env']);
  });

  test('hostCaBundlePath() follows SSL_CERT_FILE', () => {
    assert.equal(hostCaBundlePath({ SSL_CERT_FILE: '/x/b.pem' }), '/x/b.pem');
    assert.equal(hostCaBundlePath({}), '/etc/ssl/certs/ca-certificates.crt');
  });
});
