import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { podmanRun } from '../../../test/helpers/podman.ts';
import { startRegistry } from '../../../test/helpers/registry.ts';
import { fileEntry } from '../../../test/helpers/tar-entries.ts';
import { encodeLaunchConfig, loadLauncher } from '../../launcher/index.ts';
import { type TarEntry, tarStream } from '../../layers/tar-writer.ts';
import { Layout } from '../../layout/layout.ts';
import { MediaType } from '../../oci/media-types.ts';
import { bytesLayer, imageFrom } from '../../oci/memory.ts';
import { setConfig } from '../../oci/mutate.ts';
import { ImageStore } from '../../store/store.ts';
import { resolveUser } from './run.ts';

const execFileP = promisify(execFile);

/** Processes on the host with their real uid and command line. */
function listProcs(): { pid: number; uid: number; cmd: string }[] {
  const out: { pid: number; uid: number; cmd: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      out.push({ pid: Number(name), uid, cmd });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
const root = fileURLToPath(new URL('../../../', import.meta.url));
const kiln = path.join(root, 'bin/kiln');

// The app: a static program that reports what it sees and, with `wait`, waits for a signal.
const APP_C = `#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static volatile sig_atomic_t got = 0;
static void on(int s) { got = s; }
int main(int argc, char **argv) {
  char cwd[256];
  const char *port = getenv("PORT"), *g = getenv("GREETING");
  printf("uid=%d gid=%d\\n", (int)getuid(), (int)getgid());
  printf("port=%s greeting=%s\\n", port ? port : "", g ? g : "");
  for (int i = 1; i < argc; i++) printf("arg=%s\\n", argv[i]);
  printf("cwd=%s\\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
  printf("rootfs-writable=%s\\n", fopen("/etc/probe", "w") ? "yes" : "no");
  printf("tmp-writable=%s\\n", fopen("/tmp/probe", "w") ? "yes" : "no");
  char line[256];
  FILE *st = fopen("/proc/self/status", "r");
  while (st && fgets(line, sizeof line, st))
    if (strncmp(line, "Seccomp:", 8) == 0) printf("seccomp=%d\\n", atoi(line + 8));
  fflush(stdout);
  if (argc > 1 && strcmp(argv[1], "wait") == 0) {
    signal(SIGINT, on);
    signal(SIGTERM, on);
    printf("ready\\n");
    fflush(stdout);
    while (!got) pause();
    printf("got signal %d\\n", (int)got);
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
  if (argc > 1 && strcmp(argv[1], "serve") == 0) {
    /* One HTTP-ish reply on 0.0.0.0:PORT, then exit (for the -p publishing test). */
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(port ? port : "8080"));
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) { perror("listen"); return 1; }
    printf("listening\\n");
    fflush(stdout);
    int c = accept(s, 0, 0);
    const char *msg = "hello from the app\\n";
    write(c, msg, strlen(msg));
    close(c);
    return 0;
  }
  return 0;
}
`;

const dir0 = (p: string): TarEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0 });
const file = (p: string, data: Buffer | string, mode = 0o644): TarEntry => fileEntry(p, data, mode);

