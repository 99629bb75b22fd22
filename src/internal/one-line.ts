/**
 * oneLine escapes control and line-separator characters in an error message: names, keys and
 * quoted input in it come from outside (a file, a registry, an archive), and a newline there must
 * not split the one-line error or forge a log line.
 */
export function oneLine(s: string): string {
  return s.replace(
    /[\u0000-\u001f\u007f\u0085\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
