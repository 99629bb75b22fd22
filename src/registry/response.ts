import { isRetryableStatus, RegistryError, readErrorBody } from './errors.ts';
import type { HttpResponse } from './http.ts';
import { RetryableStatus, retryAfter } from './retry.ts';

// Turning registry responses and network failures into retries or one-line errors; shared by
// RegistryClient (auth, ping) and RepositoryClient (manifests, blobs).

/**
 * expectStatus accepts `ok` statuses (draining the body), asks for a retry on temporary ones,
 * and throws a RegistryError otherwise. restartOn401: an upload whose token expired mid-way is
 * restarted (with a fresh token).
 */
export async function expectStatus(
  res: HttpResponse,
  ok: number[],
  action: string,
  restartOn401 = false,
): Promise<void> {
  if (ok.includes(res.status)) {
    await res.discard();
    return;
  }
  if (isRetryable(res.status) || (restartOn401 && res.status === 401))
    throw new RetryableStatus(res.status, retryAfter(res.headers.get('retry-after')), async () =>
      errorFrom(action, res),
    );
  throw await errorFrom(action, res);
}

/** isRetryable: 408, 429 and most 5xx are worth another attempt. */
export const isRetryable = isRetryableStatus;

/** errorFrom reads a failed response's body (bounded) into a RegistryError naming `action`. */
export async function errorFrom(action: string, res: HttpResponse): Promise<RegistryError> {
  const { errors, detail } = await readErrorBody(res);
  return new RegistryError(action, res.status, errors, detail);
}

/** retryReason describes why a step is retried, for debug lines. */
export function retryReason(e: unknown): string {
  if (e instanceof RetryableStatus) return `status ${e.status}`;
  return describeNetError(e);
}

/** describeNetError turns fetch's nested errors into one line (`ECONNRESET`, `other side closed`). */
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
