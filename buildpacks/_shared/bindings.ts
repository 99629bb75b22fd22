import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Binding is one service binding (Kubernetes service-binding convention): a type and its entries. */
export interface Binding {
  readonly name: string;
  readonly type: string;
  readonly path: string;
}

/** bindingRoot is SERVICE_BINDING_ROOT, or `<platform>/bindings` as the platform spec defines. */
export function bindingRoot(env: NodeJS.ProcessEnv, platformDir: string): string {
  return env.SERVICE_BINDING_ROOT || join(platformDir, 'bindings');
}

/** bindingsOfType lists the bindings whose `type` file equals `type` (case-insensitive). */
export async function bindingsOfType(root: string, type: string): Promise<Binding[]> {
  let names: string[];
  try {
    names = (await readdir(root)).sort();
  } catch {
    return [];
  }
  const out: Binding[] = [];
  for (const name of names) {
    const path = join(root, name);
    let t: string;
    try {
      t = (await readFile(join(path, 'type'), 'utf8')).trim();
    } catch {
      continue;
    }
    if (t.toLowerCase() === type.toLowerCase()) out.push({ name, type: t, path });
  }
  return out;
}
