/**
 * `loom paper gpt --preset P --quantize static|dynamic|all`: post-training int8 quantization (docs/quantization.md)
 * of the preset's newest finished run (or `--saved-model DIR`), its validation loss beside the fp32 model's. Every
 * block's attention projections and MLP run in int8; the embeddings (and the tied output projection), layer norms,
 * softmax and the attention's score and value products stay float32. Static mode is calibrated on a seeded sample of
 * training windows.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel, Rng, selectBackend, type Dataset, type JsonObject, type Model, type PluginSpec } from '../../core';
import { latestRunArtifacts, localStore, type PaperMode, type PaperModeContext } from '../../runtime';
import { calibrationSample, inferenceBytes, measureQuantized, quantizeModes, refuseAsyncReads, type QuantizedRow } from '../../runtime/quantize';
import charText from '../../plugins/data/char-text';
import { GPT } from '../../plugins/models/gpt';

export interface GptQuantizedResult {
  model: QuantizedRow;
  val_loss: number;
  weightBytes: number;
  seconds: number;
}

/** Mean next-character cross-entropy (nats) of `model` over the first `limit` windows of `data`, in batches of 128. */
export function validationLoss(model: Model, data: Dataset, limit = data.size): number {
  let total = 0,
    count = 0;
  const n = Math.min(limit, data.size);
  for (let s = 0; s < n; s += 128) {
    const b = data.batch(Int32Array.from({ length: Math.min(128, n - s) }, (_, i) => s + i));
    tf.tidy(() => {
      const logits = model.apply(b.x, { training: false, rng: new Rng(0) });
      const y = tf.cast(b.y, 'int32');
      const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(y, logits.shape.at(-1)!)));
      total -= picked.dataSync()[0]!;
      count += y.size;
    });
    tf.dispose([b.x, b.y]);
  }
  return total / count;
}

export function quantizeMode(presets: Record<string, JsonObject>): PaperMode {
  return {
    flag: 'quantize',
    value: 'static|dynamic|all',
    help: "quantize the preset's newest trained GPT to int8 (or --saved-model DIR) and compare its validation loss with fp32; --json FILE writes the table",
    json: true,
    options: {
      'saved-model': { value: 'DIR', help: "a saved GPT to quantize instead of the preset's newest run (default: that run's model)" },
      'calibration-samples': {
        value: 'N',
        type: 'integer',
        min: 1,
        help: 'training windows to calibrate static quantization on, a seeded sample (default: 256)',
      },
      'quantize-limit': { value: 'N', type: 'integer', min: 1, help: 'evaluate on the first N validation windows (default: all)' },
    },
    run: (ctx) => runQuantize(ctx, presets),
  };
}

async function runQuantize(ctx: PaperModeContext, presets: Record<string, JsonObject>): Promise<void> {
  const modes = quantizeModes(ctx.input);
  await selectBackend(ctx.registry, process.env.LOOM_BACKEND);
  refuseAsyncReads('--backend'); // the evaluations and quantizeModel read on the host synchronously
  const dir = (ctx.options['saved-model'] as string | undefined) ?? latestRunArtifacts('gpt', ctx.preset, 'model', localStore(ctx.trackingUri));
  const data = presets[ctx.preset]!.data as JsonObject;
  const source = ctx.registry.build(charText, data.source as PluginSpec, 'data.source');
  const valid = source.load(String(data.validation ?? 'valid'));
  const limit = Number(ctx.options['quantize-limit'] ?? valid.size);
  const float = loadModel(dir, ctx.registry, GPT);
  const timed = (model: Model) => {
    const t0 = performance.now();
    const val_loss = validationLoss(model, valid, limit);
    const b = inferenceBytes(model);
    return { val_loss, weightBytes: b.float32 + b.int8, seconds: (performance.now() - t0) / 1000 };
  };
  try {
    const results: GptQuantizedResult[] = await measureQuantized(
      float,
      ctx.registry,
      modes,
      () => calibrationSample(source.load(String(data.train ?? 'train')), Number(ctx.options['calibration-samples'] ?? 256), ctx.seed ?? 0),
      timed,
    );
    ctx.out(`quantized ${dir} (validation windows: ${Math.min(limit, valid.size)})`);
    ctx.out('model          val_loss  weight bytes  eval seconds (contended host: indicative only)');
    for (const r of results)
      ctx.out(`${r.model.padEnd(14)} ${r.val_loss.toFixed(4).padStart(8)}  ${String(r.weightBytes).padStart(12)}  ${r.seconds.toFixed(1).padStart(12)}`);
    if (ctx.json) fs.writeFileSync(ctx.json, `${JSON.stringify({ model: dir, windows: Math.min(limit, valid.size), results }, null, 2)}\n`);
  } finally {
    float.dispose();
  }
}
