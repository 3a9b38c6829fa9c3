/** SGEMM in GFLOP/s: tf.matMul on loom's backend vs OpenBLAS through numpy, measured in alternation. */
import * as tf from '@tensorflow/tfjs-core';
import { entry, interleaved, measure, pythonPeer, type Benchmark } from './harness';

/** Issue 20's target for every sgemm row, square or the papers' shapes: at least 0.9x OpenBLAS's best core. */
const SGEMM_TARGET = 0.9;

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
      out.push(entry(`sgemm ${n}`, 'GFLOP/s', ours, `tf.matMul on ${backend}`, [peer], SGEMM_TARGET));
    }
    return out;
  },
});

/**
 * The products the papers' models run, forward and backward (op(A)[m×k]·op(B)[k×n]; a transposed operand is
 * stored transposed and multiplied as such, as the gradients are), same alternation with numpy.
 */
export const SGEMM_SHAPES: { label: string; m: number; n: number; k: number; ta: boolean; tb: boolean }[] = [
  { label: 'MNIST CNN dense 5408→64, batch 128: x·W', m: 128, n: 64, k: 5408, ta: false, tb: false },
  { label: 'MNIST CNN dense weight gradient xᵀ·dz', m: 5408, n: 64, k: 128, ta: true, tb: false },
  { label: 'MNIST CNN dense input gradient dz·Wᵀ', m: 128, n: 5408, k: 64, ta: false, tb: true },
  { label: 'Transformer 256/4/1024 feed-forward in, 2048 tokens', m: 2048, n: 1024, k: 256, ta: false, tb: false },
  { label: 'Transformer feed-forward out', m: 2048, n: 256, k: 1024, ta: false, tb: false },
  { label: 'Transformer feed-forward in, weight gradient xᵀ·dz', m: 256, n: 1024, k: 2048, ta: true, tb: false },
  { label: 'GPT d384 QKV projection, 1024 tokens', m: 1024, n: 1152, k: 384, ta: false, tb: false },
  { label: 'LSTM 650 gates, batch 20: [x h]·W', m: 20, n: 2600, k: 1300, ta: false, tb: false },
  { label: 'LSTM 650 weight gradient [x h]ᵀ·dz', m: 1300, n: 2600, k: 20, ta: true, tb: false },
  { label: 'LSTM 650 input gradient dz·Wᵀ', m: 20, n: 1300, k: 2600, ta: false, tb: true },
];

export const sgemmShapes = (backend: string): Benchmark => ({
  name: 'sgemm-shapes',
  description: "float32 matrix products of the papers' models (MNIST CNN, Transformer, GPT, LSTM), forward and gradients",
  async run() {
    const out = [];
    for (const { label, m, n, k, ta, tb } of SGEMM_SHAPES) {
      const a = tf.randomUniform(ta ? [k, m] : [m, k], 0, 1, 'float32', 1);
      const b = tf.randomUniform(tb ? [n, k] : [k, n], 0, 1, 'float32', 2);
      const { ours, peer } = await interleaved(
        () => measure(() => tf.matMul(a, b, ta, tb).dispose(), (2 * m * n * k) / 1e9, { seconds: 1, repeats: 1 }),
        () => pythonPeer('sgemm_shapes_numpy.py', [m, n, k, Number(ta), Number(tb), 1, 1], 'numpy/OpenBLAS', 'GFLOP/s'),
      );
      tf.dispose([a, b]);
      const name = `sgemm ${m}x${k}${ta ? 'ᵀ' : ''}·${k}x${n}${tb ? 'ᵀ' : ''}`;
      out.push(entry(name, 'GFLOP/s', ours, `tf.matMul on ${backend}: ${label}`, [peer], SGEMM_TARGET));
    }
    return out;
  },
});
