import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * listenOnLoopback starts `server` on 127.0.0.1 at a port the kernel picks (tests never share
 * one) and returns that port and how to stop it: what every test-side file server needs.
 */
export async function listenOnLoopback(
  server: Server,
): Promise<{ port: number; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
