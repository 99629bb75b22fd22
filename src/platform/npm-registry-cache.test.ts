import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cachedHostNpmConfigGet, parseAnswer } from './npm-registry-cache.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-npmcache-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a file and waits out the "changed while npm ran" window, so the answer may be cached. */
async function writeSettled(file: string, text: string): Promise<void> {
  await writeFile(file, text);
  await sleep(150);
}

/** Replaces the cached registry: a later answer equal to it can only have come from the cache. */
async function tamper(cacheFile: string, registry: string): Promise<void> {
  const e = JSON.parse(await readFile(cacheFile, 'utf8'));
  await writeFile(cacheFile, JSON.stringify({ ...e, registry }));
}

describe('cachedHostNpmConfigGet()', () => {
  test('answers from the cache until ~/.npmrc, an npm_config_* variable or a variable it uses changes', async () => {
    const home = path.join(dir, 'home');
    await mkdir(home, { recursive: true });
    const cacheFile = path.join(dir, 'cache', 'npm-registry.json');
    await writeSettled(path.join(home, '.npmrc'), 'registry=https://one.example.com/\n');
    const env = { PATH: process.env.PATH, HOME: home };
    const get = (e: Record<string, string | undefined> = env) =>
      cachedHostNpmConfigGet({ env: e, cacheFile })();

    assert.equal(await get(), 'https://one.example.com/');
    assert.equal((await stat(cacheFile)).mode & 0o777, 0o600);
    await tamper(cacheFile, 'https://from-cache.example.com/');
    assert.equal(await get(), 'https://from-cache.example.com/');

    // ~/.npmrc changes: npm is asked again.
    await writeSettled(path.join(home, '.npmrc'), 'registry=https://two.example.com/\n');
    assert.equal(await get(), 'https://two.example.com/');

    // An npm_config_* variable appears (here: another user config file).
    const other = path.join(dir, 'other.npmrc');
    await writeSettled(other, 'registry=https://three.example.com/\n');
    await tamper(cacheFile, 'https://from-cache.example.com/');
    assert.equal(await get({ ...env, NPM_CONFIG_USERCONFIG: other }), 'https://three.example.com/');

    // A variable the npmrc references.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: npmrc's own ${VAR} syntax
    await writeSettled(path.join(home, '.npmrc'), 'registry=https://${KILN_TEST_MIRROR}/\n');
    assert.equal(await get({ ...env, KILN_TEST_MIRROR: 'a.example.com' }), 'https://a.example.com/');
    await tamper(cacheFile, 'https://from-cache.example.com/');
    assert.equal(await get({ ...env, KILN_TEST_MIRROR: 'a.example.com' }), 'https://from-cache.example.com/');
    assert.equal(await get({ ...env, KILN_TEST_MIRROR: 'b.example.com' }), 'https://b.example.com/');

    // Another npm on PATH (here: none at all) is another answer.
    assert.equal(await get({ ...env, PATH: '/nonexistent' }), undefined);
  });

  test('a registry URL with credentials is never written to the cache', async () => {
    const home = path.join(dir, 'home-creds');
    await mkdir(home, { recursive: true });
    const cacheFile = path.join(dir, 'cache-creds', 'npm-registry.json');
    await writeSettled(
      path.join(home, '.npmrc'),
      'registry=https://user:s3cret-canary@mirror.example.com/\n',
    );
    const get = cachedHostNpmConfigGet({ env: { PATH: process.env.PATH, HOME: home }, cacheFile });
    // npm itself refuses to print a protected value (so does hostNpmConfigGet's plain call).
    assert.equal(await get(), undefined);
    await assert.rejects(stat(cacheFile), { code: 'ENOENT' });
  });

  test('a damaged cache file is ignored and replaced', async () => {
    const home = path.join(dir, 'home-damaged');
    await mkdir(home, { recursive: true });
    const cacheFile = path.join(dir, 'cache-damaged', 'npm-registry.json');
    await mkdir(path.dirname(cacheFile), { recursive: true });
    await writeFile(cacheFile, '{not json');
    await writeSettled(path.join(home, '.npmrc'), 'registry=https://four.example.com/\n');
    const get = cachedHostNpmConfigGet({ env: { PATH: process.env.PATH, HOME: home }, cacheFile });
    assert.equal(await get(), 'https://four.example.com/');
    assert.equal(JSON.parse(await readFile(cacheFile, 'utf8')).registry, 'https://four.example.com/');
  });

  test('parseAnswer() reads key=value lines, or a lone value', () => {
    assert.deepEqual(parseAnswer('registry=https://r/\nglobalconfig=/g/npmrc\nuserconfig=/h/.npmrc\n'), {
      registry: 'https://r/',
      globalconfig: '/g/npmrc',
      userconfig: '/h/.npmrc',
    });
    assert.deepEqual(parseAnswer('https://r/\n'), { registry: 'https://r/' });
    assert.equal(parseAnswer(''), undefined);
  });
});
