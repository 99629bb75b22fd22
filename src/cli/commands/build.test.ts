import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { RegistryClient } from '../../registry/client.ts';
import { Transports } from '../../transport/transports.ts';
import { main } from '../main.ts';
import { defaultCacheDir, parseEnvFlags, projectRefs } from './build.ts';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await fs.rm(t, { recursive: true, force: true });
});

describe('kiln build flags', () => {
  test("parseEnvFlags() reads --env-file lines and lets --env win; NAME alone comes from kiln's env", async () => {
    const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-build-flags-'));
    temps.push(d);
    const f = path.join(d, 'env');
    await fs.writeFile(f, '# comment\nA=1\nB=from file\n\nC=x=y\n');
    const env = await parseEnvFlags(['B=from flag', 'HOMEY', 'MISSING'], [f], { HOMEY: '/h' });
    assert.deepEqual(env, { A: '1', B: 'from flag', C: 'x=y', HOMEY: '/h' });
    await assert.rejects(parseEnvFlags(['1BAD=x'], [], {}), /--env: "1BAD=x" is not NAME=VALUE/);
    await assert.rejects(parseEnvFlags([], [path.join(d, 'nope')], {}), /--env-file .*nope/);
  });

  test('a destination sends plain names to the local store unless --publish', () => {
    const t = new Transports({ client: new RegistryClient({}), storeDir: '/nonexistent/store' });
    assert.equal(t.destination('my-app', false).name, 'local:docker.io/library/my-app:latest');
    assert.equal(t.destination('my-app', false).imageName, 'docker.io/library/my-app:latest');
    assert.equal(t.destination('localhost:5000/app', true).registry, 'localhost:5000');
    assert.equal(t.destination('oci:/tmp/x:app', false).name, 'oci:/tmp/x:app');
    assert.equal(t.destination('docker-archive:/tmp/x.tar', false).name, 'docker-archive:/tmp/x.tar');
  });

  test('defaultCacheDir() is per image and safe as a file name', () => {
    const a = defaultCacheDir('/c', 'docker.io/library/a:latest');
    const b = defaultCacheDir('/c', 'docker.io/library/b:latest');
    assert.notEqual(a, b);
    assert.match(path.basename(a), /^docker\.io_library_a_latest-[0-9a-f]{12}$/);
  });

  test('projectRefs() maps project.toml group entries to --buildpack values', async () => {
    const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-build-refs-'));
    temps.push(d);
    const refs = await projectRefs(
      [
        { id: 'a/b', version: '1.0.0' },
        { id: 'c/d' },
        { uri: 'docker://reg/bp:1', resolvedUri: 'docker://reg/bp:1' },
        { uri: './bps/x', resolvedUri: '/proj/bps/x' },
        { id: 'me/inline', script: { api: '0.10', inline: 'echo hi', shell: '/bin/bash' } },
      ],
      d,
    );
    assert.deepEqual(refs.slice(0, 4), ['a/b@1.0.0', 'c/d', 'reg/bp:1', '/proj/bps/x']);
    const toml = await fs.readFile(path.join(refs[4]!, 'buildpack.toml'), 'utf8');
    assert.match(toml, /id = "me\/inline"/);
    assert.match(await fs.readFile(path.join(refs[4]!, 'bin', 'build'), 'utf8'), /echo hi/);
    await assert.rejects(
      projectRefs([{ uri: 'urn:cnb:registry:x', resolvedUri: 'urn:cnb:registry:x' }], d),
      /unsupported scheme/,
    );
  });

  test('kiln build rejects bad flags with exit code 3 before doing any work', async () => {
    const err: string[] = [];
    const sink = new Writable({
      write: (c, _e, cb) => {
        err.push(String(c));
        cb();
      },
    });
    const io = { stdout: sink, stderr: sink, env: { KILN_HOME: '/nonexistent-kiln-home' }, isTTY: false };
    assert.equal(await main(['build', 'app', '--network', 'maybe'], io), 3);
    assert.match(err.join(''), /network/);
    assert.equal(await main(['build', 'app', '--allow-host', '127.0.0.1'], io), 3);
    assert.match(err.join(''), /--allow-host "127.0.0.1": expected HOST:PORT/);
    assert.equal(await main(['build', 'app', '--network', 'none', '--allow-host', '127.0.0.1:4873'], io), 3);
    assert.match(err.join(''), /--allow-host applies to --network isolated only \(the network is "none"\)/);
    assert.equal(await main(['build', 'app', '--cache-image', 'oci:/x', '--cache-dir', '/c'], io), 3);
    assert.match(err.join(''), /--cache-image and --cache-dir exclude each other/);
  });

  test('bin/kiln build --env-file with a missing file: kiln’s one error line and exit 3 (node does not intercept it)', () => {
    const kiln = path.resolve(import.meta.dirname, '..', '..', '..', 'bin', 'kiln');
    const r = spawnSync(kiln, ['build', 'app', '--env-file', '/nonexistent/build.env'], {
      env: { ...process.env, KILN_HOME: '/nonexistent-kiln-home', NO_COLOR: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /^ERROR: --env-file \/nonexistent\/build\.env: .*no such file/m);
    assert.doesNotMatch(r.stderr, /^node:/m);
  });
});
