import { KilnError } from '../internal/errors.ts';

/** BuildpackApiError is a buildpack declaring an API kiln does not support (platform spec: 12). */
export class BuildpackApiError extends KilnError {
  /** The API as declared. */
  readonly api: string;
  constructor(message: string, api: string) {
    super(message);
    this.name = 'BuildpackApiError';
    this.api = api;
  }
}

/** PlatformApiError is a platform API kiln does not support (platform spec: 11). */
export class PlatformApiError extends KilnError {
  /** The API as asked for. */
  readonly api: string;
  constructor(message: string, api: string) {
    super(message);
    this.name = 'PlatformApiError';
    this.api = api;
  }
}

/**
 * ApiVersion is a CNB API version `<major>.<minor>` (a bare `<major>` means `.0`). Behaviour that
 * changed between versions branches on `atLeast('0.12')`-style checks, never on string compares.
 */
export class ApiVersion {
  readonly major: number;
  readonly minor: number;

  constructor(major: number, minor: number) {
    this.major = major;
    this.minor = minor;
  }

  /** parse reads "0.12" or "1"; anything else throws a TypeError naming the text. */
  static parse(text: string): ApiVersion {
    const m = /^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?$/.exec(text.trim());
    if (!m) throw new TypeError(`invalid API version "${text}": expected <major>.<minor>`);
    return new ApiVersion(Number(m[1]), Number(m[2] ?? 0));
  }

  /** compare orders versions: negative when this < other. */
  compare(other: ApiVersion | string): number {
    const o = typeof other === 'string' ? ApiVersion.parse(other) : other;
    return this.major !== o.major ? this.major - o.major : this.minor - o.minor;
  }

  atLeast(other: ApiVersion | string): boolean {
    return this.compare(other) >= 0;
  }

  lessThan(other: ApiVersion | string): boolean {
    return this.compare(other) < 0;
  }

  equals(other: ApiVersion | string): boolean {
    return this.compare(other) === 0;
  }

  toString(): string {
    return `${this.major}.${this.minor}`;
  }
}

/** Buildpack APIs kiln runs buildpacks for (the reference lifecycle supports the same range). */
export const SUPPORTED_BUILDPACK_APIS: readonly string[] = ['0.7', '0.8', '0.9', '0.10', '0.11', '0.12'];

/** Platform APIs kiln implements; 0.15 is current, older ones are accepted for reading files. */
export const SUPPORTED_PLATFORM_APIS: readonly string[] = ['0.12', '0.13', '0.14', '0.15'];

/** The Platform API kiln speaks when it writes files and image metadata. */
export const PLATFORM_API = ApiVersion.parse('0.15');

/**
 * buildpackApi parses a buildpack's declared `api` and rejects unsupported ones with exit 12.
 * `where` names the buildpack (e.g. its descriptor path) for the message.
 */
export function buildpackApi(text: string, where: string): ApiVersion {
  let v: ApiVersion;
  try {
    v = ApiVersion.parse(text);
  } catch {
    throw new BuildpackApiError(`${where}: invalid buildpack API "${text}"`, text);
  }
  if (!SUPPORTED_BUILDPACK_APIS.some((s) => v.equals(s))) {
    throw new BuildpackApiError(
      `${where}: buildpack API ${v} is not supported (supported: ${SUPPORTED_BUILDPACK_APIS.join(', ')})`,
      text,
    );
  }
  return v;
}

/** platformApi parses a Platform API and rejects unsupported ones with exit 11. */
export function platformApi(text: string): ApiVersion {
  let v: ApiVersion;
  try {
    v = ApiVersion.parse(text);
  } catch {
    throw new PlatformApiError(`invalid platform API "${text}"`, text);
  }
  if (!SUPPORTED_PLATFORM_APIS.some((s) => v.equals(s))) {
    throw new PlatformApiError(
      `platform API ${v} is not supported (supported: ${SUPPORTED_PLATFORM_APIS.join(', ')})`,
      text,
    );
  }
  return v;
}
