import { setFlagsFromString } from 'node:v8';

// Node's HTTP parser copies every response body chunk (up to 64 KiB) into an ArrayBuffer of its
// own, freed only when V8 collects the young generation. V8 paces those collections by JS-heap
// allocation, which a download hardly does, so a pull of 300 MB left 150-200 MB of dead chunks
// resident (peak RSS ~180 MB against skopeo's 22 MB) and 30-50 thousand page faults, and the
// process's system time (faults, and glibc returning and re-taking that memory) doubled on a
// loaded machine. Asking for a young-generation collection every few MiB received frees them
// while they are still few: such a collection only copies what is alive, a few KiB here.

type Gc = (o: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let gc: Gc | undefined | null;

// The `gc` function of a fresh context: V8 adds it to contexts made after --expose-gc is set. The
// flag changes nothing else (the main context gets no `gc` global).
function collector(): Gc | undefined {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      // node:vm is loaded only here (on the first paced collection, not at every start-up).
      const f = process.getBuiltinModule('node:vm').runInNewContext('gc') as unknown;
      gc = typeof f === 'function' ? (f as Gc) : null;
    } catch {
      gc = null; // a runtime without it only keeps the dead chunks longer
    }
  }
  return gc ?? undefined;
}

/**
 * youngGcPacer returns a function to call with the size of each chunk a transfer moves (received,
 * or read to be sent): every `everyBytes` bytes (all callers of one pacer together) it runs a
 * young-generation collection.
 */
export function youngGcPacer(everyBytes: number): (bytes: number) => void {
  let since = 0;
  return (bytes: number) => {
    since += bytes;
    if (since < everyBytes) return;
    since = 0;
    collector()?.({ type: 'minor' });
  };
}
