import { z } from 'zod';
import { definePlugin, type ParallelismStrategy } from '../../core';

/**
 * A world of one process (the default strategy): all-reduce and broadcast leave buffers as they are,
 * point-to-point has no partner. `who` names the strategy in errors.
 */
export function worldOfOne(who: string): Omit<ParallelismStrategy, 'spec'> {
  const alone = (what: string) => async () => {
    throw new Error(`${who}: there is no other rank to ${what}`);
  };
  return {
    rank: 0,
    worldSize: 1,
    isGlobalZero: true,
    allReduce: async () => undefined,
    broadcast: async () => undefined,
    barrier: async () => undefined,
    send: alone('send to'),
    recv: alone('receive from'),
    finalize: async () => undefined,
  };
}

export default definePlugin({
  kind: 'parallelism',
  name: 'single-process',
  description: 'one process, world size 1 (no communication)',
  schema: z.object({}),
  create: () => worldOfOne('single-process'),
});
