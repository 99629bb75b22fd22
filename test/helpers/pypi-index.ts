import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { basename } from 'node:path';
import { zipStore } from './go-proxy.ts';
import { listenOnLoopback } from './loopback-server.ts';

// A PEP 503 "simple" package index on 127.0.0.1 serving pure-Python wheels the test describes:
// /simple/ lists projects, /simple/<name>/ links each wheel with its #sha256= (pip checks it),
// /files/<wheel> serves the bytes. The wheels are real zip files with METADATA, WHEEL and RECORD.

/** Dist is one distribution: its modules (file → source) and its Requires-Dist lines. */
export interface Dist {
  readonly name: string;
  readonly version: string;
  readonly files: Readonly<Record<string, string>>;
  readonly requires?: readonly string[];
}

const normalize = (n: string) => n.toLowerCase().replace(/[-_.]+/g, '-');

/** buildWheel returns a py3-none-any wheel of `d`: its file name and bytes. */
export function buildWheel(d: Dist): { file: string; data: Buffer } {
  const stem = `${d.name.replace(/[-.]+/g, '_')}-${d.version}`;
  const info = `${stem}.dist-info`;
  const metadata = [
    'Metadata-Version: 2.1',
    `Name: ${d.name}`,
    `Version: ${d.version}`,
    'License-Expression: MIT',
    ...(d.requires ?? []).map((r) => `Requires-Dist: ${r}`),
    '',
  ].join('\n');
  const wheel = 'Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n';
  const entries = [
    ...Object.entries(d.files).map(([name, text]) => ({ name, data: Buffer.from(text) })),
    { name: `${info}/METADATA`, data: Buffer.from(metadata) },
    { name: `${info}/WHEEL`, data: Buffer.from(wheel) },
  ];
  const record = entries
    .map((e) => {
      const digest = createHash('sha256').update(e.data).digest('base64url');
      return `${e.name},sha256=${digest},${e.data.length}`;
    })
    .concat(`${info}/RECORD,,`)
    .join('\n');
  entries.push({ name: `${info}/RECORD`, data: Buffer.from(`${record}\n`) });
  return { file: `${stem}-py3-none-any.whl`, data: zipStore(entries) };
}

/** PypiIndex is a running index; `url` is the PIP_INDEX_URL (`.../simple/`). */
export interface PypiIndex {
  readonly url: string;
  readonly port: number;
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * startPypiIndex serves `dists` on a random port of 127.0.0.1, and the wheel files `wheels` names
 * as they are (e.g. Debian's setuptools and wheel from /usr/share/python-wheels, for build backends).
 */
export async function startPypiIndex(
  dists: readonly Dist[],
  wheels: readonly string[] = [],
): Promise<PypiIndex> {
  const files = new Map<string, Buffer>();
  const projects = new Map<string, string[]>();
  const built = dists.map((d) => ({ name: d.name, ...buildWheel(d) }));
  for (const file of wheels)
    built.push({ name: basename(file).split('-')[0]!, file: basename(file), data: await readFile(file) });
  for (const w of built) {
    files.set(w.file, w.data);
    const sha = createHash('sha256').update(w.data).digest('hex');
    const list = projects.get(normalize(w.name)) ?? [];
    list.push(`<a href="../../files/${w.file}#sha256=${sha}">${w.file}</a>`);
    projects.set(normalize(w.name), list);
  }
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(path);
    const html = (body: string) =>
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end(`<!DOCTYPE html><html><body>${body}</body></html>`);
    if (path === '/simple/')
      return html([...projects.keys()].map((p) => `<a href="${p}/">${p}</a>`).join('\n'));
    const project = /^\/simple\/([^/]+)\/$/.exec(path)?.[1];
    if (project !== undefined) {
      const links = projects.get(normalize(project));
      if (links) return html(links.join('\n'));
    }
    const file = /^\/files\/([^/]+)$/.exec(path)?.[1];
    const data = file ? files.get(file) : undefined;
    if (data) return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(data);
    res.writeHead(404).end('not found');
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    port,
    requests,
    close,
  };
}
