/**
 * once memoizes an async computation: the first call starts it, later calls share its promise.
 * A rejected computation is forgotten so that a later call may retry (a transient read error
 * must not poison a long-lived value).
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    if (!p) {
      p = fn();
      p.catch(() => {
        p = undefined;
      });
    }
    return p;
  };
}
