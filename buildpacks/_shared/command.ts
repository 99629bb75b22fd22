/**
 * splitCommand turns a command line into argv the way a POSIX shell would for simple commands
 * (whitespace separation, single quotes, double quotes, backslash escapes), so a process can run
 * without a shell: kiln's run image has none. It returns undefined when the line uses shell syntax
 * (pipes, redirects, `&&`, `;`, variables, globs, subshells, `VAR=value` prefixes) that only a
 * shell can honour.
 */
export function splitCommand(line: string): string[] | undefined {
  const argv: string[] = [];
  let current = '';
  let inWord = false;
  let i = 0;
  const text = line.trim();
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t') {
      if (inWord) argv.push(current);
      current = '';
      inWord = false;
      i++;
      continue;
    }
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) return undefined;
      current += text.slice(i + 1, end);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      let value = '';
      for (; j < text.length && text[j] !== '"'; j++) {
        const d = text[j]!;
        if (d === '$' || d === '`') return undefined;
        if (d === '\\' && j + 1 < text.length && '"\\$`'.includes(text[j + 1]!)) {
          value += text[++j];
          continue;
        }
        value += d;
      }
      if (j >= text.length) return undefined;
      current += value;
      inWord = true;
      i = j + 1;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= text.length) return undefined;
      current += text[i + 1];
      inWord = true;
      i += 2;
      continue;
    }
    if ('|&;<>()$`*?[]{}~#\n'.includes(c)) {
      // `#` only starts a comment at the start of a word; inside a word it is literal.
      if (c === '#' && inWord) {
        current += c;
        i++;
        continue;
      }
      return undefined;
    }
    if (c === '=' && !inWord) return undefined;
    if (c === '=' && argv.length === 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(current)) return undefined;
    current += c;
    inWord = true;
    i++;
  }
  if (inWord) argv.push(current);
  return argv.length > 0 ? argv : undefined;
}
