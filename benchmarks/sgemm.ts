/** SGEMM n×n×n in GFLOP/s: tf.matMul on loom's backend vs OpenBLAS through numpy, measured in alternation. */
import * as tf from '@tensorflow/tfjs-core';
import { entry, interleaved, measure, pythonPeer, type Benchmark } from './harness';

export const sgemm = (backend: string): Benchmark => ({
  name: 'sgemm',
  description: 'n x n float32 matrix product, n = 256/512/1024/2048',
  async run() {
    const out = [];
    for (const n of [256, 512, 1024, 2048]) {
      const a = tf.randomUniform([n, n], 0, 1, 'float32', 1);
      const b = tf.randomUniform([n, n], 0, 1, 'float32', 2);
      const { ours, peer } = await interleaved(
        () => measure(() => tf.matMul(a, b).dispose(), (2 * n ** 3) / 1e9, { seconds: 2, repeats: 1 }),
        () => pythonPeer('sgemm_numpy.py', [n, 2, 1], 'numpy/OpenBLAS', 'GFLOP/s'),
      );
      tf.dispose([a, b]);
      out.push(entry(`sgemm ${n}`, 'GFLOP/s', ours, `tf.matMul on ${backend}`, [peer], n === 1024 ? 0.8 : undefined));
    }
    return out;
  },
});
