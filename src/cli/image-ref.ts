import { type KilnConfig, loadConfigSync, mirrorFor } from '../config/config-file.ts';
import { DaemonClient } from '../daemon/client.ts';
import type { Platform } from '../oci/schema.ts';
import { RegistryClient } from '../registry/client.ts';
import { dockerConfigKeychain, registryAuthKeychain } from '../registry/credentials.ts';
import type { ProgressSink } from '../registry/progress.ts';
import { ImageStore } from '../store/store.ts';
import { Transports } from '../transport/transports.ts';
import { httpClient } from './http-client.ts';
import type { Logger } from './logger.ts';
import type { Settings } from './settings.ts';

// The CLI's image collaborators, built once per command from the settings: the registry client
// and the Transports that turn image arguments into targets (src/transport/ owns the syntax).

/**
 * registryClient builds the registry client the CLI uses: docker config credentials, insecure
 * hosts from --insecure-registry and the kiln config file (`config`, read from the settings'
 * file when not given).
 */
export function registryClient(
  settings: Settings,
  log: Logger,
  config: KilnConfig = loadConfigSync(settings.configFile),
): RegistryClient {
  // CNB_REGISTRY_AUTH first (the platform spec's CI credentials), then the docker config.
  const dockerConfig = dockerConfigKeychain({ dir: settings.dockerConfigDir, env: settings.env });
  return new RegistryClient({
    keychain: settings.registryAuth
      ? registryAuthKeychain(settings.registryAuth, dockerConfig)
      : dockerConfig,
    insecure: [...settings.insecureRegistries, ...config.insecureRegistries],
    http: httpClient(settings, config, log.redactor),
    debug: (m) => log.debug(m),
    redactor: log.redactor,
  });
}

/**
 * imageTransports builds a command's Transports: the registry client, kiln's local store (opened
 * at most once, when first needed), registry mirrors from the kiln config file.
 */
export function imageTransports(
  settings: Settings,
  log: Logger,
  extra: { platform?: Platform; progress?: ProgressSink; preferDaemon?: boolean } = {},
): Transports {
  const config = loadConfigSync(settings.configFile);
  return new Transports({
    client: registryClient(settings, log, config),
    // Found only when a `docker-daemon:` image or --daemon asks for it.
    daemon: new DaemonClient({
      ...(settings.daemonHost ? { host: settings.daemonHost } : {}),
      sockets: settings.daemonSockets,
      debug: (m) => log.debug(m),
    }),
    storeDir: ImageStore.defaultDir(settings.dataDir),
    ...(config.registryMirrors.length ? { mirrorFor: (r: string) => mirrorFor(config, r) } : {}),
    debug: (m) => log.debug(m),
    ...extra,
  });
}
