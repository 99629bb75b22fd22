// Retries of idempotent requests: bounded attempts, exponential backoff with jitter, a server's
// Retry-After honoured up to the cap. Shared by every caller of the HTTP client.

/** Retry policy: bounded attempts with exponential, jittered backoff. */
export interface RetryPolicy {
  /** Total attempts including the first (default 4). */
  readonly attempts: number;
  /** Delay before the first retry in ms (default 250); doubles each time, ±50% jitter. */
  readonly baseDelayMs: number;
  /** Longest single delay in ms, also the cap on a server's Retry-After (default 10 000). */
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 250, maxDelayMs: 10_000 };

/**
 * isTransient tells whether an error is worth retrying: an error that says it is `temporary` (a
 * registry's 429 or 5xx), or a network failure (connection reset or refused, socket closed
 * mid-body, timeout).
 */
export function isTransient(e: unknown): boolean {
  if (typeof e === 'object' && e !== null && (e as { retriesExhausted?: boolean }).retriesExhausted)
    return false;
  const temporary = (e as { temporary?: unknown } | null)?.temporary;
  if (typeof temporary === 'boolean') return temporary;
  if (e instanceof RetryableStatus) return true;
  const codes = new Set<string>();
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur && typeof cur === 'object'; i++) {
    const o = cur as { code?: unknown; name?: unknown; cause?: unknown; message?: unknown };
    if (typeof o.code === 'string') codes.add(o.code);
    if (o.name === 'TimeoutError') return true;
    if (typeof o.message === 'string' && /^(fetch failed|terminated|other side closed)$/.test(o.message))
      codes.add('FETCH');
    cur = o.cause;
  }
  for (const c of codes) {
    if (
      c === 'ECONNRESET' ||
      c === 'ECONNREFUSED' ||
      c === 'EPIPE' ||
      c === 'ETIMEDOUT' ||
      c === 'EAI_AGAIN' ||
      c === 'FETCH' ||
      c.startsWith('UND_ERR_')
    )
      return true;
  }
  return false;
}

/** isRetryableStatus: 408, 429 and 5xx other than 501/505 are worth another try. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** RetryableStatus is thrown inside a retried step to ask for another attempt after a status. */
export class RetryableStatus extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  readonly final: () => Promise<Error>;
  constructor(status: number, retryAfterMs: number | undefined, final: () => Promise<Error>) {
    super(`status ${status}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.final = final;
  }
}

/** retryAfter parses a Retry-After header (seconds or HTTP date) into ms. */
export function retryAfter(h: string | null): number | undefined {
  if (!h) return undefined;
  if (/^\d+$/.test(h)) return Number(h) * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/**
 * withRetry runs `step` until it succeeds, fails with a non-transient error, or runs out of
 * attempts. Only pass steps that are safe to repeat (idempotent requests, restartable uploads).
 * `onRetry` hears about each retry (for debug logs).
 */
export async function withRetry<T>(
  step: (attempt: number) => Promise<T>,
  policy: RetryPolicy = DEFAULT_RETRY,
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step(attempt);
    } catch (e) {
      if (attempt >= policy.attempts || !isTransient(e)) {
        const out = e instanceof RetryableStatus ? await e.final() : e;
        // An outer retry loop must not multiply the attempts an inner one already spent.
        if (attempt > 1 && typeof out === 'object' && out !== null)
          (out as { retriesExhausted?: boolean }).retriesExhausted = true;
        throw out;
      }
      const exp = policy.baseDelayMs * 2 ** (attempt - 1);
      let delay = Math.min(policy.maxDelayMs, exp * (0.5 + Math.random()));
      if (e instanceof RetryableStatus && e.retryAfterMs !== undefined)
        delay = Math.min(policy.maxDelayMs, Math.max(delay, e.retryAfterMs));
      onRetry?.(e, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
