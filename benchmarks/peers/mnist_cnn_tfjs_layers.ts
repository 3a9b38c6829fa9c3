/**
 * Peer: the seed's MNIST CNN in tfjs-layers on stock tfjs-backend-cpu (no loom kernels), training samples/s.
 * Usage: tsx mnist_cnn_tfjs_layers.ts BATCH
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { measure } from '../harness';

const batch = Number(process.argv[2] ?? 32);
tf.env().set('PROD', true);
await tf.setBackend('cpu');
const model = tfl.sequential({
  layers: [
    tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }),
    tfl.layers.maxPooling2d({ poolSize: 2 }),
    tfl.layers.flatten(),
    tfl.layers.dense({ units: 64, activation: 'relu' }),
    tfl.layers.dense({ units: 10 }),
  ],
});
model.compile({ optimizer: tf.train.adam(1e-3, 0.9, 0.999, 1e-7), loss: (y: tf.Tensor, p: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, p) });
const x = tf.randomUniform([batch, 28, 28, 1]);
const y = tf.oneHot(
  tf.tensor1d(
    Array.from({ length: batch }, (_, i) => i % 10),
    'int32',
  ),
  10,
);
const value = await measure(() => model.trainOnBatch(x, y), batch, { seconds: 3, repeats: 1, warmup: 1 });
console.log(JSON.stringify({ value, detail: 'tfjs-layers 4.22, cpu backend' }));
