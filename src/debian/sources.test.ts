import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { mirrorForSuite, parseSourcesList, readAptSources } from './sources.ts';

describe('apt sources', () => {
  test('parseSourcesList reads one-line entries with options and skips deb-src', () => {
    const s = parseSourcesList(
      'deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\ndeb-src http://x y z\n# deb http://no a b\n',
      'f',
    );
    assert.equal(s.length, 1);
    assert.deepEqual(s[0], {
      uri: 'http://m.example/debian',
      suites: ['bookworm'],
      components: ['main', 'contrib'],
      signedBy: '/k.gpg',
      origin: 'f',
    });
  });

  test('readAptSources reads sources.list and .sources files in order; mirrorForSuite picks per suite', async () => {
    const d = await mkdtemp(join(tmpdir(), 'kiln-apt-'));
    try {
      await mkdir(join(d, 'sources.list.d'));
      await writeFile(join(d, 'sources.list'), '');
      await writeFile(
        join(d, 'sources.list.d', 'debian.sources'),
        'Types: deb\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n' +
          'Types: deb\nURIs: http://a.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n' +
          'Types: deb\nEnabled: no\nURIs: http://off.example\nSuites: trixie\nComponents: main\n',
      );
      await writeFile(join(d, 'sources.list.d', 'x.list.disabled'), 'deb http://ignored z main\n');
      const s = await readAptSources(d);
      assert.equal(s.length, 2);
      assert.equal(mirrorForSuite(s, 'bookworm-updates'), 'http://a.example/debian');
      assert.equal(mirrorForSuite(s, 'bookworm-security'), 'http://a.example/debian-security');
      assert.equal(mirrorForSuite(s, 'trixie'), undefined);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
