import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type GoModule, type GoProxy, goSumLines, startGoProxy } from '../helpers/go-proxy.ts';
import type { Podman } from '../helpers/podman.ts';
import { assertRunUserNoShell, imageFiles, serveAndGet } from './lang-harness.ts';
import { copySample, freePort, kiln, kilnOk, podmanOnKilnStore, storedImage } from './samples-harness.ts';

// kiln/go through `kiln build` with the default builder: Debian's Go from the stack's archive,
// modules from a Go module proxy this test runs on 127.0.0.1 (serving a module it packs), a
// vendored app offline, and the failures users meet. Every image runs with podman on the
// shell-free run image as the run user, and holds the binary but no Go source.

// Stands in for github.com/google/uuid v1.6.0 (the sample's dependency): same path and version,
// the test's own code; the sample's go.sum is rewritten with this module's hashes.
const UUID: GoModule = {
  path: 'github.com/google/uuid',
  version: 'v1.6.0',
  files: {
    'go.mod': 'module github.com/google/uuid\n',
    'uuid.go': [
      'package uuid',
      '',
      'import (',
      '\t"crypto/rand"',
      '\t"fmt"',
      ')',
      '',
      '// NewString returns a random version-4 UUID.',
      'func NewString() string {',
      '\tvar b [16]byte',
      '\t_, _ = rand.Read(b[:])',
      '\tb[6] = b[6]&0x0f | 0x40',
      '\tb[8] = b[8]&0x3f | 0x80',
      '\treturn fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])',
      '}',
      '',
    ].join('\n'),
  },
};

// One image name: the builds share the build cache (Debian's Go and the Go build cache), as
// rebuilds of one app do.
const IMAGE = 'kiln-e2e-go';

let podman: Podman;
let store: string;
let proxy: GoProxy;
let scratch: string;

