import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel } from '../../core';

/**
 * GELU (Hendrycks & Gimpel 2016): x·Φ(x). `approximate: 'none'` uses Φ(x) = ½(1 + erf(x/√2)) (BERT's choice);
 * `'tanh'` uses ½(1 + tanh(√(2/π)(x + 0.044715x³))), the paper's eq. for the fast approximation (GPT-2's choice);
 * x³ is x·x·x (tfjs's Pow runs Math.pow per element in JavaScript on the cpu backends: 6 % of a GPT decoding step).
 * Where the backend has `FUSED_KERNELS.geluTanh` and no gradient is being recorded (decoding, evaluation), the tanh
 * form runs as that one kernel: the same operations and bits, without nine kernel calls through tfjs's engine.
 */
export default definePlugin({
  kind: 'activation',
  name: 'gelu',
  description: 'x * Phi(x), exact (erf) or tanh approximation (Hendrycks & Gimpel 2016)',
  schema: z.object({ approximate: z.enum(['none', 'tanh']).default('none') }),
  properties: ['equals x·Φ(x) (exact form); the tanh approximation stays within 2e-3 of it'],
  create: ({ approximate }) => ({
    apply: (x: tf.Tensor) =>
      approximate === 'tanh' && x.dtype === 'float32' && !tf.engine().isTapeOn() && hasKernel(FUSED_KERNELS.geluTanh)
        ? (tf.engine().runKernel(FUSED_KERNELS.geluTanh, { x }) as tf.Tensor)
        : tf.tidy(() =>
            approximate === 'tanh'
              ? tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(tf.mul(x, x), x)))))))
              : tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2)))),
          ),
  }),
});
