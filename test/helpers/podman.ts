// Test helper: podman as a real consumer of the images kiln writes. Each Podman instance has
// its own throw-away storage (--root/--runroot), so tests never share or leak images.
// Machine workarounds (see shared/machine-notes.md): crun refuses the hybrid cgroup layout, so
// every podman call runs in a private mount namespace with /sys/fs/cgroup/unified unmounted;
// the missing CAP_SYS_RESOURCE needs low default ulimits, set through a containers.conf.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Result of a podman command. */
export interface PodmanResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of Podman.run. */
export interface PodmanRunOptions {
  /** `--user` (default: the image's). */
  readonly user?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** `--network` (default 'none'). */
  readonly network?: string;
  /** Override the entrypoint (`--entrypoint`). */
  readonly entrypoint?: string;
  /** Extra flags placed before the image reference (e.g. ['-p', '8080:8080']). */
  readonly flags?: readonly string[];
  /** Milliseconds before the command is killed (default 120 s). */
  readonly timeoutMs?: number;
}

/** A podman with private storage. Call cleanup() when done. */
export interface Podman {
  readonly dir: string;
  /** Runs any podman subcommand: `podman(['images'])`. Never throws on a non-zero exit. */
  exec(args: readonly string[], timeoutMs?: number): Promise<PodmanResult>;
  /** `podman run --rm` of `image` (e.g. `oci:/layout:tag`, `docker-archive:/f.tar`, a loaded name). */
  run(image: string, args?: readonly string[], opts?: PodmanRunOptions): Promise<PodmanResult>;
  /** `podman load -i file`; returns the names it loaded. */
  load(file: string): Promise<PodmanResult>;
  /**
   * serve starts `podman system service` (the Docker-compatible API) over this storage on a unix
   * socket in the podman's directory; `stop` ends it (cleanup does too).
   */
  serve(): Promise<PodmanService>;
  cleanup(): Promise<void>;
}

/** A running `podman system service`. */
export interface PodmanService {
  /** The socket's path (`DOCKER_HOST=unix://<socket>`). */
  readonly socket: string;
  stop(): Promise<void>;
}

