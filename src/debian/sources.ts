import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDeb822 } from './deb822.ts';

/** AptSource is one `deb` entry of the machine's apt configuration. */
export interface AptSource {
  readonly uri: string;
  readonly suites: readonly string[];
  readonly components: readonly string[];
  readonly signedBy?: string;
  /** The file it came from, for messages. */
  readonly origin: string;
}

/**
 * parseSourcesList reads one-line-style entries (`deb [opts] URI SUITE COMPONENT...`);
 * `deb-src` lines and comments are skipped.
 */
export function parseSourcesList(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    let rest = line.slice(4).trim();
    let signedBy: string | undefined;
    if (rest.startsWith('[')) {
      const close = rest.indexOf(']');
      const opts = rest.slice(1, close);
      for (const o of opts.trim().split(/\s+/)) {
        const [k, v] = o.split('=');
        if (k === 'signed-by' && v) signedBy = v;
      }
      rest = rest.slice(close + 1).trim();
    }
    const [uri, suite, ...components] = rest.split(/\s+/);
    if (!uri || !suite) continue;
    out.push({ uri, suites: [suite], components, ...(signedBy ? { signedBy } : {}), origin });
  }
  return out;
}

/** parseSourcesDeb822 reads deb822-style `.sources` files; disabled (`Enabled: no`) entries are skipped. */
export function parseSourcesDeb822(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  for (const p of parseDeb822(text)) {
    const types = (p.get('types') ?? '').split(/\s+/);
    if (!types.includes('deb')) continue;
    if ((p.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    const suites = (p.get('suites') ?? '').split(/\s+/).filter(Boolean);
    const components = (p.get('components') ?? '').split(/\s+/).filter(Boolean);
    const signedBy = p.get('signed-by');
    for (const uri of (p.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
      out.push({ uri, suites, components, ...(signedBy ? { signedBy } : {}), origin });
    }
  }
  return out;
}

/**
 * readAptSources reads `<dir>/sources.list` and `<dir>/sources.list.d/*.{list,sources}`, in
 * apt's order (the main file, then the directory sorted by name). Missing files are skipped.
 */
export async function readAptSources(dir = '/etc/apt'): Promise<AptSource[]> {
  const out: AptSource[] = [];
  const main = join(dir, 'sources.list');
  const text = await readFile(main, 'utf8').catch(() => '');
  out.push(...parseSourcesList(text, main));
  const d = join(dir, 'sources.list.d');
  const names = (await readdir(d).catch(() => [] as string[])).sort();
  for (const n of names) {
    const path = join(d, n);
    if (n.endsWith('.list')) out.push(...parseSourcesList(await readFile(path, 'utf8'), path));
    else if (n.endsWith('.sources')) out.push(...parseSourcesDeb822(await readFile(path, 'utf8'), path));
  }
  return out;
}

/** mirrorForSuite returns the URI of the first apt source that serves `suite`, if any. */
export function mirrorForSuite(sources: readonly AptSource[], suite: string): string | undefined {
  return sources.find((s) => s.suites.includes(suite))?.uri;
}
