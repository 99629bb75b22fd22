import type { HttpResponse } from '../internal/http/client.ts';
import { describeNetError } from '../internal/http/errors.ts';
import { RetryableStatus, retryAfter } from '../internal/http/retry.ts';
import { isRetryableStatus, RegistryError, readErrorBody } from './errors.ts';

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

export { describeNetError };
