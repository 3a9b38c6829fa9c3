/** SGEMM n×n×n in GFLOP/s: tf.matMul on loom's backend vs OpenBLAS through numpy. */
import * as tf from '@tensorflow/tfjs-core';
import { entry, measure, pythonPeer, type Benchmark } from './harness';

export const sgemm = (backend: string): Benchmark => ({
  name: 'sgemm',
  description: 'n x n float32 matrix product, n = 256/512/1024/2048',
  async run() {
    const out = [];
    for (const n of [256, 512, 1024, 2048]) {
      const a = tf.randomUniform([n, n], 0, 1, 'float32', 1);
      const b = tf.randomUniform([n, n], 0, 1, 'float32', 2);
      const ours = await measure(() => tf.matMul(a, b).dispose(), (2 * n ** 3) / 1e9, { seconds: 2 });
      tf.dispose([a, b]);
      const peer = pythonPeer('sgemm_numpy.py', [n, 2], 'numpy/OpenBLAS', 'GFLOP/s');
      out.push(entry(`sgemm ${n}`, 'GFLOP/s', ours, `tf.matMul on ${backend}`, [peer], n === 1024 ? 0.8 : undefined));
    }
    return out;
  },
});
