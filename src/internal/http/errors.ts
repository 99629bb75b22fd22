/**
 * describeNetError turns a network failure's nested errors into one line
 * (`connect ECONNREFUSED 127.0.0.1:5000`, `socket hang up (ECONNRESET)`).
 */
export function describeNetError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur && typeof cur === 'object'; i++) {
    const o = cur as { message?: unknown; code?: unknown; cause?: unknown };
    const m = typeof o.message === 'string' ? o.message : '';
    const c = typeof o.code === 'string' ? o.code : '';
    const text = c && !m.includes(c) ? `${m} (${c})` : m;
    if (text && !parts.includes(text)) parts.push(text);
    cur = o.cause;
  }
  return parts.join(': ') || String(e);
}
