import { join } from 'node:path';
import { exists, readTextIfExists } from '../../_shared/fsutil.ts';

/** MARKERS are the files that make an app a Python app. */
export const MARKERS = [
  'requirements.txt',
  'pyproject.toml',
  'setup.py',
  'Pipfile',
  'runtime.txt',
  '.python-version',
];

/** ENTRY_FILES are the conventional entry points used for the web process without a Procfile. */
export const ENTRY_FILES = ['app.py', 'main.py', 'server.py'];

/** isPythonApp is true when one of the marker files exists. */
export async function isPythonApp(appDir: string): Promise<boolean> {
  for (const m of MARKERS) if (await exists(join(appDir, m))) return true;
  return false;
}

/** requirements returns the non-comment lines of requirements.txt (empty when absent). */
export async function requirements(appDir: string): Promise<string[]> {
  const text = (await readTextIfExists(join(appDir, 'requirements.txt'))) ?? '';
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

/** entryFile is the first conventional entry point present, if any. */
export async function entryFile(appDir: string): Promise<string | undefined> {
  for (const f of ENTRY_FILES) if (await exists(join(appDir, f))) return f;
  return undefined;
}
