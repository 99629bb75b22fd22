import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../_shared/fsutil.ts';

// Debian's Ruby scripts (`bundle`, `gem`, `irb`, ...) start with `#!/usr/bin/ruby`, gem
// executables installed by bundler with `#!/usr/bin/env ruby` or a build-time ruby path; the run
// image has no /usr/bin/ruby and no /usr/bin/env (and no shell). Their `#!` lines are rewritten to
// the ruby layer's interpreter, absolute, so a Procfile's `bundle exec puma` or a bare `rackup`
// starts as the kernel runs it. Only regular files directly in the given bin dirs are touched
// (links are not followed); the rewrite is idempotent, so it runs on every build.

/** Scripts larger than this are left alone (bin stubs are a few hundred bytes). */
const MAX_SCRIPT = 1024 * 1024;
const RUBY = /^ruby(\d+(\.\d+)*)?$/;

/**
 * rubyShebang returns the `#!` line that runs `interpreter` instead of the Ruby `line` names
 * (`#!/usr/bin/ruby`, `#!/usr/bin/ruby3.1 -w`, `#!/usr/bin/env ruby`, ...), or undefined when the
 * line does not start Ruby or already names `interpreter`.
 */
export function rubyShebang(line: string, interpreter: string): string | undefined {
  const m = /^#!\s*(\S+)(?:[ \t]+(.*?))?\s*$/.exec(line);
  if (!m) return undefined;
  let [, program, rest = ''] = m;
  if (/(^|\/)env$/.test(program!)) {
    const [target = '', ...args] = rest.split(/[ \t]+/);
    if (!RUBY.test(target)) return undefined;
    rest = args.join(' ');
  } else if (!RUBY.test(program!.slice(program!.lastIndexOf('/') + 1))) return undefined;
  const out = `#!${interpreter}${rest ? ` ${rest}` : ''}`;
  return out === line ? undefined : out;
}

/** rewriteRubyShebangs points the Ruby scripts of `dirs` at `interpreter`; returns how many changed. */
export async function rewriteRubyShebangs(dirs: readonly string[], interpreter: string): Promise<number> {
  let changed = 0;
  for (const dir of dirs) {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isFile() && (await rewriteOne(join(dir, e.name), interpreter))) changed++;
    }
  }
  return changed;
}

async function rewriteOne(file: string, interpreter: string): Promise<boolean> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return false;
  let data: Buffer;
  let mode: number;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_SCRIPT) return false;
    mode = st.mode & 0o7777;
    const head = Buffer.alloc(2);
    await fh.read(head, 0, 2, 0);
    if (head.toString('latin1') !== '#!') return false;
    data = await fh.readFile();
  } finally {
    await fh.close();
  }
  const nl = data.indexOf(0x0a);
  const first = data.subarray(0, nl < 0 ? data.length : nl).toString('utf8');
  const line = rubyShebang(first, interpreter);
  if (line === undefined) return false;
  const rest = nl < 0 ? Buffer.from('\n') : data.subarray(nl);
  await writeFileAtomic(file, Buffer.concat([Buffer.from(line), rest]), mode);
  return true;
}
