// WWW-Authenticate parsing (RFC 7235 §4.1): a list of challenges, each a scheme followed by
// auth-params `name=token` or `name="quoted string"`. Registries put commas inside quoted
// values (`scope="repository:a:pull,push"`), so splitting on commas is wrong.

/** One authentication challenge: a lowercase scheme and its parameters (lowercase names). */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;

/**
 * parseChallenges parses a WWW-Authenticate header value into challenges. Malformed trailing
 * input is ignored rather than thrown: a registry's odd header must not mask its status code.
 *
 * @example parseChallenges('Bearer realm="https://a/token",scope="repository:x:pull,push"')
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Array<{ scheme: string; params: Record<string, string> }> = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const token = (): string | undefined => {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(header);
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  while (i < n) {
    skipWs();
    while (i < n && header[i] === ',') {
      i++;
      skipWs();
    }
    const scheme = token();
    if (!scheme) break;
    const ch = { scheme: scheme.toLowerCase(), params: {} as Record<string, string> };
    out.push(ch);
    // params: name=value pairs separated by commas, until the next scheme (a token not followed by '=').
    for (;;) {
      skipWs();
      const save = i;
      const name = token();
      if (!name) break;
      skipWs();
      if (header[i] !== '=') {
        // a new challenge starts here (or token68, which registries do not use)
        i = save;
        break;
      }
      i++;
      skipWs();
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        // RFC 7235 wants a token here; servers also send bare URLs, so read up to , or space.
        while (i < n && header[i] !== ',' && header[i] !== ' ' && header[i] !== '\t') value += header[i++];
      }
      ch.params[name.toLowerCase()] = value;
      skipWs();
      if (header[i] === ',') i++;
      else break;
    }
  }
  return out;
}
