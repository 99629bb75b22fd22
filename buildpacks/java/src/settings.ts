import { join } from 'node:path';
import { bindingRoot, bindingsOfType } from '../../_shared/bindings.ts';
import { exists, writeFileAtomic } from '../../_shared/fsutil.ts';
import { BuildpackFailure } from '../../_shared/main.ts';

// Where Maven downloads from. In order:
//  1. a binding of type `maven` holding `settings.xml` (Paketo's convention; `settings-security.xml`
//     beside it is passed too): mirrors, repositories and credentials live there and only there;
//  2. BP_MAVEN_REPOSITORY_URL: a mirror of every repository (`<mirrorOf>*</mirrorOf>`), without
//     credentials (https, or plain http to this machine);
//  3. neither: Maven's own default (Maven Central).
// The binding's settings file is read where it is mounted (it may hold credentials: never copied);
// the one made from BP_MAVEN_REPOSITORY_URL (a URL without credentials) goes to `scratchDir`.

/** MavenSettings is what the mvn command line gets, and a description for the log (no secrets). */
export interface MavenSettings {
  readonly args: readonly string[];
  readonly describe: string;
  /** The mirror of every repository when kiln made the settings (BP_MAVEN_REPOSITORY_URL). */
  readonly mirror?: string;
}

export async function mavenSettings(
  env: NodeJS.ProcessEnv,
  platformDir: string,
  scratchDir: string,
): Promise<MavenSettings> {
  const bindings = await bindingsOfType(bindingRoot(env, platformDir), 'maven');
  if (bindings.length > 1)
    throw new BuildpackFailure(
      `kiln/java: ${bindings.length} bindings of type maven (${bindings.map((b) => b.name).join(', ')}); give one`,
    );
  const binding = bindings[0];
  if (binding) {
    const settings = join(binding.path, 'settings.xml');
    if (!(await exists(settings)))
      throw new BuildpackFailure(`kiln/java: the maven binding ${binding.name} has no settings.xml entry`);
    const args = ['--settings', settings];
    const security = join(binding.path, 'settings-security.xml');
    if (await exists(security)) args.push(`-Dsettings.security=${security}`);
    return { args, describe: `settings.xml of the maven binding ${binding.name}` };
  }
  const url = env.BP_MAVEN_REPOSITORY_URL?.trim();
  if (url) {
    const checked = repositoryUrl(url);
    const file = join(scratchDir, 'kiln-mirror-settings.xml');
    await writeFileAtomic(file, mirrorSettings(checked));
    return {
      args: ['--settings', file],
      describe: `mirror ${checked} (BP_MAVEN_REPOSITORY_URL)`,
      mirror: checked,
    };
  }
  return {
    args: [],
    describe: "Maven's default repository (set BP_MAVEN_REPOSITORY_URL or a maven binding)",
  };
}

/** repositoryUrl checks BP_MAVEN_REPOSITORY_URL: https (or http to loopback), no credentials. */
export function repositoryUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BuildpackFailure(`kiln/java: BP_MAVEN_REPOSITORY_URL "${raw}" is not a URL`);
  }
  if (url.username || url.password)
    throw new BuildpackFailure(
      'kiln/java: BP_MAVEN_REPOSITORY_URL must not carry credentials: put them in the settings.xml of a maven binding',
    );
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local))
    throw new BuildpackFailure(
      `kiln/java: BP_MAVEN_REPOSITORY_URL must be an https URL (plain http only to 127.0.0.1), not ${url.protocol}//${url.host}`,
    );
  return url.href;
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function mirrorSettings(url: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by kiln/java from BP_MAVEN_REPOSITORY_URL -->
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
  <mirrors>
    <mirror>
      <id>kiln-mirror</id>
      <mirrorOf>*</mirrorOf>
      <url>${xmlText(url)}</url>
    </mirror>
  </mirrors>
</settings>
`;
}
