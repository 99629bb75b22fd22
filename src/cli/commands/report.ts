import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { Command } from 'commander';
import { SUPPORTED_BUILDPACK_APIS, SUPPORTED_PLATFORM_APIS } from '../../cnb/api.ts';
import { type CliContext, KILN_VERSION } from '../context.ts';
import { terminalSafe } from '../terminal-text.ts';

// `kiln report` (pack's command): what a bug report needs — kiln's version, the platform, the
// APIs it speaks, where its files are, the sandbox tools found, the daemon it would use and the
// config file. Secrets never appear: CNB_REGISTRY_AUTH is reported as the registries it names,
// DOCKER_HOST's user info is dropped, and config values whose key looks secret are masked.

const SECRET_KEY = /pass|secret|token|auth|key|credential/i;

/** maskConfig masks the value of every `key = value` line whose key looks like a secret. */
export function maskConfig(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const m = /^(\s*([A-Za-z0-9_.-]+|"[^"]*")\s*=\s*)(.*)$/.exec(line);
      return m && SECRET_KEY.test(m[2]!)
        ? `${m[1]}"[redacted]"`
        : line.replace(/\/\/[^/@\s]*:[^/@\s]*@/g, '//[redacted]@');
    })
    .join('\n');
}

/** registriesOf names the registries of a CNB_REGISTRY_AUTH value (never its header values). */
function registriesOf(json: string | undefined): string {
  if (json === undefined) return 'not set';
  try {
    const o = JSON.parse(json) as unknown;
    if (typeof o === 'object' && o !== null && !Array.isArray(o))
      return `set for ${Object.keys(o).join(', ') || 'no registry'}`;
  } catch {
    // fall through
  }
  return 'set (not a JSON object)';
}

/** register adds `kiln report`. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('report')
    .description('print versions, platform and configuration for a bug report (no secrets)')
    .option(
      '-e, --explicit',
      'print the config file as written, not only that it exists (secrets still masked)',
    )
    .action(async (opts: { explicit?: boolean }) => {
      const s = ctx.settings;
      const tools = ['bwrap', 'slirp4netns', 'podman', 'skopeo'].map((t) => {
        const dir = (s.env.PATH ?? '').split(':').find((d) => d && existsSync(`${d}/${t}`));
        return `    ${t}: ${dir ? `${dir}/${t}` : 'not found'}`;
      });
      const daemon = s.daemonHost
        ? `DOCKER_HOST ${s.daemonHost.replace(/\/\/[^/@]*@/, '//')}`
        : (s.daemonSockets.find((p) => existsSync(p)) ?? `none (looked at ${s.daemonSockets.join(', ')})`);
      const config = await readFile(s.configFile, 'utf8').catch(() => undefined);
      const lines = [
        'Kiln:',
        `  Version:  ${KILN_VERSION}`,
        `  Node.js:  ${process.version}`,
        `  OS/Arch:  ${os.platform()}/${os.arch()} (${os.release()})`,
        '',
        `Supported Platform APIs:  ${SUPPORTED_PLATFORM_APIS.join(', ')}`,
        `Supported Buildpack APIs: ${SUPPORTED_BUILDPACK_APIS.join(', ')}`,
        '',
        'Directories:',
        `  Data (image store): ${s.dataDir}`,
        `  Cache:              ${s.cacheDir}`,
        `  Config file:        ${s.configFile}${config === undefined ? ' (absent)' : ''}`,
        '',
        'Tools:',
        ...tools,
        '',
        `Daemon:  ${daemon}`,
        `Registry credentials: docker config in ${s.dockerConfigDir}; CNB_REGISTRY_AUTH ${registriesOf(s.registryAuth)}`,
        '',
        'Config:',
        config === undefined
          ? '  (none)'
          : opts.explicit
            ? maskConfig(config).trimEnd().replace(/^/gm, '  ')
            : `  ${config.split('\n').filter((l) => /^\s*[A-Za-z"]/.test(l)).length} settings (--explicit prints them, secrets masked)`,
      ];
      ctx.stdout.write(terminalSafe(`${lines.join('\n')}\n`));
    });
}
