import { spawnSync } from 'node:child_process';

// glibc itself is on every run image; everything else a runtime links is copied with it.
const SYSTEM = /^(libc|libm|libpthread|libdl|librt|libutil|libresolv|ld-linux-x86-64)\.so/;

/**
 * sharedLibraries lists the libraries (outside glibc) that the given ELF files load, via the build
 * image's ldd: what a runtime taken from the build image must carry into its launch layer, because
 * the run image has only glibc and a few base libraries.
 */
export function sharedLibraries(files: readonly string[]): string[] {
  const out = new Set<string>();
  for (let i = 0; i < files.length; i += 64) {
    const res = spawnSync('ldd', files.slice(i, i + 64), { encoding: 'utf8' });
    for (const line of (res.stdout ?? '').split('\n')) {
      const m = /^\s*(\S+) => (\/\S+) \(/.exec(line);
      if (m && !SYSTEM.test(m[1]!)) out.add(m[2]!);
    }
  }
  return [...out].sort();
}
