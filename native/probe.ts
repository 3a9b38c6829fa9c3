/**
 * Speed probe for the native kernels: GFLOP/s of tf.matMul at 256..2048 and the time of one MNIST-CNN-like
 * training step (conv 3×3×1→32 relu, maxpool 2, dense 5408→64 relu, dense 64→10, batch 32, tf.variableGrads),
 * first on tfjs's own cpu kernels, then after installNativeKernels().  Run: `npx tsx native/probe.ts`.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers'; // registers the gradient functions on tfjs-core
import * as tf from '@tensorflow/tfjs-core';
import { installNativeKernels, nativeAddonInfo } from '../plugins/backends/native-kernels';

/** Median wall time in ms of `fn` over `reps` runs after one warm-up; stops early once `budgetMs` is spent. */
function time(fn: () => void, reps: number, budgetMs = 8000): number {
  fn();
  const ts: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps && performance.now() - start < budgetMs; i++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]!;
}

function matmulGflops(n: number, reps: number): number {
  const a = tf.randomNormal([n, n]),
    b = tf.randomNormal([n, n]);
  const ms = time(() => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  }, reps);
  tf.dispose([a, b]);
  return (2 * n ** 3) / (ms * 1e6);
}

function cnnStepMs(reps: number): number {
  const v = (shape: number[], s = 0.1) => tf.variable(tf.randomNormal(shape, 0, s));
  const w1 = v([3, 3, 1, 32]),
    b1 = v([32]),
    w2 = v([5408, 64], 0.01),
    b2 = v([64]),
    w3 = v([64, 10]),
    b3 = v([10]);
  const x = tf.randomNormal([32, 28, 28, 1]);
  const y = tf.cast(tf.oneHot(tf.randomUniform([32], 0, 10, 'int32') as tf.Tensor1D, 10), 'float32');
  const loss = () => {
    let h: tf.Tensor = tf.relu(tf.add(tf.conv2d(x as tf.Tensor4D, w1 as tf.Tensor4D, 1, 'valid'), b1));
    h = tf.reshape(tf.maxPool(h as tf.Tensor4D, 2, 2, 'valid'), [32, 5408]);
    h = tf.relu(tf.add(tf.matMul(h, w2), b2));
    const logits = tf.add(tf.matMul(h, w3), b3);
    return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
  };
  const ms = time(() => {
    const { value, grads } = tf.variableGrads(loss);
    value.dataSync();
    Object.values(grads).forEach((g) => g.dataSync());
    tf.dispose([value, ...Object.values(grads)]);
  }, reps);
  tf.dispose([w1, b1, w2, b2, w3, b3, x, y]);
  return ms;
}

function report(label: string, slow: boolean): void {
  const sizes = slow ? [256, 512] : [256, 512, 1024, 2048];
  const g = sizes.map((n) => `${n}: ${matmulGflops(n, slow ? 3 : 20).toFixed(1)}`).join(', ');
  console.log(`${label}  matMul GFLOP/s  ${g}`);
  console.log(`${label}  CNN step (batch 32)  ${cnnStepMs(slow ? 3 : 20).toFixed(1)} ms`);
}

await tf.setBackend('cpu');
tf.env().set('PROD', true);
if (!process.argv.includes('--native-only')) report('tfjs-cpu', true);
const res = installNativeKernels();
console.log('native:', JSON.stringify(nativeAddonInfo()), 'installed:', res.installed.join(', '), res.reason ?? '');
report('native  ', false);
