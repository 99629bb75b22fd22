import { KilnError } from '../internal/errors.ts';
import type { HttpResponse } from '../internal/http/client.ts';
import { isRetryableStatus } from '../internal/http/retry.ts';
import { redactPatterns } from '../internal/redactor.ts';

/** One entry of a registry's `{"errors":[…]}` body (distribution spec error codes). */
export interface RegistryErrorEntry {
  readonly code: string;
  readonly message: string;
}

/** How much of an error body is read: enough for any real error, bounded against hostile servers. */
export const ERROR_BODY_LIMIT = 64 * 1024;

/** RegistryUnreachableError is a registry kiln could not connect to at all (no HTTP answer). */
export class RegistryUnreachableError extends KilnError {
  readonly registry: string;
  /** Why, in words (connection refused, name not resolved, TLS failure, …). */
  readonly reason: string;
  constructor(registry: string, base: string, reason: string, cause: unknown) {
    super(`cannot reach registry ${registry} at ${base}: ${reason}`, { cause });
    this.name = 'RegistryUnreachableError';
    this.registry = registry;
    this.reason = reason;
  }
}

/**
 * RegistryError is a failed registry request: the action, the registry, the HTTP status and the
 * registry's own error codes. Its message never contains credentials or tokens.
 */
export class RegistryError extends KilnError {
  /** What kiln asked of the registry, with the repository (`push manifest to host/repo:tag`). */
  readonly operation: string;
  readonly status: number;
  readonly errors: readonly RegistryErrorEntry[];
  constructor(action: string, status: number, errors: readonly RegistryErrorEntry[], detail?: string) {
    const codes = errors.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join('; ');
    const why = codes || detail || statusText(status);
    super(redactPatterns(`${action}: ${status} ${why}`.replace(/\s+/g, ' ').trim()));
    this.name = 'RegistryError';
    this.operation = action;
    this.status = status;
    this.errors = errors;
  }

  /** Whether a retry could succeed (throttling, server trouble). */
  get temporary(): boolean {
    return isRetryableStatus(this.status);
  }

  /** Whether the registry named this code (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, …). */
  has(code: string): boolean {
    return this.errors.some((e) => e.code === code);
  }
}

export { isRetryableStatus };

/**
 * readErrorBody reads at most ERROR_BODY_LIMIT bytes of a failed response and parses
 * `{"errors":[{code,message}]}`; other bodies become a short detail string.
 */
export async function readErrorBody(
  res: HttpResponse,
): Promise<{ errors: RegistryErrorEntry[]; detail: string }> {
  const text = await readLimited(res, ERROR_BODY_LIMIT);
  try {
    const j = JSON.parse(text) as { errors?: unknown; details?: unknown };
    if (Array.isArray(j.errors)) {
      const errors = j.errors.flatMap((e: unknown) => {
        if (typeof e !== 'object' || e === null) return [];
        const o = e as { code?: unknown; message?: unknown };
        return [
          { code: String(o.code ?? 'UNKNOWN'), message: typeof o.message === 'string' ? o.message : '' },
        ];
      });
      return { errors, detail: '' };
    }
  } catch {
    // not JSON: fall through
  }
  const detail = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
  return { errors: [], detail };
}

/** readLimited reads a response body as UTF-8 text, stopping (and dropping the rest) after `limit` bytes. */
export async function readLimited(res: HttpResponse, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res.body) {
      chunks.push(c as Buffer);
      n += (c as Buffer).length;
      if (n >= limit) break;
    }
  } catch {
    // a broken error body still leaves the status to report
  } finally {
    await res.discard();
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

function statusText(status: number): string {
  switch (status) {
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      return 'not found';
    case 429:
      return 'too many requests';
    default:
      return status >= 500 ? 'server error' : 'unexpected response';
  }
}
