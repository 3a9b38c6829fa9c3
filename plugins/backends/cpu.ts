import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';
import { uninstallNativeKernels } from './native-kernels';

/** tfjs's pure-JavaScript CPU backend: runs everywhere, slowly. The last resort of automatic selection. */
export default definePlugin({
  kind: 'backend',
  name: 'cpu',
  aliases: ['tfjs-cpu'],
  description: "tfjs-backend-cpu: tfjs's reference JavaScript kernels",
  schema: z.object({}),
  create: () => ({
    priority: 10,
    available: async () => ({ ok: true }),
    async activate() {
      // PROD silences tfjs's "install tfjs-node" banner: the run already says which backend it chose.
      tf.env().set('PROD', true);
      await tf.setBackend('cpu');
      uninstallNativeKernels(); // `cpu` means tfjs's own kernels, even after native-cpu ran in this process
      await tf.ready();
      return { 'backend.kernels': 'tfjs-backend-cpu (JavaScript)' };
    },
  }),
});