before(async () => {
  ({ podman, store } = await podmanOnKilnStore());
  proxy = await startGoProxy([UUID]);
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-go-'));
});
after(async () => {
  await proxy?.close();
  await podman?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

const output = (r: { stdout: string; stderr: string }) => r.stdout + r.stderr;

describe('kiln/go', () => {
  test('the go-service sample: modules through GOPROXY, one static binary, no Go source in the image', async () => {
    const { dir, cleanup } = await copySample('go-service');
    try {
      await writeFile(path.join(dir, 'go.sum'), goSumLines(UUID));
      const res = await kilnOk([
        'build',
        IMAGE,
        '--path',
        dir,
        '--env',
        `GOPROXY=${proxy.url}`,
        '--allow-host',
        `127.0.0.1:${proxy.port}`,
      ]);
      assert.match(output(res), /Go 1\.\d+\.\d+ \(Debian golang-1\.\d+-go /);
      // The module comes from this proxy (go.sum holds its hashes: no other bytes would pass), or,
      // when an earlier run of this file left the module cache in the build cache, from there.
      if (!/Restoring data for 'kiln\/go:go-mod'/.test(output(res)))
        assert.ok(proxy.requests.includes('/github.com/google/uuid/@v/v1.6.0.zip'), proxy.requests.join(' '));
      const body = await serveAndGet(podman, store, IMAGE, await freePort());
      assert.match(
        body,
        /^hello from Go, request [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$/,
      );
      await assertRunUserNoShell(podman, store, IMAGE);
      const cfg = await (await storedImage(IMAGE)).configFile();
      assert.deepEqual(cfg.config?.Entrypoint, ['/cnb/process/go-service']);

      const files = await imageFiles(IMAGE);
      const paths = [...files.keys()];
      assert.deepEqual(
        paths.filter((p) => p.endsWith('.go') || p.endsWith('go.mod') || p.endsWith('go.sum')),
        [],
      );
      assert.ok(files.has('layers/kiln_go/app/bin/go-service'));
      assert.deepEqual(
        paths.filter((p) => /^workspace\/./.test(p)),
        [],
        'the workspace is empty',
      );
      assert.ok(!paths.some((p) => p.includes('usr/lib/go-1.')), 'the toolchain stays out of the image');
      const sbom = files.get('layers/sbom/launch/kiln_go/app/sbom.cdx.json') ?? '';
      assert.match(sbom, /"purl": ?"pkg:golang\/github.com\/google\/uuid@v1.6.0"/);
    } finally {
      await cleanup();
    }
  });

  test("a go.mod that does not parse fails with go's error and the failed step", async () => {
    const dir = path.join(scratch, 'bad-gomod');
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, 'go.mod'),
      'module example.com/bad\n\ngo 1.19\n\nrequire (\n\tgithub.com/google/uuid\n',
    );
    await writeFile(path.join(dir, 'main.go'), 'package main\n\nfunc main() {}\n');
    const res = await kiln(['build', IMAGE, '--path', dir]);
    assert.notEqual(res.code, 0);
    assert.match(output(res), /go\.mod:\d+: /, "go's own message");
    assert.match(output(res), /kiln\/go failed at step "read go\.mod": go\.mod does not parse/);
  });

  test('a go.mod asking for a newer Go than Debian has fails clearly when no Go download site is set', async () => {
    const dir = path.join(scratch, 'newer');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'go.mod'), 'module example.com/newer\n\ngo 1.22\n');
    await writeFile(path.join(dir, 'main.go'), 'package main\n\nfunc main() {}\n');
    const res = await kiln(['build', IMAGE, '--path', dir]);
    assert.notEqual(res.code, 0);
    assert.match(
      output(res),
      /kiln\/go failed at step "toolchain": go\.mod asks for go 1\.22\.0, newer than Debian's Go 1\.\d+\.\d+, and no Go download site is configured \(set BP_GO_DOWNLOAD_URL/,
    );
  });

  test('a vendored app builds with GOFLAGS=-mod=vendor and no proxy, then again with --network none', async () => {
    const dir = path.join(scratch, 'vendored');
    await mkdir(path.join(dir, 'vendor/github.com/google/uuid'), { recursive: true });
    await writeFile(
      path.join(dir, 'go.mod'),
      'module example.com/vendored\n\ngo 1.19\n\nrequire github.com/google/uuid v1.6.0\n',
    );
    await writeFile(path.join(dir, 'go.sum'), goSumLines(UUID));
    await writeFile(
      path.join(dir, 'vendor/modules.txt'),
      '# github.com/google/uuid v1.6.0\n## explicit\ngithub.com/google/uuid\n',
    );
    await writeFile(path.join(dir, 'vendor/github.com/google/uuid/uuid.go'), UUID.files['uuid.go']!);
    const main = (word: string) =>
      `package main\n\nimport (\n\t"fmt"\n\t"net/http"\n\t"os"\n\n\t"github.com/google/uuid"\n)\n\nfunc main() {\n\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {\n\t\tfmt.Fprintf(w, "${word} %d\\n", len(uuid.NewString()))\n\t})\n\t_ = http.ListenAndServe(":"+os.Getenv("PORT"), nil)\n}\n`;
    await writeFile(path.join(dir, 'main.go'), main('vendored'));
    const args = ['build', IMAGE, '--path', dir, '--env', 'GOPROXY=off', '--env', 'GOFLAGS=-mod=vendor'];
    await kilnOk(args);
    assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'vendored 36\n');

    // Offline: Debian's Go comes from the build cache, the modules from vendor/.
    await writeFile(path.join(dir, 'main.go'), main('offline'));
    // BP_DEBIAN_INDEX_MAX_AGE=0: look at the archive now (unreachable), not trust the last check.
    const res = await kilnOk([...args, '--network', 'none', '--env', 'BP_DEBIAN_INDEX_MAX_AGE=0']);
    assert.match(output(res), /Debian archive unreachable .*reusing the previous go layer/);
    assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'offline 36\n');
    const files = await imageFiles(IMAGE);
    assert.deepEqual(
      [...files.keys()].filter((p) => p.endsWith('.go') || /(^|\/)vendor(\/|$)/.test(p)),
      [],
    );
    assert.ok(files.has('layers/kiln_go/app/bin/vendored'));
  });
});
