import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BUILDPACK_ID_PATTERN } from '../cnb/ids.ts';
import { toTomlText } from '../cnb/toml-file.ts';
import { UsageError } from '../internal/errors.ts';
import type { GroupEntry } from './project-descriptor.ts';

/**
 * writeInlineBuildpack turns a project.toml group entry with a `script` into a buildpack
 * directory at `dir` (created), as pack does: buildpack.toml with the script's API, the entry's id
 * and version (default "0.0.0"), `bin/detect` that always passes and `bin/build` that runs the
 * inline script under its shell. Returns `dir`.
 */
export async function writeInlineBuildpack(entry: GroupEntry, dir: string): Promise<string> {
  const script = entry.script;
  if (!script || !entry.id) throw new TypeError('writeInlineBuildpack: entry has no script or no id');
  if (!BUILDPACK_ID_PATTERN.test(entry.id))
    throw new UsageError(
      `inline buildpack id "${entry.id}": may only contain letters, digits, ".", "/" and "-"`,
    );
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  const toml = toTomlText({
    api: script.api,
    buildpack: { id: entry.id, version: entry.version ?? '0.0.0' },
  });
  await writeFile(path.join(dir, 'buildpack.toml'), toml, { mode: 0o644 });
  const write = async (name: string, body: string) => {
    const p = path.join(dir, 'bin', name);
    await writeFile(p, body);
    await chmod(p, 0o755);
  };
  await write('detect', `#!${script.shell}\n\nexit 0\n`);
  await write('build', `#!${script.shell}\n\n${script.inline}\n`);
  return dir;
}
