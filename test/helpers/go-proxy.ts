import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { crc32 } from 'node:zlib';
import { listenOnLoopback } from './loopback-server.ts';

// A Go module proxy (the GOPROXY protocol: <module>/@v/list, <version>.info, .mod, .zip) serving
// modules the test writes, with the go.sum lines (h1: dirhash) Go checks them against.

/** GoModule is one module version: its files, relative to the module root (go.mod among them). */
export interface GoModule {
  readonly path: string;
  readonly version: string;
  readonly files: Readonly<Record<string, string>>;
}

/** zipStore writes a zip archive of stored (uncompressed) entries, as Go's module zips may be. */
export function zipStore(entries: readonly { name: string; data: Buffer }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, e.data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(e.data.length, 20);
    central.writeUInt32LE(e.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** hash1 is Go's dirhash.Hash1: sha256 over "<sha256hex>  <name>\n" lines of the sorted files. */
export function hash1(files: readonly { name: string; data: Buffer }[]): string {
  const lines = [...files]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((f) => `${createHash('sha256').update(f.data).digest('hex')}  ${f.name}\n`)
    .join('');
  return `h1:${createHash('sha256').update(lines).digest('base64')}`;
}

/** escapePath is the module proxy's case encoding (an upper-case letter becomes "!" + lower case). */
function escapePath(p: string): string {
  return p.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);
}

/** goSumLines returns the two go.sum lines of a module version. */
export function goSumLines(m: GoModule): string {
  const prefix = `${m.path}@${m.version}/`;
  const files = Object.entries(m.files).map(([n, d]) => ({ name: prefix + n, data: Buffer.from(d) }));
  const mod = hash1([{ name: 'go.mod', data: Buffer.from(m.files['go.mod'] ?? '') }]);
  return `${m.path} ${m.version} ${hash1(files)}\n${m.path} ${m.version}/go.mod ${mod}\n`;
}

/** GoProxy is a running module proxy on 127.0.0.1; `requests` lists the paths asked for. */
export interface GoProxy {
  readonly url: string;
  readonly port: number;
  readonly requests: string[];
  close(): Promise<void>;
}

/** startGoProxy serves `modules` on a random port of 127.0.0.1. */
export async function startGoProxy(modules: readonly GoModule[]): Promise<GoProxy> {
  const routes = new Map<string, { type: string; body: Buffer }>();
  const versions = new Map<string, string[]>();
  for (const m of modules) {
    const base = `/${escapePath(m.path)}/@v/`;
    const prefix = `${m.path}@${m.version}/`;
    const files = Object.entries(m.files).map(([n, d]) => ({ name: prefix + n, data: Buffer.from(d) }));
    routes.set(`${base}${m.version}.info`, {
      type: 'application/json',
      body: Buffer.from(JSON.stringify({ Version: m.version, Time: '2024-01-01T00:00:00Z' })),
    });
    routes.set(`${base}${m.version}.mod`, { type: 'text/plain', body: Buffer.from(m.files['go.mod'] ?? '') });
    routes.set(`${base}${m.version}.zip`, { type: 'application/zip', body: zipStore(files) });
    versions.set(`${base}list`, [...(versions.get(`${base}list`) ?? []), m.version]);
  }
  for (const [k, v] of versions)
    routes.set(k, { type: 'text/plain', body: Buffer.from(`${v.join('\n')}\n`) });
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(path);
    const r = routes.get(path);
    if (!r) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': r.type, 'content-length': r.body.length }).end(r.body);
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close,
  };
}
