import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Command } from 'commander';
import { makeTestCa, type TestCa } from '../../test/helpers/test-ca.ts';
import { Logger } from './logger.ts';
import { addPlatformOptions, type PlatformFlags, platformSetup } from './platform-options.ts';
import { resolveSettings } from './settings.ts';

let dir: string;
let ca: TestCa;
const lines: string[] = [];
const log = new Logger({
  out: new Writable({
    write(c, _e, cb) {
      lines.push(String(c));
      cb();
    },
  }),
  level: 'debug',
  color: false,
  bars: false,
});

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-platopts-'));
  ca = await makeTestCa();
  await mkdir(path.join(dir, 'creds'));
  await writeFile(path.join(dir, 'creds', 'type'), 'npmrc');
  await writeFile(path.join(dir, 'creds', '.npmrc'), '//npm.example.com/:_authToken=platopts-canary-77\n');
  await mkdir(path.join(dir, 'app'));
  await mkdir(path.join(dir, 'rootfs', 'etc', 'ssl', 'certs'), { recursive: true });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await ca.cleanup();
});

function parse(argv: string[]): PlatformFlags {
  const cmd = addPlatformOptions(new Command('build').exitOverride());
  cmd.parse(argv, { from: 'user' });
  return cmd.opts() as PlatformFlags;
}

const settings = () =>
  resolveSettings(
    {},
    { HOME: dir, KILN_CONFIG: path.join(dir, 'config.toml'), PATH: process.env.PATH },
    { isTTY: false },
  );

describe('addPlatformOptions() / platformSetup()', () => {
  test('flags parse as repeatable lists', () => {
    assert.deepEqual(
      parse(['--binding', 'a=/x', '--binding', 'b=/y', '--ca-certs', 'c.pem', '--ca-certs-launch']),
      {
        binding: ['a=/x', 'b=/y'],
        caCerts: ['c.pem'],
        caCertsLaunch: true,
      },
    );
    assert.deepEqual(parse([]), {});
  });

  test('bad inputs fail before the build with the file or binding named', async () => {
    const bad = path.join(dir, 'bad.pem');
    await writeFile(bad, 'not a cert');
    const base = { settings: settings(), log, appDir: path.join(dir, 'app'), env: {}, userEnv: {} };
    await assert.rejects(
      platformSetup({ ...base, flags: { caCerts: [bad] } }),
      /bad\.pem: no PEM certificate found/,
    );
    await assert.rejects(
      platformSetup({ ...base, flags: { binding: ['x'] } }),
      /--binding "x": expected NAME=DIR/,
    );
    await assert.rejects(
      platformSetup({ ...base, flags: { binding: [`a=${dir}/creds`, `a=${dir}/creds`] } }),
      /binding "a" is given twice/,
    );
  });

  test('prepare() fills the platform dir and returns env and mounts; launchLayer() writes the layer', async () => {
    const s = await platformSetup({
      settings: settings(),
      log,
      appDir: path.join(dir, 'app'),
      env: { BP_X: '1' },
      userEnv: {},
      flags: { binding: [`npm=${dir}/creds`], caCerts: [ca.caFile], caCertsLaunch: true },
    });
    const work = path.join(dir, 'work');
    await mkdir(path.join(work, 'platform'), { recursive: true });
    const inputs = await s.prepare(path.join(work, 'platform'), 1000, 1000, path.join(dir, 'rootfs'));
    assert.deepEqual((await readdir(path.join(work, 'platform', 'bindings'))).sort(), [
      'ca-certificates',
      'npm',
    ]);
    assert.equal(inputs.env.SERVICE_BINDING_ROOT, '/platform/bindings');
    assert.equal(inputs.env.NODE_EXTRA_CA_CERTS, '/platform/kiln/ca-certificates.crt');
    assert.equal(s.redactor.redact('token platopts-canary-77'), 'token [REDACTED]');
    const layer = await s.launchLayer(path.join(work, 'layers'));
    assert.equal(layer, path.join(work, 'layers', 'kiln_ca-certificates', 'ca-certificates'));
    assert.match(await readFile(`${layer}.toml`, 'utf8'), /launch = true/);
    const sbom = path.join(
      work,
      'layers',
      'sbom',
      'launch',
      'kiln_ca-certificates',
      'ca-certificates',
      'sbom.cdx.json',
    );
    assert.equal(JSON.parse(await readFile(sbom, 'utf8')).components.length, 1);
  });

  test("the host's CA bundle is trusted by default, not with trust-host-ca-certs false; a missing bundle is skipped", async () => {
    const trusted = async (env: Record<string, string>, name: string) => {
      const s = await platformSetup({
        settings: resolveSettings({}, { HOME: dir, PATH: process.env.PATH, ...env }, { isTTY: false }),
        log,
        appDir: path.join(dir, 'app'),
        env: {},
        userEnv: {},
        flags: { caCertsLaunch: true },
      });
      const platform = path.join(dir, name, 'platform');
      await mkdir(platform, { recursive: true });
      const inputs = await s.prepare(platform, 1000, 1000, path.join(dir, 'rootfs'));
      // The host bundle is build-only: --ca-certs-launch alone adds no layer.
      assert.equal(await s.launchLayer(path.join(dir, name, 'layers')), undefined);
      return inputs;
    };
    const byDefault = await trusted(
      { SSL_CERT_FILE: ca.caFile, KILN_CONFIG: path.join(dir, 'none.toml') },
      'host-default',
    );
    assert.equal(byDefault.caCerts.length, 1);
    assert.equal(byDefault.env.NODE_EXTRA_CA_CERTS, '/platform/kiln/ca-certificates.crt');
    const off = path.join(dir, 'off.toml');
    await writeFile(off, 'trust-host-ca-certs = false\n');
    const optedOut = await trusted({ SSL_CERT_FILE: ca.caFile, KILN_CONFIG: off }, 'host-off');
    assert.equal(optedOut.caCerts.length, 0);
    assert.equal(optedOut.env.NODE_EXTRA_CA_CERTS, undefined);
    const missing = await trusted(
      { SSL_CERT_FILE: path.join(dir, 'missing.pem'), KILN_CONFIG: path.join(dir, 'none.toml') },
      'host-missing',
    );
    assert.equal(missing.caCerts.length, 0);
  });
});
