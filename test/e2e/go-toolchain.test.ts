import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mirrorForSuite, readAptSources } from '../../src/debian/sources.ts';
import { debianGoArchive, type GoArchive, startGoDownloadSite } from '../helpers/go-download-site.ts';
import type { Podman } from '../helpers/podman.ts';
import { assertRunUserNoShell, serveAndGet } from './lang-harness.ts';
import { freePort, kiln, kilnOk, podmanOnKilnStore, ROOT } from './samples-harness.ts';

// kiln/go when go.mod asks for a newer Go than the stack's Debian suites have: the toolchain comes
// from a Go download site (BP_GO_DOWNLOAD_URL, the go.dev/dl layout) that this test runs on
// 127.0.0.1 and fills with a real Go 1.22 (Debian's bookworm-backports build, laid out as an
// official archive, made once per machine under .kiln-test/go-toolchain). The app uses a Go 1.22
// feature (method patterns of net/http), so an older toolchain could not build a working image.

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const codename = /^VERSION_CODENAME=(\w+)$/m.exec(
  await readFile('/etc/os-release', 'utf8').catch(() => ''),
)?.[1];
const mirror =
  codename === 'bookworm' ? mirrorForSuite(await readAptSources().catch(() => []), codename) : undefined;
const ready =
  mirror !== undefined &&
  (await access(KEYRING).then(
    () => true,
    () => false,
  ));
const skip = ready ? false : 'needs a bookworm host with apt sources and debian-archive-keyring';

const IMAGE = 'kiln-e2e-go-toolchain';
// The failures get an image of their own: nothing of the good build's cache to restore first.
const FAILING = 'kiln-e2e-go-toolchain-bad';
const MAIN = `package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	// "GET /{$}" is a Go 1.22 pattern; older Go treats it as a literal path, and "/" would 404.
	http.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "built with %s\\n", runtime.Version())
	})
	_ = http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`;

describe('kiln/go with a toolchain from a Go download site', { skip }, () => {
  let podman: Podman;
  let store: string;
  let archive: GoArchive;
  let dir: string;
  before(async () => {
    const cacheDir = path.join(ROOT, '.kiln-test', 'go-toolchain');
    await mkdir(cacheDir, { recursive: true });
    archive = await debianGoArchive({
      mirror: mirror!,
      suite: 'bookworm-backports',
      minor: 22,
      keyring: KEYRING,
      cacheDir,
      env: process.env,
    });
    ({ podman, store } = await podmanOnKilnStore());
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-go-dl-'));
    await writeFile(path.join(dir, 'go.mod'), 'module example.com/newer\n\ngo 1.22\n');
    await writeFile(path.join(dir, 'main.go'), MAIN);
  });
  after(async () => {
    await podman?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test('go 1.22 in go.mod: the newest 1.22.x of the site, sha256-checked, builds an image that runs', async () => {
    const site = await startGoDownloadSite([archive]);
    try {
      const res = await kilnOk([
        'build',
        IMAGE,
        '--path',
        dir,
        '--env',
        `BP_GO_DOWNLOAD_URL=${site.url}`,
        '--allow-host',
        `127.0.0.1:${site.port}`,
      ]);
      const out = res.stdout + res.stderr;
      assert.match(out, /go\.mod asks for Go 1\.22\.0; Debian has 1\.19\.\d+/);
      assert.match(out, new RegExp(`Go ${archive.version.replace(/\./g, '\\.')} \\(http://127\\.0\\.0\\.1:`));
      assert.ok(site.requests.some((r) => r.startsWith('/?mode=json')));
      assert.equal(
        await serveAndGet(podman, store, IMAGE, await freePort()),
        `built with go${archive.version}\n`,
      );
      await assertRunUserNoShell(podman, store, IMAGE);
    } finally {
      await site.close();
    }
  });

  test('an archive whose sha256 is not the index says fails the build', async () => {
    const site = await startGoDownloadSite([{ ...archive, sha256: 'ab'.repeat(32) }]);
    try {
      const res = await kiln([
        'build',
        FAILING,
        '--path',
        dir,
        '--env',
        `BP_GO_DOWNLOAD_URL=${site.url}`,
        '--allow-host',
        `127.0.0.1:${site.port}`,
      ]);
      assert.notEqual(res.code, 0);
      assert.match(res.stdout + res.stderr, /sha256 mismatch: the index says abab/);
    } finally {
      await site.close();
    }
  });

  test('an unreachable download site is one clear line', async () => {
    const port = await freePort();
    const res = await kiln([
      'build',
      FAILING,
      '--path',
      dir,
      '--env',
      `BP_GO_DOWNLOAD_URL=http://127.0.0.1:${port}/`,
    ]);
    assert.notEqual(res.code, 0);
    assert.match(res.stdout + res.stderr, /Go download site http:\/\/127\.0\.0\.1:\d+\/ unreachable: /);
  });
});
