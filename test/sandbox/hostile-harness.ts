// Shared pieces of the hostile-buildpack and hostile-sandbox tests: a loopback listener that
// counts connections (nothing in the sandbox may reach it) and a setuid-root euid probe.
import { execFile } from 'node:child_process';
import { chmod, chown, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** listenLoopback starts a TCP server on 127.0.0.1 (random port) that calls `onConnection` and hangs up. */
export async function listenLoopback(
  onConnection: () => void,
): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    onConnection();
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * plantSetuidEuidProbe compiles (from C source written to `src`) a static program printing its
 * effective uid to `bin`, owned by root and setuid.
 */
export async function plantSetuidEuidProbe(src: string, bin: string): Promise<void> {
  await writeFile(
    src,
    '#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("euid=%d\\n",(int)geteuid());return 0;}\n',
  );
  await execFileP('musl-gcc', ['-static', '-Os', '-o', bin, src]);
  await chown(bin, 0, 0);
  await chmod(bin, 0o4755);
}