describe('kiln run', { skip: (process.getuid?.() ?? 0) !== 0 && 'needs root (sandbox as uid 1000)' }, () => {
  let dir: string;
  let home: string;
  let ref: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-run-'));
    await chmod(dir, 0o755);
    home = path.join(dir, 'home');
    await execFileP('bash', [path.join(root, 'scripts/build.d/launcher.sh')]);
    const launcher = await loadLauncher();
    await writeFile(path.join(dir, 'app.c'), APP_C);
    await execFileP('musl-gcc', ['-static', '-Os', '-o', path.join(dir, 'app'), path.join(dir, 'app.c')]);

    const launch = encodeLaunchConfig({
      buildpacks: [{ id: 'test/bp', api: '0.12' }],
      defaultProcessType: 'web',
      processes: [
        { type: 'web', command: ['/app/app'], args: ['web-default'], buildpackId: 'test/bp' },
        { type: 'worker', command: ['/app/app', 'worker'], args: ['w1'], buildpackId: 'test/bp' },
      ],
    });
    const entries: TarEntry[] = [
      dir0('app'),
      file('app/app', await readFile(path.join(dir, 'app')), 0o755),
      dir0('cnb'),
      dir0('cnb/lifecycle'),
      file('cnb/lifecycle/launcher', await readFile(launcher.path), 0o755),
      dir0('cnb/process'),
      {
        path: 'cnb/process/web',
        type: 'symlink',
        mode: 0o777,
        uid: 0,
        gid: 0,
        linkname: '/cnb/lifecycle/launcher',
      },
      {
        path: 'cnb/process/worker',
        type: 'symlink',
        mode: 0o777,
        uid: 0,
        gid: 0,
        linkname: '/cnb/lifecycle/launcher',
      },
      dir0('etc'),
      file('etc/passwd', 'root:x:0:0:root:/root:/nonexistent\ncnb:x:1000:1000::/home/cnb:/nonexistent\n'),
      file('etc/group', 'root:x:0:\ncnb:x:1000:\n'),
      dir0('layers'),
      dir0('layers/config'),
      file('layers/config/kiln-launch', launch),
      dir0('layers/test_bp'),
      dir0('layers/test_bp/l'),
      dir0('layers/test_bp/l/env.launch'),
      file('layers/test_bp/l/env.launch/GREETING.default', 'hello-from-layer'),
      { path: 'tmp', type: 'dir', mode: 0o1777, uid: 0, gid: 0 },
      { path: 'workspace', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
    ];
    const tar = await buffer(tarStream(entries));
    const image = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: {
          User: 'cnb',
          Entrypoint: ['/cnb/process/web'],
          Env: [
            'CNB_LAYERS_DIR=/layers',
            'CNB_APP_DIR=/workspace',
            'PATH=/cnb/process:/cnb/lifecycle:/usr/bin',
          ],
          WorkingDir: '/workspace',
        },
      },
      layers: [bytesLayer({ blob: tar, tar, mediaType: MediaType.OciLayer })],
    });
    const layout = await Layout.init(path.join(dir, 'layout'));
    await layout.writeImage(image, 'app');
    // The same image with no User: root inside the sandbox, never root outside.
    const rootImage = setConfig(image, (c) => ({ ...c, config: { ...c.config, User: '' } }));
    await layout.writeImage(rootImage, 'as-root');
    // The same image in kiln's local store, as `kiln build my-app` leaves it.
    const store = await ImageStore.open(ImageStore.defaultDir(home));
    await store.write(image, ['my-app']);
    ref = `oci:${path.join(dir, 'layout')}:app`;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function kilnRun(
    args: string[],
    onLine?: (line: string, child: ReturnType<typeof spawn>) => void,
    globalFlags: string[] = [],
  ): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(kiln, [...globalFlags, 'run', ...args], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_HOME: home, HOME: home, LEAKY: 'from-kiln' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => {
        const s = b.toString();
        out += s;
        for (const l of s.split('\n')) if (l) onLine?.(l, child);
      });
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, out, err }));
    });
  }

  test('runs the default process as the image user on a read-only root with a writable /tmp', async () => {
    const r = await kilnRun([ref, '-p', '8123', '-e', 'EXTRA=1']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^uid=1000 gid=1000$/m);
    assert.match(r.out, /^port=8123 greeting=hello-from-layer$/m);
    assert.match(r.out, /^arg=web-default$/m);
    assert.match(r.out, /^cwd=\/workspace$/m);
    assert.match(r.out, /^rootfs-writable=no$/m);
    assert.match(r.out, /^tmp-writable=yes$/m);
    assert.match(r.out, /^seccomp=2$/m, 'the app runs under the seccomp filter');
    assert.match(r.err, /http:\/\/127\.0\.0\.1:8123\//);
  });

  test('a bare name is looked up in the local store first', async () => {
    const r = await kilnRun(['my-app', '--', 'from-store']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^arg=from-store$/m);
    assert.match(r.err, /local:docker\.io\/library\/my-app:latest/);
  });

  test('an image in a registry is pulled, unpacked once and run', async () => {
    const reg = await startRegistry();
    try {
      await execFileP('skopeo', [
        'copy',
        '--dest-tls-verify=false',
        ref,
        `docker://${reg.host}/kiln-test/app:latest`,
      ]);
      const r = await kilnRun([`${reg.host}/kiln-test/app:latest`, '--', 'from-registry'], undefined, [
        '--insecure-registry',
        reg.host,
      ]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^arg=from-registry$/m);
    } finally {
      await reg.stop();
    }
  });

  test('--process selects another type; args after -- replace the process args', async () => {
    const r = await kilnRun([ref, '--process', 'worker', '--', 'extra']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(
      r.out.split('\n').filter((l) => l.startsWith('arg=')),
      ['arg=worker', 'arg=extra'],
    );
    const bad = await kilnRun([ref, '--process', 'nope']);
    assert.equal(bad.code, 3);
    assert.match(bad.err, /process type "nope" not found in the image: it has web, worker/);
  });

  test('an image without a user runs as root inside the sandbox, mapped to a leased unprivileged id outside', async () => {
    const owners: number[] = [];
    const r = await kilnRun([`oci:${path.join(dir, 'layout')}:as-root`, '--', 'wait'], (line, child) => {
      if (line !== 'ready') return;
      // The app's host process: owned by the id kiln leased for this run, never by root or an account.
      const pids = listProcs().filter((p) => p.cmd === '/app/app wait');
      owners.push(...pids.map((p) => p.uid));
      child.kill('SIGTERM');
    });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^uid=0 gid=0$/m);
    assert.match(r.out, /^rootfs-writable=no$/m);
    const accounts = new Set(
      readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .map((l) => Number(l.split(':')[2])),
    );
    assert.ok(
      owners.length > 0 && owners.every((u) => u !== 0 && u !== 65534 && !accounts.has(u)),
      `host owners: ${owners.join(',')}`,
    );
  });

  test('exits with the process exit code, without an error line', async () => {
    const r = await kilnRun([ref, '--', 'exit', '7']);
    assert.equal(r.code, 7, `${r.err}\n${r.out}`);
    assert.doesNotMatch(r.err, /ERROR/);
  });

  test('Ctrl-C (SIGINT to kiln) reaches the app, which stops cleanly', async () => {
    const t0 = Date.now();
    const r = await kilnRun([ref, '--', 'wait'], (line, child) => {
      if (line === 'ready') child.kill('SIGINT');
    });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^got signal 2$/m);
    assert.ok(Date.now() - t0 < 8000);
  });

  test('-p publishes the app port on the host 127.0.0.1 under the isolated network; no helper is left', async () => {
    const free = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const slirpBefore = new Set(
      listProcs()
        .filter((p) => p.cmd.startsWith('slirp4netns'))
        .map((p) => p.pid),
    );
    let reply = '';
    let kilnPid: number | undefined;
    const r = await kilnRun([ref, '-p', String(free), '--', 'serve'], (line, child) => {
      kilnPid = child.pid;
      if (line !== 'listening') return;
      const c = connect(free, '127.0.0.1');
      c.on('data', (b: Buffer) => {
        reply += b.toString();
      });
      c.on('error', (e) => {
        reply = `error ${e.message}`;
      });
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(reply, 'hello from the app\n');
    assert.match(r.err, new RegExp(`published at http://127\\.0\\.0\\.1:${free}/`));
    // This run's helper names its namespace by kiln's pid (builds of other test files running
    // meanwhile start their own).
    const left = listProcs().filter(
      (p) =>
        p.cmd.startsWith('slirp4netns') && !slirpBefore.has(p.pid) && p.cmd.includes(`/proc/${kilnPid}/`),
    );
    assert.ok(kilnPid !== undefined);
    assert.deepEqual(left, [], 'no slirp4netns left behind');
  });

  test('--network host is taken only when asked, with a warning', async () => {
    const r = await kilnRun([ref, '--network', 'host']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /--network host: the sandbox shares this machine's network/);
    const quiet = await kilnRun([ref]);
    assert.doesNotMatch(quiet.err, /--network host/);
  });

  test('the same image runs under podman (a real container engine) with the same launcher behaviour', async () => {
    const r = await podmanRun(ref, ['podman-arg'], { env: { PORT: '9000' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^uid=1000 gid=1000$/m);
    assert.match(r.stdout, /^port=9000 greeting=hello-from-layer$/m);
    assert.match(r.stdout, /^arg=podman-arg$/m);
    assert.match(r.stdout, /^cwd=\/workspace$/m);
  });

  test('resolveUser() reads names and ids from the image', async () => {
    const rootfs = path.join(dir, 'fakeroot');
    await execFileP('mkdir', ['-p', path.join(rootfs, 'etc')]);
    await writeFile(path.join(rootfs, 'etc/passwd'), 'cnb:x:1000:1001::/home/cnb:/bin/false\n');
    await writeFile(path.join(rootfs, 'etc/group'), 'staff:x:50:\n');
    assert.deepEqual(await resolveUser('cnb', rootfs), { uid: 1000, gid: 1001, home: '/home/cnb' });
    assert.deepEqual(await resolveUser('1000:staff', rootfs), { uid: 1000, gid: 50, home: '/home/cnb' });
    assert.deepEqual(await resolveUser('2000', rootfs), { uid: 2000, gid: 2000, home: '/' });
    assert.deepEqual(await resolveUser('', rootfs), { uid: 0, gid: 0, home: '/' });
    await assert.rejects(
      resolveUser('ghost', rootfs),
      /image user "ghost" is not in the image's \/etc\/passwd/,
    );
  });
});
