import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, type PluginDefinition } from '../../core';

/**
 * The libtensorflow backends, optional peers a user installs (`npm install @tensorflow/tfjs-node` or
 * `@tensorflow/tfjs-node-gpu`): detected by importing the package, which registers the `tensorflow` backend.
 * They must share this project's @tensorflow/tfjs-core (same version), or they register on another copy.
 */
function nodeBackend(name: string, pkg: string, priority: number, description: string): PluginDefinition<'backend'> {
  let loaded: Promise<{ ok: boolean; reason?: string }> | null = null;
  const load = () =>
    (loaded ??= import(/* @vite-ignore */ pkg).then(
      () =>
        tf.findBackend('tensorflow')
          ? { ok: true }
          : { ok: false, reason: `${pkg} loaded but registered no 'tensorflow' backend on this @tensorflow/tfjs-core (version mismatch?)` },
      (e: Error) => ({ ok: false, reason: `${pkg} is not installed (${e.message.split('\n')[0]})` }),
    ));
  return definePlugin({
    kind: 'backend',
    name,
    description,
    schema: z.object({}),
    create: () => ({
      priority,
      available: load,
      async activate() {
        await tf.setBackend('tensorflow');
        await tf.ready();
        return { 'backend.kernels': pkg };
      },
    }),
  });
}

export const tfjsNodeGpu = nodeBackend('tfjs-node-gpu', '@tensorflow/tfjs-node-gpu', 100, 'libtensorflow with CUDA (@tensorflow/tfjs-node-gpu, optional peer)');
export const tfjsNode = nodeBackend('tfjs-node', '@tensorflow/tfjs-node', 90, 'libtensorflow on the CPU (@tensorflow/tfjs-node, optional peer)');
