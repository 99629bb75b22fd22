import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { KilnError } from '../internal/errors.ts';

// The git a fleet needs: the commit a branch or tag points at (`git ls-remote`, no clone), and a
// checkout of exactly that commit to build from. URLs and refs come from the fleet file (validated
// there: nothing starts with "-", no ext:: transport) and are always passed after `--` or as
// values of options, never as options. Prompts are off: a missing credential is an error.

/** Git runs git with a fixed environment (the CLI passes its own plus GIT_TERMINAL_PROMPT=0). */
export class Git {
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #timeoutMs: number;

  constructor(opts: { env: Readonly<Record<string, string | undefined>>; timeoutMs?: number }) {
    this.#env = { ...opts.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', SSH_ASKPASS: 'true' };
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
  }

  #run(args: readonly string[], cwd?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        'git',
        ['-c', 'protocol.ext.allow=never', '-c', 'core.hooksPath=/dev/null', ...args],
        { env: this.#env, timeout: this.#timeoutMs, maxBuffer: 8 * 1024 * 1024, ...(cwd ? { cwd } : {}) },
        (err, stdout, stderr) => {
          if (err) {
            const why = String(stderr).trim().split('\n').at(-1) || err.message;
            reject(new KilnError(`git ${args[0]}: ${why}`, { cause: err }));
          } else resolve(String(stdout));
        },
      );
    });
  }

  /** lsRemote returns the commit `ref` (refs/heads/… or refs/tags/…) points at; undefined when absent. */
  async lsRemote(url: string, ref: string): Promise<string | undefined> {
    const out = await this.#run(['ls-remote', '--', url, ref, `${ref}^{}`]);
    let commit: string | undefined;
    for (const line of out.split('\n')) {
      const [sha, name] = line.split('\t');
      if (!sha || !/^[0-9a-f]{40,64}$/.test(sha)) continue;
      // An annotated tag: the peeled line (`^{}`) names the commit.
      if (name === `${ref}^{}`) return sha;
      if (name === ref) commit = sha;
    }
    return commit;
  }

  /** checkout fetches exactly `commit` from `url` into the new directory `dir` (no history, no hooks). */
  async checkout(url: string, commit: string, dir: string): Promise<void> {
    if (!/^[0-9a-f]{40,64}$/.test(commit))
      throw new KilnError(`git checkout: "${commit}" is not a commit id`);
    await mkdir(dir, { recursive: true });
    await this.#run(['init', '-q', '--', dir]);
    await this.#run(['fetch', '-q', '--depth', '1', '--', url, commit], dir);
    await this.#run(['-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', 'FETCH_HEAD'], dir);
  }
}
