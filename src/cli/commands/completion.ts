import type { Command } from 'commander';
import { UsageError } from '../../internal/errors.ts';
import type { MutableContext } from '../context.ts';

// `kiln completion bash|zsh|fish` (pack's command): a completion script for the shell, generated
// from the commands and flags kiln registers, so it never lists a flag kiln lacks. zsh uses the
// bash function through bashcompinit, as pack's zsh script does for cobra's.

/** One command's words: its subcommands and its flags. */
interface Words {
  readonly path: string;
  readonly subcommands: readonly { name: string; description: string }[];
  readonly flags: readonly { long?: string; short?: string; description: string }[];
}

/** wordsOf walks the program: one entry per command path ('' is kiln itself). */
export function wordsOf(program: Command, prefix = ''): Words[] {
  const here: Words = {
    path: prefix,
    subcommands: program.commands.map((c) => ({ name: c.name(), description: c.description() })),
    flags: program.options.map((o) => ({
      ...(o.long ? { long: o.long } : {}),
      ...(o.short ? { short: o.short } : {}),
      description: o.description,
    })),
  };
  return [here, ...program.commands.flatMap((c) => wordsOf(c, prefix ? `${prefix} ${c.name()}` : c.name()))];
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** bashScript completes subcommands, then the flags of the deepest command named so far. */
export function bashScript(words: readonly Words[]): string {
  const cases = words
    .map((w) => {
      const list = [...w.subcommands.map((s) => s.name), ...w.flags.flatMap((f) => [f.long, f.short])]
        .filter(Boolean)
        .join(' ');
      return `    ${quote(w.path)}) opts=${quote(list)} ;;`;
    })
    .join('\n');
  const known = words.map((w) => w.path).filter(Boolean);
  return `# kiln completion for bash: source <(kiln completion bash)
_kiln() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" try w i
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    try="\${path:+$path }$w"
    case " ${known.map((k) => `|${k}|`).join(' ')} " in *"|$try|"*) path="$try" ;; esac
  done
  local opts=""
  case "$path" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _kiln kiln
`;
}

/** zshScript wraps the bash function with bashcompinit. */
export function zshScript(words: readonly Words[]): string {
  return `#compdef kiln
# kiln completion for zsh: source <(kiln completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashScript(words).replace(/^# kiln completion for bash.*\n/, '')}`;
}

/** fishScript declares every subcommand and flag with its description. */
export function fishScript(words: readonly Words[]): string {
  const lines = ['# kiln completion for fish: kiln completion fish | source', 'complete -c kiln -f'];
  for (const w of words) {
    const parts = w.path ? w.path.split(' ') : [];
    const cond =
      parts.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${parts[parts.length - 1]}${parts.length > 1 ? `; and __fish_seen_subcommand_from ${parts[0]}` : ''}`;
    for (const s of w.subcommands)
      lines.push(`complete -c kiln -n ${quote(cond)} -a ${quote(s.name)} -d ${quote(s.description)}`);
    for (const f of w.flags) {
      const names = [f.long ? `-l ${f.long.slice(2)}` : '', f.short ? `-s ${f.short.slice(1)}` : '']
        .filter(Boolean)
        .join(' ');
      lines.push(`complete -c kiln -n ${quote(cond)} ${names} -d ${quote(f.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** register adds `kiln completion`. */
export function register(program: Command, ctx: MutableContext): void {
  program
    .command('completion')
    .description('print a shell completion script: bash, zsh or fish')
    .argument('<shell>', 'bash, zsh or fish')
    .action(async (shell: string) => {
      const make = { bash: bashScript, zsh: zshScript, fish: fishScript }[shell];
      if (!make) throw new UsageError(`completion ${shell}: expected bash, zsh or fish`);
      // Every command, registered on a program of its own (main registers only the one run).
      const full = ctx.allCommands ? await ctx.allCommands() : program;
      ctx.stdout.write(make(wordsOf(full)));
    });
}
