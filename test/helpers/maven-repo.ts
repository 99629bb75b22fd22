import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { zipStore } from './go-proxy.ts';
import { listenOnLoopback } from './loopback-server.ts';

// A Maven repository over HTTP on 127.0.0.1, serving a directory laid out as one (groupId as
// directories / artifactId / version / files): Debian's /usr/share/maven-repo, where the packaged
// Maven plugins and libraries install their poms and jars. Debian's files are symlinks into
// /usr/share/java; a path is served when its real path stays below one of `roots`.

export const DEBIAN_MAVEN_REPO = '/usr/share/maven-repo';

/** MavenRepo is a running repository; `url` goes into a settings.xml mirror. */
export interface MavenRepo {
  readonly url: string;
  readonly port: number;
  /** Paths asked for (GET and HEAD), in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/** `extra`: more files by repository path (e.g. a Maven distribution for mvnw), served as given. */
export async function startMavenRepo(
  dir = DEBIAN_MAVEN_REPO,
  roots: readonly string[] = [DEBIAN_MAVEN_REPO, '/usr/share/java'],
  extra: ReadonlyMap<string, Buffer> = new Map(),
): Promise<MavenRepo> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const rel = decodeURIComponent(url.pathname).replace(/^\/+/, '');
      requests.push(`/${rel}`);
      const body = extra.get(rel);
      if (body && (req.method === 'GET' || req.method === 'HEAD')) {
        res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/zip' });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      const inside = (p: string) => roots.some((r) => p === r || p.startsWith(`${r}/`));
      // Debian's repository has no checksum files: they are made here, so Maven checks every download.
      const sha1 = rel.endsWith('.sha1');
      const file = path.join(dir, path.posix.normalize(`/${sha1 ? rel.slice(0, -5) : rel}`));
      const real = await realpath(file).catch(() => undefined);
      const st = real && inside(real) ? await stat(real).catch(() => undefined) : undefined;
      if ((req.method !== 'GET' && req.method !== 'HEAD') || !st?.isFile()) {
        res.writeHead(404).end();
        return;
      }
      if (sha1) {
        const hash = createHash('sha1');
        for await (const chunk of createReadStream(real!)) hash.update(chunk as Buffer);
        const body = hash.digest('hex');
        res.writeHead(200, { 'content-length': body.length, 'content-type': 'text/plain' });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
      if (req.method === 'HEAD') res.end();
      else createReadStream(real!).pipe(res);
    })().catch(() => res.writeHead(500).end());
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    close,
  };
}

/** mirrorSettingsXml is a settings.xml that sends every repository to `url`. */
export function mirrorSettingsXml(url: string): string {
  return `<settings><mirrors><mirror><id>test</id><mirrorOf>*</mirrorOf><url>${url}</url></mirror></mirrors></settings>\n`;
}

/**
 * mavenDistributionZip packs the host's Debian Maven (/usr/share/maven, links followed) as the
 * `apache-maven-<version>-bin.zip` a Maven wrapper downloads: `apache-maven-<version>/bin/mvn` etc.
 */
export async function mavenDistributionZip(version: string, home = '/usr/share/maven'): Promise<Buffer> {
  const entries: { name: string; data: Buffer }[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(home, rel))).sort()) {
      const r = path.posix.join(rel, name);
      const st = await stat(path.join(home, r));
      if (st.isDirectory()) await walk(r);
      else if (st.isFile())
        entries.push({ name: `apache-maven-${version}/${r}`, data: await readFile(path.join(home, r)) });
    }
  };
  for (const top of ['bin', 'boot', 'conf', 'lib']) await walk(top);
  return zipStore(entries);
}
