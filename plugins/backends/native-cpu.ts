import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';
import { loadAddon } from './native/addon';
import { installNativeKernels, nativeAddonInfo } from './native-kernels';

/**
 * tfjs's cpu backend with loom's native kernels (native/: SIMD, cache-blocked, multi-threaded) in place of its
 * hot JavaScript ones. Available when the addon was built at install; otherwise automatic selection falls back
 * to plain `cpu` and records why in the run tag `backend.skipped`.
 */
export default definePlugin({
  kind: 'backend',
  name: 'native-cpu',
  aliases: ['native'],
  description: 'tfjs cpu backend with loom native kernels (C++ N-API: SIMD, blocked SGEMM, thread pool)',
  schema: z.object({}),
  properties: [
    "every native kernel is property-tested against tfjs's reference kernel on random shapes (odd sizes, size 1, transposes, broadcasting)",
    'trainer.precision bf16: products of bf16-rounded operands within fp32 summation error of a float64 reference, on every path this CPU runs',
  ],
  create: () => ({
    priority: 50,
    async available() {
      const info = nativeAddonInfo();
      return info.loaded ? { ok: true } : { ok: false, reason: info.reason };
    },
    async activate() {
      tf.env().set('PROD', true);
      await tf.setBackend('cpu');
      await tf.ready();
      const { installed } = installNativeKernels();
      const info = nativeAddonInfo();
      return {
        'backend.kernels': `loom native (${info.simd}, ${info.threads} threads): ${installed.join(', ')}`,
        'backend.simd': String(info.simd),
        'backend.threads': String(info.threads),
      };
    },
    // trainer.precision: the addon's products in bf16 on the best path here (amx, avx512_bf16 or portable), or fp32.
    setPrecision(precision: 'fp32' | 'bf16') {
      const addon = loadAddon();
      if (!addon) return { 'backend.precision': 'fp32' };
      addon.setPrecision(precision === 'bf16' ? 1 : 0);
      return { 'backend.precision': addon.info().precision ?? precision };
    },
  }),
});
