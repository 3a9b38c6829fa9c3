import { z } from 'zod';
import { definePlugin, type Communicator } from '../../core';
import { DataParallelStrategy } from './data-parallel';

/**
 * A world of one process: all-reduce and broadcast leave buffers as they are, point-to-point has no partner.
 * `who` names the strategy in errors.
 */
export function worldOfOne(who: string): Communicator {
  const alone = (what: string) => async () => {
    throw new Error(`${who}: there is no other rank to ${what}`);
  };
  return {
    rank: 0,
    worldSize: 1,
    allReduce: async () => undefined,
    reduceScatter: async (send, recv) => void recv.set(send.subarray(0, recv.length)),
    allGather: async (send, recv) => void recv.set(send),
    broadcast: async () => undefined,
    barrier: async () => undefined,
    send: alone('send to'),
    recv: alone('receive from'),
    finalize: async () => undefined,
  };
}

/** The default strategy: one process; the trainer's own step, unsharded data, no communication. */
export default definePlugin({
  kind: 'parallelism',
  name: 'single-process',
  description: 'one process, world size 1 (no communication)',
  schema: z.object({}),
  create: () => new DataParallelStrategy(worldOfOne('single-process')),
});
