import { UsageError } from '../internal/errors.ts';

// pack's `--workspace`: where the app sits in the build sandbox and in the image (its working
// dir and CNB_APP_DIR). The app directory is mounted there over the build image and exported as
// the app layer there, so it may not replace or sit inside a directory the platform mounts itself
// or the system lives in: the app layer would overwrite the run image's files, and the sandbox
// mount would hide the build image's.

/** The spec's default place of the app. */
export const DEFAULT_WORKSPACE = '/workspace';

/** Trees the app may be neither in nor over. */
const RESERVED_TREES = [
  '/cnb',
  '/layers',
  '/platform',
  '/proc',
  '/sys',
  '/dev',
  '/etc',
  '/usr',
  '/tmp',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/boot',
  '/run',
  '/root',
  '/var/run',
  '/var/tmp',
  '/var/lib',
];
/** Directories the app may sit below but not be (it would hide everything else in them). */
const RESERVED_EXACT = ['/', '/home', '/var', '/opt', '/srv', '/mnt', '/media'];

/**
 * checkWorkspace returns `--workspace`'s value when it is a usable place for the app: absolute,
 * already normalised (no `.`, `..`, `//` or trailing `/`), printable, and clear of the reserved
 * directories above. Anything else is a UsageError naming the value and what was expected.
 */
export function checkWorkspace(value: string): string {
  const bad = (why: string): never => {
    throw new UsageError(`--workspace ${JSON.stringify(value)}: ${why}`);
  };
  if (!value.startsWith('/')) bad('expected an absolute path such as /workspace or /srv/app');
  if (/[\0-\x1f\x7f]/.test(value)) bad('control characters are not allowed in the path');
  if (value.length > 255) bad('the path is longer than 255 characters');
  const parts = value.split('/').slice(1);
  if (value !== '/' && parts.some((p) => p === '' || p === '.' || p === '..'))
    bad('expected a normalised path (no ".", "..", "//" or trailing "/")');
  if (RESERVED_EXACT.includes(value)) bad(`${value} holds more than the app: use a directory below it`);
  for (const t of RESERVED_TREES)
    if (value === t || value.startsWith(`${t}/`))
      bad(`the app may not be placed in ${t} (the platform or the system uses it)`);
  return value;
}
