import { z } from 'zod';
import { Order } from './buildpack-toml.ts';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of order.toml (`<layers>/order.toml` or `/cnb/order.toml`). */
export const OrderToml = z.object({ order: Order.default([]), 'order-extensions': Order.optional() }).loose();
export type OrderToml = z.output<typeof OrderToml>;

/** readOrderToml reads order.toml. */
export function readOrderToml(path: TomlSource): Promise<OrderToml> {
  return readTomlFile(path, OrderToml);
}

/** writeOrderToml writes order.toml atomically. */
export function writeOrderToml(path: string, value: OrderToml): Promise<void> {
  return writeTomlFile(path, value);
}
