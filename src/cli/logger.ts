import type { Writable } from 'node:stream';
import type { Logger as LoggerInterface } from '../internal/log.ts';
import { Redactor } from '../internal/redactor.ts';
import type { ProgressEvent, ProgressSink } from '../registry/progress.ts';
import { terminalSafe } from './terminal-text.ts';

/** Log levels, most verbose first. `quiet` shows warnings and errors only. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface LoggerOptions {
  /** Where lines go (the CLI uses stderr, so that stdout stays clean for data such as --json). */
  readonly out: Writable;
  /** Lowest level printed. */
  readonly level: Level;
  /** ANSI colours allowed (already false under NO_COLOR or --no-color). */
  readonly color: boolean;
  /** Redraw progress bars in place (a terminal, not CI); otherwise one plain line per finished blob. */
  readonly bars: boolean;
  /** The run's one redactor (default: a fresh one, which removes credential patterns only). */
  readonly redactor?: Redactor;
}

/**
 * Logger prints one line per step, `===> PHASE` headers for lifecycle phases, and transfer
 * progress. Every line passes through the run's redactor, so a credential that slipped into a
 * message is never printed.
 */
export class Logger implements LoggerInterface {
  readonly #o: LoggerOptions;
  #bars: BarRenderer | undefined;
  /** The redactor every line passes through; whoever learns a secret adds it here. */
  readonly redactor: Redactor;

  constructor(opts: LoggerOptions) {
    this.#o = opts;
    this.redactor = opts.redactor ?? new Redactor();
  }

  /** Whether a level would be printed (to skip building expensive debug messages). */
  enabled(level: Level): boolean {
    return ORDER[level] >= ORDER[this.#o.level];
  }

  // Messages carry untrusted text (ids, labels, buildpack output): neutralised before kiln paints.
  debug(msg: string): void {
    this.#line('debug', terminalSafe(msg, true));
  }
  info(msg: string): void {
    this.#line('info', terminalSafe(msg, true));
  }
  warn(msg: string): void {
    this.#line('warn', `${this.#paint('33', 'Warning:')} ${terminalSafe(msg, true)}`);
  }
  error(msg: string): void {
    this.#line('error', `${this.#paint('31', 'ERROR:')} ${terminalSafe(msg, true)}`);
  }

  /** phase prints a lifecycle phase header: `===> DETECTING`. */
  phase(name: string): void {
    this.#line('info', this.#paint('36', `===> ${name.toUpperCase()}`));
  }

  /**
   * progress returns a sink for one transfer (a push, a pull, a copy). On a terminal it draws a
   * bar per active blob; otherwise it prints one line per blob when it finishes. Call `end()`.
   */
  progress(): ProgressSink & { end(): void } {
    if (!this.enabled('info')) return Object.assign((_e: ProgressEvent) => {}, { end() {} });
    if (this.#o.bars) {
      const r = new BarRenderer(this.#o.out, this.#o.color);
      this.#bars = r;
      return Object.assign((e: ProgressEvent) => r.update(e), {
        end: () => {
          r.finish();
          if (this.#bars === r) this.#bars = undefined;
        },
      });
    }
    const seen = new Set<string>();
    return Object.assign(
      (e: ProgressEvent) => {
        if (e.state === 'running' || seen.has(e.id)) return;
        seen.add(e.id);
        this.info(describeFinished(e));
      },
      { end() {} },
    );
  }

  #paint(code: string, s: string): string {
    return this.#o.color ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  #line(level: Level, msg: string): void {
    if (!this.enabled(level)) return;
    const text = this.redactor.redact(msg);
    this.#bars?.clear();
    this.#o.out.write(text.endsWith('\n') ? text : text + '\n');
    this.#bars?.draw();
  }
}

function describeFinished(e: ProgressEvent): string {
  const what = e.label ? `${e.label} ${short(e.id)}` : short(e.id);
  switch (e.state) {
    case 'exists':
      return `${what}: already present`;
    case 'mounted':
      return `${what}: mounted`;
    default: {
      const verb = e.action === 'upload' ? 'pushed' : e.action === 'download' ? 'pulled' : 'copied';
      return `${what}: ${verb} ${formatBytes(e.total >= 0 ? e.total : e.done)}`;
    }
  }
}

/** short abbreviates a digest for display: `sha256:0123456789ab`. */
export function short(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? id.slice(0, 12) : id.slice(0, i + 13);
}

/** formatBytes prints a size with a binary unit: `12.3 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

// Draws one line per blob and redraws them in place, at most every 100 ms.
class BarRenderer {
  readonly #out: Writable;
  readonly #color: boolean;
  readonly #rows = new Map<string, ProgressEvent>();
  #drawn = 0;
  #last = 0;
  #timer: NodeJS.Timeout | undefined;
  #finished = false;

  constructor(out: Writable, color: boolean) {
    this.#out = out;
    this.#color = color;
  }

  update(e: ProgressEvent): void {
    if (this.#finished) return;
    this.#rows.set(e.id, e);
    const now = Date.now();
    if (e.state !== 'running' || now - this.#last >= 100) {
      this.#redraw();
    } else if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#redraw();
      }, 100);
      this.#timer.unref();
    }
  }

  clear(): void {
    if (this.#drawn > 0) this.#out.write(`\x1b[${this.#drawn}A\x1b[0J`);
    this.#drawn = 0;
  }

  draw(): void {
    const cols = Math.max(40, (this.#out as { columns?: number }).columns ?? 80);
    const lines: string[] = [];
    for (const e of this.#rows.values()) lines.push(this.#bar(e, cols));
    if (lines.length) this.#out.write(lines.join('\n') + '\n');
    this.#drawn = lines.length;
  }

  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#redraw();
    this.#drawn = 0;
  }

  #redraw(): void {
    this.#last = Date.now();
    this.clear();
    this.draw();
  }

  #bar(e: ProgressEvent, cols: number): string {
    const name = (e.label ? `${e.label} ` : '') + short(e.id);
    if (e.state !== 'running') {
      const tail = describeFinished(e).slice(describeFinished(e).indexOf(': ') + 2);
      return `${name.padEnd(30)} ${this.#color ? `\x1b[32m${tail}\x1b[0m` : tail}`;
    }
    const width = Math.max(10, Math.min(40, cols - 60));
    const frac = e.total > 0 ? Math.min(1, e.done / e.total) : 0;
    const fill = Math.round(frac * width);
    const bar = '='.repeat(fill) + (fill < width ? '>' : '') + ' '.repeat(Math.max(0, width - fill - 1));
    const size = e.total > 0 ? `${formatBytes(e.done)}/${formatBytes(e.total)}` : formatBytes(e.done);
    return `${name.padEnd(30)} [${bar}] ${size}`;
  }
}
