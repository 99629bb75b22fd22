import { readFile } from 'node:fs/promises';
import { parseDeb822 } from '../../../src/debian/deb822.ts';

/**
 * installedPackages lists the packages dpkg has installed in this root (the build image's
 * /var/lib/dpkg/status): name → version. The resolver counts them as present, so a layer only
 * carries what the image lacks.
 */
export async function installedPackages(status = '/var/lib/dpkg/status'): Promise<Map<string, string>> {
  const text = await readFile(status, 'utf8').catch(() => '');
  const out = new Map<string, string>();
  for (const p of parseDeb822(text)) {
    const name = p.get('package');
    const version = p.get('version');
    if (name && version && /\binstalled$/.test(p.get('status') ?? '')) out.set(name, version);
  }
  return out;
}
