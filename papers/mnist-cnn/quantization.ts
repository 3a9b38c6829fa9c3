/**
 * `loom paper mnist-cnn --preset P --quantize static|dynamic|all`: post-training int8 quantization (docs/quantization.md)
 * of the newest finished run of preset P (or `--saved-model DIR`), evaluated on the test set beside the fp32 model:
 * accuracy, loss and the weights' bytes for inference. Static calibration takes a seeded sample of training images.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel, Rng, selectBackend, type Dataset, type Model } from '../../core';
import { latestRunArtifacts, localStore, type PaperMode, type PaperModeContext } from '../../runtime';
import { calibrationSample, inferenceBytes, measureQuantized, quantizeModes, refuseAsyncReads, type QuantizedRow } from '../../runtime/quantize';

export interface QuantizedResult {
  model: QuantizedRow;
  test_accuracy: number;
  test_loss: number;
  weightBytes: number;
}

/** Accuracy and mean cross-entropy of `model` on the first `limit` examples of `test`, in batches of 500. */
export function evaluateClassifier(model: Model, test: Dataset, limit = test.size): { test_accuracy: number; test_loss: number } {
  let correct = 0,
    loss = 0;
  const n = Math.min(limit, test.size);
  for (let s = 0; s < n; s += 500) {
    const b = test.batch(Int32Array.from({ length: Math.min(500, n - s) }, (_, i) => s + i));
    tf.tidy(() => {
      const logits = model.apply(b.x, { training: false, rng: new Rng(0) });
      const y = tf.cast(b.y, 'int32');
      correct += tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), y), 'float32')).dataSync()[0]!;
      loss += tf.losses.softmaxCrossEntropy(tf.oneHot(y as tf.Tensor1D, logits.shape.at(-1)!), logits, undefined, 0, tf.Reduction.SUM).dataSync()[0]!;
    });
    tf.dispose([b.x, b.y]);
  }
  return { test_accuracy: correct / n, test_loss: loss / n };
}

export function quantizeMode(): PaperMode {
  return {
    flag: 'quantize',
    value: 'static|dynamic|all',
    help: "quantize the preset's newest trained model to int8 (or --saved-model DIR) and compare it with fp32 on the test set; --json FILE writes the table",
    json: true,
    options: {
      'saved-model': { value: 'DIR', help: "a saved model to quantize instead of the preset's newest run (default: that run's model)" },
      'calibration-samples': {
        value: 'N',
        type: 'integer',
        min: 1,
        help: 'training images to calibrate static quantization on, a seeded sample (default: 1000)',
      },
      'quantize-test-limit': { value: 'N', type: 'integer', min: 1, help: 'evaluate on the first N test images (default: all 10,000)' },
    },
    run: (ctx) => runQuantize(ctx),
  };
}

async function runQuantize(ctx: PaperModeContext): Promise<void> {
  const modes = quantizeModes(ctx.input);
  await selectBackend(ctx.registry, process.env.LOOM_BACKEND); // --backend sets it for a mode
  refuseAsyncReads('--backend'); // the evaluations and quantizeModel read on the host synchronously
  const dir = (ctx.options['saved-model'] as string | undefined) ?? latestRunArtifacts('mnist-cnn', ctx.preset, 'model', localStore(ctx.trackingUri));
  const float = loadModel(dir, ctx.registry);
  const source = ctx.registry.create('dataset', 'mnist');
  const test = source.load('test');
  const limit = Number(ctx.options['quantize-test-limit'] ?? test.size);
  const calibration = () => calibrationSample(source.load('train'), Number(ctx.options['calibration-samples'] ?? 1000), ctx.seed ?? 0);
  const results: QuantizedResult[] = await measureQuantized(float, ctx.registry, modes, calibration, (model) => ({
    ...evaluateClassifier(model, test, limit),
    weightBytes: byteCount(model),
  }));
  float.dispose();
  ctx.out(`quantized ${dir} (test images: ${Math.min(limit, test.size)})`);
  ctx.out('model          test accuracy  test loss  weight bytes');
  for (const r of results)
    ctx.out(
      `${r.model.padEnd(14)} ${`${(100 * r.test_accuracy).toFixed(2)} %`.padStart(13)}  ${r.test_loss.toFixed(4).padStart(9)}  ${String(r.weightBytes).padStart(12)}`,
    );
  if (ctx.json) fs.writeFileSync(ctx.json, `${JSON.stringify({ model: dir, results }, null, 2)}\n`);
}

const byteCount = (m: Model) => {
  const b = inferenceBytes(m);
  return b.float32 + b.int8;
};
