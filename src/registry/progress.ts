/**
 * Progress of one blob transfer, reported by pushes, pulls and copies into a ProgressSink.
 * Sinks must be cheap: they are called for every chunk.
 */
export interface ProgressEvent {
  /** The blob's digest (stable id for one transfer). */
  readonly id: string;
  /** What happens to the blob. */
  readonly action: 'upload' | 'download' | 'copy';
  /**
   * `running` while bytes move; `done` when written; `exists` when the destination already had
   * it (nothing moved); `mounted` when a registry linked it from another repository.
   */
  readonly state: 'running' | 'done' | 'exists' | 'mounted';
  /** Bytes transferred so far. */
  readonly done: number;
  /** Total bytes, or -1 when unknown. */
  readonly total: number;
  /** Short human name (for example "layer 2/5" or "config"). */
  readonly label?: string;
}

/** ProgressSink receives progress events; the CLI renders them, libraries only emit. */
export type ProgressSink = (e: ProgressEvent) => void;

/** A sink that ignores everything, for callers that do not watch progress. */
export const noProgress: ProgressSink = () => {};
