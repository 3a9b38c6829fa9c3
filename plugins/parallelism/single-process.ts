import { z } from 'zod';
import { definePlugin } from '../../core';

/** A world of one process: all-reduce and broadcast leave buffers as they are. The default strategy. */
export default definePlugin({
  kind: 'parallelism',
  name: 'single-process',
  description: 'one process, world size 1 (no communication)',
  schema: z.object({}),
  create: () => ({
    rank: 0,
    worldSize: 1,
    isGlobalZero: true,
    allReduce: async () => undefined,
    broadcast: async () => undefined,
    barrier: async () => undefined,
    send: async () => {
      throw new Error('single-process: there is no other rank to send to');
    },
    recv: async () => {
      throw new Error('single-process: there is no other rank to receive from');
    },
    finalize: async () => undefined,
  }),
});