function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** startPodman makes a podman with private storage under a temp directory. */
export async function startPodman(): Promise<Podman> {
  // Lower case only: podman names an image pulled from `oci:PATH` after PATH, and a
  // reference with upper case letters is invalid ("repository name must be lowercase").
  const dir = path.join(tmpdir(), `kiln-podman-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { mode: 0o755 });
  let links = 0;
  const lowerRef = async (image: string): Promise<string> => {
    const m = /^(oci|oci-archive|docker-archive):([^:]+)(:.*)?$/.exec(image);
    if (!m || m[2] === m[2]!.toLowerCase()) return image;
    const link = path.join(dir, `ref${links++}`);
    await symlink(path.resolve(m[2]!), link);
    return `${m[1]}:${link}${m[3] ?? ''}`;
  };
  const conf = path.join(dir, 'containers.conf');
  await writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n');
  // Everything private: storage, run state, and libpod's tmpdir (default /run/libpod, shared by
  // every podman on the machine: one test's cleanup must not disturb another's podman).
  const base = [
    'podman',
    '--root',
    path.join(dir, 'root'),
    '--runroot',
    path.join(dir, 'runroot'),
    '--tmpdir',
    path.join(dir, 'libpod-tmp'),
  ];
  await mkdir(path.join(dir, 'tmp'));
  const exec = (args: readonly string[], timeoutMs = 120_000): Promise<PodmanResult> =>
    new Promise((resolve) => {
      const script = `umount /sys/fs/cgroup/unified 2>/dev/null; exec ${[...base, ...args].map(sh).join(' ')}`;
      execFile(
        'unshare',
        ['-m', 'sh', '-c', script],
        {
          env: { ...process.env, CONTAINERS_CONF: conf, TMPDIR: path.join(dir, 'tmp') },
          timeout: timeoutMs,
          maxBuffer: 64 << 20,
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
        },
      );
    });
  const services: ChildProcess[] = [];
  const env = { ...process.env, CONTAINERS_CONF: conf, TMPDIR: path.join(dir, 'tmp') };
  return {
    dir,
    exec,
    async serve() {
      const socket = path.join(dir, `podman-${services.length}.sock`);
      const script = `umount /sys/fs/cgroup/unified 2>/dev/null; exec ${[...base, 'system', 'service', '--time=0', `unix://${socket}`].map(sh).join(' ')}`;
      const child = spawn('unshare', ['-m', 'sh', '-c', script], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      services.push(child);
      const until = Date.now() + 30_000;
      while (!existsSync(socket)) {
        if (child.exitCode !== null || Date.now() > until)
          throw new Error(`podman system service did not start: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const stop = async () => {
        if (child.exitCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      };
      return { socket, stop };
    },
    async run(image, args = [], opts = {}) {
      const flags = ['run', '--rm', '--network', opts.network ?? 'none'];
      if (opts.user) flags.push('--user', opts.user);
      if (opts.entrypoint !== undefined) flags.push('--entrypoint', opts.entrypoint);
      for (const [k, v] of Object.entries(opts.env ?? {})) flags.push('--env', `${k}=${v}`);
      return exec([...flags, ...(opts.flags ?? []), await lowerRef(image), ...args], opts.timeoutMs);
    },
    load(file) {
      return exec(['load', '-i', file]);
    },
    async cleanup() {
      // No `podman system reset`: the storage is private and every mount lived in the
      // command's own mount namespace. A container a test started detached may still be exiting
      // (its conmon writes into the overlay store), so remove what is left first and let rm retry
      // the directories that are still being emptied (ENOTEMPTY/EBUSY) instead of failing the file.
      for (const c of services) {
        if (c.exitCode !== null) continue;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (c.exitCode === null) c.kill('SIGKILL');
      }
      await exec(['rm', '--all', '--force', '--time', '0'], 30_000);
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
}

/** podmanRun runs one image once in a throw-away podman (`oci:DIR:TAG` or any podman reference). */
export async function podmanRun(
  image: string,
  args: readonly string[] = [],
  opts: PodmanRunOptions = {},
): Promise<PodmanResult> {
  const p = await startPodman();
  try {
    return await p.run(image, args, opts);
  } finally {
    await p.cleanup();
  }
}

/** muslStatic compiles the C program `source` into the static binary `outFile` (musl-gcc). */
async function muslStatic(outFile: string, source: string): Promise<void> {
  const src = `${outFile}.c`;
  await writeFile(src, source);
  await new Promise<void>((resolve, reject) =>
    execFile('musl-gcc', ['-static', '-Os', '-o', outFile, src], (err, _o, stderr) =>
      err ? reject(new Error(`musl-gcc failed: ${stderr}`)) : resolve(),
    ),
  );
  await rm(src, { force: true });
}

/** buildStaticHello compiles a static binary printing "hello uid=U gid=G ARGS..." (musl-gcc). */
export function buildStaticHello(outFile: string): Promise<void> {
  return muslStatic(
    outFile,
    '#include <stdio.h>\n#include <unistd.h>\nint main(int c,char**v){printf("hello uid=%d gid=%d",(int)getuid(),(int)getgid());' +
      'for(int i=1;i<c;i++)printf(" %s",v[i]);printf("\\n");return 0;}\n',
  );
}

/** buildStaticCat compiles a static `cat` (prints each file argument in turn) for looking inside images. */
export function buildStaticCat(outFile: string): Promise<void> {
  return muslStatic(
    outFile,
    '#include <stdio.h>\nint main(int c,char**v){for(int i=1;i<c;i++){FILE*f=fopen(v[i],"r");if(!f){perror(v[i]);return 1;}' +
      'int ch;while((ch=fgetc(f))!=EOF)putchar(ch);fclose(f);}return 0;}\n',
  );
}
