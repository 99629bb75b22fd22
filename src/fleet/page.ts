import { keys } from './reconcile.ts';
import type { ImageState, Job, Observation } from './state.ts';

// The read-only web page of `kiln fleet serve`, rendered on the server (no script): the fleet
// table and one page per image with its history. Every value is escaped: image names, errors and
// logs come from files, registries and buildpacks.

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE =
  'body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}code{font-size:12px}.failed{color:#b00}.succeeded{color:#070}pre{background:#f6f6f6;padding:1em;overflow:auto}';

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

function short(d: string | undefined): string {
  return d === undefined ? '–' : esc(d.replace(/^sha256:/, '').slice(0, 12));
}

function ago(ms: number | undefined, now: number): string {
  if (ms === undefined) return '–';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120
    ? `${s}s`
    : s < 7200
      ? `${Math.round(s / 60)}m`
      : s < 172800
        ? `${Math.round(s / 3600)}h`
        : `${Math.round(s / 86400)}d`;
}

/** One image's status row, shared by the page and `kiln fleet status`. */
export interface StatusRow {
  readonly name: string;
  readonly tag: string;
  readonly managed: boolean;
  readonly digest?: string;
  readonly runImage?: string;
  readonly runImageNewest?: boolean;
  readonly lastReasons?: readonly string[];
  readonly lastResult?: string;
  readonly lastError?: string;
  readonly lastBuild?: number;
  /** ms since the run image under the image was first seen (the OS patch level's age). */
  readonly patchAgeMs?: number;
  readonly pending?: boolean;
}

/** statusRows derives the status table from the state. */
export function statusRows(
  images: readonly ImageState[],
  obs: ReadonlyMap<string, Observation>,
  now: number,
): StatusRow[] {
  return images.map((i) => {
    const seen = i.decl.watchedRunImage ? obs.get(keys.run(i.decl.watchedRunImage)) : undefined;
    const run = seen?.value ? seen : undefined;
    const on = i.inputs?.runImage;
    return {
      name: i.name,
      tag: i.decl.tag,
      managed: i.managed,
      ...(i.digest ? { digest: i.digest } : {}),
      ...(on ? { runImage: on } : {}),
      ...(on && run ? { runImageNewest: on === run.value } : {}),
      ...(i.last
        ? {
            lastReasons: i.last.reasons,
            // A failed job waiting for its next attempt.
            lastResult: i.last.state === 'queued' ? 'retrying' : i.last.state,
            ...(i.last.finished !== undefined ? { lastBuild: i.last.finished } : {}),
          }
        : {}),
      ...(i.last?.error ? { lastError: i.last.error } : {}),
      // The patch level's age: since the newest run image appeared when the image is on it,
      // else since the image's base was replaced by a newer one (it is behind).
      ...(on && run ? { patchAgeMs: on === run.value ? now - run.since : now - (i.updated ?? now) } : {}),
    };
  });
}

export function fleetPage(
  rows: readonly StatusRow[],
  queue: { queued: number; running: number },
  now: number,
  q: string,
): string {
  const tr = rows
    .filter((r) => r.managed)
    .map(
      (r) =>
        `<tr data-image="${esc(r.name)}"><td><a href="/images/${encodeURIComponent(r.name)}${q}">${esc(r.name)}</a></td><td><code>${esc(r.tag)}</code></td>` +
        `<td><code class="digest">${short(r.digest)}</code></td><td><code class="run-image">${short(r.runImage)}</code>${r.runImageNewest === false ? ' (behind)' : r.runImageNewest ? ' (newest)' : ''}</td>` +
        `<td class="reason">${esc((r.lastReasons ?? []).join(','))}</td><td class="${esc(r.lastResult ?? '')}">${esc(r.lastResult ?? '–')}</td>` +
        `<td>${ago(r.lastBuild, now)}</td><td>${r.patchAgeMs === undefined ? '–' : ago(now - r.patchAgeMs, now)}</td></tr>`,
    )
    .join('');
  return page(
    'kiln fleet',
    `<h1>kiln fleet</h1><p id="queue">${queue.queued} queued, ${queue.running} running</p>` +
      `<table id="fleet"><thead><tr><th>image</th><th>tag</th><th>digest</th><th>run image</th><th>last reason</th><th>result</th><th>last build</th><th>OS patch age</th></tr></thead><tbody>${tr}</tbody></table>`,
  );
}

export function imagePage(
  row: StatusRow,
  history: readonly Job[],
  sbom: readonly string[],
  now: number,
  q: string,
): string {
  const hist = history
    .map(
      (j) =>
        `<tr><td><a href="/builds/${j.id}${q}">${j.id}</a></td><td>${esc(j.kind)}</td><td class="reason">${esc(j.reasons.join(','))}</td><td class="${esc(j.state)}">${esc(j.state)}</td>` +
        `<td>${ago(j.finished ?? j.started ?? j.created, now)}</td><td>${j.started && j.finished ? ((j.finished - j.started) / 1000).toFixed(1) + ' s' : '–'}</td>` +
        `<td><code>${short(j.digest)}</code></td><td>${esc(j.error ?? '')}</td></tr>`,
    )
    .join('');
  return page(
    `kiln fleet: ${row.name}`,
    `<p><a href="/${q}">fleet</a></p><h1>${esc(row.name)}</h1><p><code>${esc(row.tag)}</code> <code class="digest">${esc(row.digest ?? '–')}</code></p>` +
      `<p>run image <code class="run-image">${esc(row.runImage ?? '–')}</code>${row.runImageNewest === false ? ' (behind)' : ''}</p>` +
      `<h2>Software</h2><ul id="sbom">${sbom.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>` +
      `<h2>History</h2><table id="history"><thead><tr><th>build</th><th>kind</th><th>reason</th><th>result</th><th>when</th><th>took</th><th>digest</th><th>error</th></tr></thead><tbody>${hist}</tbody></table>`,
  );
}

export function logPage(job: Job & { log: string }, q: string): string {
  return page(
    `kiln fleet: build ${job.id}`,
    `<p><a href="/images/${encodeURIComponent(job.image)}${q}">${esc(job.image)}</a></p><h1>build ${job.id} (${esc(job.state)})</h1><pre>${esc(job.log)}</pre>`,
  );
}
