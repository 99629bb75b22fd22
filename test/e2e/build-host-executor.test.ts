// E2E: `kiln build --executor host` run the way a CI job runs it, inside the build image. The e2e
// builder (test/e2e/build-fixture.ts) is unpacked and started as root under bubblewrap with it
// read-only at / (plus the host's /usr and /etc, which that build image leaves to its sandbox),
// kiln's checkout and Node bound read-only, and temp dirs bound writable at /workspace, /layers
// and /platform. kiln itself then runs the buildpacks on the real paths as CNB_USER_ID.

import assert from 'node:assert/strict';
import { execFile, execSync } from 'node:child_process';
import { cp, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { unpackBuilder } from '../../src/platform/builder-facts.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type E2E, makeE2E, podmanRunRetrying } from './build-fixture.ts';

const execFileP = promisify(execFile);
const KILN = fileURLToPath(new URL('../../', import.meta.url));
const NODE_DIR = path.dirname(path.dirname(process.execPath));

interface Inside {
  code: number;
  out: string;
}

describe('kiln build --executor host (kiln inside the build image)', { timeout: 120_000 }, () => {
  let w: E2E;
  let rootfs: string;
  let podman: Podman;
  before(async () => {
    w = await makeE2E();
    rootfs = await unpackBuilder(w.builder, path.join(w.root, 'rootfs'));
    podman = await startPodman();
  });
  after(async () => {
    await podman?.cleanup();
    await w?.cleanup();
  });

  /** Runs kiln as root inside the build image; `dirs` are the host dirs bound writable at the CNB paths. */
  async function kilnInside(
    name: string,
    args: string[],
    dirs: readonly string[],
    as: 'root' | 'build-user' = 'root',
  ): Promise<Inside> {
    const job = path.join(w.root, 'jobs', name);
    const out = path.join(job, 'out');
    await mkdir(out, { recursive: true });
    const binds: string[] = [];
    for (const d of dirs) {
      await mkdir(path.join(job, d), { recursive: true, mode: 0o755 });
      binds.push('--bind', path.join(job, d), `/${d}`);
    }
    const argv = [
      '--die-with-parent',
      '--unshare-pid',
      // As root (with root's capabilities, as a CI container gives them), or as the build user
      // itself (a user namespace whose uid 1000 is the caller: every bound file is its own).
      ...(as === 'root' ? ['--cap-add', 'ALL'] : ['--unshare-user', '--uid', '1000', '--gid', '1000']),
      '--ro-bind',
      rootfs,
      '/',
      '--ro-bind',
      '/usr',
      '/usr',
      '--ro-bind',
      '/etc',
      '/etc',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      '--ro-bind',
      KILN,
      '/tmp/kiln',
      '--ro-bind',
      NODE_DIR,
      '/tmp/node',
      '--bind',
      path.join(w.root, 'store'),
      '/tmp/kiln-home/images',
      '--ro-bind',
      path.join(w.root, 'apps'),
      '/tmp/apps',
      '--bind',
      out,
      '/tmp/out',
      ...binds,
      '--clearenv',
      '--setenv',
      'PATH',
      '/usr/bin:/bin',
      '--setenv',
      'HOME',
      '/tmp',
      '--setenv',
      'KILN_HOME',
      '/tmp/kiln-home',
      '--chdir',
      '/tmp',
      '/tmp/node/bin/node',
      '/tmp/kiln/src/cli/main.ts',
      'build',
      ...args,
    ];
    try {
      const r = await execFileP('bwrap', argv, { maxBuffer: 16 << 20 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      return { code: x.code ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
    }
  }

  async function blob(layout: string, digest: string): Promise<Buffer> {
    return readFile(path.join(layout, 'blobs', 'sha256', digest.replace('sha256:', '')));
  }

  test('builds in /workspace and /layers as the build user and writes an image with the app and its processes', async () => {
    await w.app('host', 'built in place');
    const r = await kilnInside(
      'ok',
      ['oci:/tmp/out:app', '--executor', 'host', '--path', '/tmp/apps/host', '--builder', 'e2e/builder'],
      ['workspace', 'layers', 'platform'],
    );
    assert.equal(r.code, 0, r.out);
    const job = path.join(w.root, 'jobs', 'ok');
    // The buildpacks ran on the real dirs, as CNB_USER_ID (1000), not as root.
    const statUid = execSync(`stat -c %u ${path.join(job, 'layers', 'e2e_deps')}`)
      .toString()
      .trim();
    assert.equal(statUid, '1000');

    const layout = path.join(job, 'out');
    const index = JSON.parse((await readFile(path.join(layout, 'index.json'), 'utf8')) as string) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'app');
    assert.ok(desc, JSON.stringify(index));
    const manifest = JSON.parse((await blob(layout, desc.digest)).toString()) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    const config = JSON.parse((await blob(layout, manifest.config.digest)).toString()) as {
      config: { Labels: Record<string, string>; Entrypoint?: string[] };
    };
    const md = JSON.parse(config.config.Labels['io.buildpacks.build.metadata']!) as {
      processes: { type: string; command: string[] | string }[];
      buildpacks: { id: string }[];
    };
    assert.deepEqual(
      md.buildpacks.map((b) => b.id),
      ['e2e/runtime', 'e2e/deps', 'e2e/process'],
    );
    const web = md.processes.find((p) => p.type === 'web');
    assert.ok(web, JSON.stringify(md.processes));
    assert.match(JSON.stringify(web.command), /hello/);

    // Some layer holds the app at /workspace, owned by the build user.
    let found = '';
    for (const l of manifest.layers) {
      const file = path.join(layout, 'blobs', 'sha256', l.digest.replace('sha256:', ''));
      const { stdout } = await execFileP('tar', ['-tvzf', file], { maxBuffer: 16 << 20 });
      if (/workspace\/message\.txt/.test(stdout) && /workspace\/hello/.test(stdout)) found = stdout;
    }
    assert.ok(found, 'no layer holds workspace/message.txt and workspace/hello');
    assert.match(found, /1000\/1000 .*workspace\/message\.txt/);

    const run = await podmanRunRetrying(podman, `oci:${layout}:app`, [], { user: '1000:1000' });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'GREETING=hi uid=1000 message=built in place\n');
  });

  test('as the build user itself, kiln runs the buildpacks as itself', async () => {
    await w.app('host-user', 'built by the build user');
    const r = await kilnInside(
      'user',
      ['oci:/tmp/out:app', '--executor', 'host', '--path', '/tmp/apps/host-user', '--builder', 'e2e/builder'],
      ['workspace', 'layers', 'platform'],
      'build-user',
    );
    assert.equal(r.code, 0, r.out);
    const layout = path.join(w.root, 'jobs', 'user', 'out');
    const run = await podmanRunRetrying(podman, `oci:${layout}:app`, [], { user: '1000:1000' });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'GREETING=hi uid=1000 message=built by the build user\n');
  });

  test('--path /workspace builds the checked-out app in place, owned by the build user', async () => {
    const ws = path.join(w.root, 'jobs', 'inplace', 'workspace');
    await mkdir(path.dirname(ws), { recursive: true });
    await cp(await w.app('host-inplace', 'checked out in place'), ws, { recursive: true });
    const r = await kilnInside(
      'inplace',
      ['oci:/tmp/out:app', '--executor', 'host', '--path', '/workspace', '--builder', 'e2e/builder'],
      ['workspace', 'layers', 'platform'],
    );
    assert.equal(r.code, 0, r.out);
    assert.equal(
      execSync(`stat -c %u:%g ${path.join(ws, 'message.txt')}`)
        .toString()
        .trim(),
      '1000:1000',
    );
    const layout = path.join(w.root, 'jobs', 'inplace', 'out');
    const run = await podmanRunRetrying(podman, `oci:${layout}:app`, [], { user: '1000:1000' });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'GREETING=hi uid=1000 message=checked out in place\n');
  });

  test('refuses in one line naming the dir when a CNB dir is missing', async () => {
    await w.app('host-missing', 'never built');
    const r = await kilnInside(
      'missing',
      [
        'oci:/tmp/out:app',
        '--executor',
        'host',
        '--path',
        '/tmp/apps/host-missing',
        '--builder',
        'e2e/builder',
      ],
      ['workspace', 'platform'],
    );
    assert.equal(r.code, 3, r.out);
    assert.match(r.out, /--executor host: \/layers \(CNB_LAYERS_DIR\) /);
  });
});
