/**
 * Text from images, builders, buildpacks and registries reaches the user's terminal in log lines
 * and `inspect` output. A hostile string could hold escape sequences that retitle the window,
 * write the clipboard (OSC 52), move the cursor to forge or hide lines, or bidi overrides that
 * reorder what is shown. terminalSafe shows such characters as visible `\xNN` / `\uNNNN` escapes.
 */

// C0 controls but tab and newline, DEL, C1 controls; bidi embeddings, overrides and isolates.
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;
// Select Graphic Rendition (colours, bold): the only sequence a buildpack's output may keep.
const SGR = /^\x1b\[[0-9;]{0,32}m/;

function visible(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/**
 * terminalSafe neutralises control characters in `s` (tab and newline are kept). With
 * `keepColour`, SGR sequences (`ESC [ … m`) stay, as buildpacks colour their output.
 */
export function terminalSafe(s: string, keepColour = false): string {
  return s.replace(UNSAFE, (c, offset: number) =>
    keepColour && c === '\x1b' && SGR.test(s.slice(offset, offset + 40)) ? c : visible(c),
  );
}
