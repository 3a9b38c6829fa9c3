/**
 * `loom paper bert --preset P --quantize static|dynamic|all`: post-training int8 quantization (docs/quantization.md)
 * of the preset's newest finished fine-tuned spam classifier (run variant `finetune-pretrained`, or `--saved-model
 * DIR` inside such a run's artifacts), scored on the SpamAssassin test split the run was scored on, beside fp32.
 * Every encoder layer's attention projections and feed-forward network, the pooler and the classifier run in int8;
 * the embeddings, layer norms, softmax and the attention's score and value products stay float32. Static mode is
 * calibrated on a seeded sample of the training messages.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError, loadModel, selectBackend, type JsonObject, type Model, type PluginSpec } from '../../core';
import { latestRunArtifacts, localStore, type PaperMode, type PaperModeContext } from '../../runtime';
import { calibrationSample, inferenceBytes, measureQuantized, quantizeModes, refuseAsyncReads, type QuantizedRow } from '../../runtime/quantize';
import { Bert } from '../../plugins/models/bert';
import { binaryScores } from './scores';

export interface BertQuantizedResult {
  model: QuantizedRow;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  /** Test messages whose predicted class differs from the fp32 model's. */
  changedFromFp32: number;
  weightBytes: number;
}

export function quantizeMode(): PaperMode {
  return {
    flag: 'quantize',
    value: 'static|dynamic|all',
    help: "quantize the preset's newest fine-tuned spam classifier to int8 (or --saved-model DIR) and compare it with fp32 on the test split; --json FILE writes the table",
    json: true,
    options: {
      'saved-model': {
        value: 'DIR',
        help: "the model directory of a fine-tuning run's artifacts (its config.json beside it says which data) (default: the newest)",
      },
      'calibration-samples': {
        value: 'N',
        type: 'integer',
        min: 1,
        help: 'training messages to calibrate static quantization on, a seeded sample (default: 256)',
      },
    },
    run: (ctx) => runQuantize(ctx),
  };
}

async function runQuantize(ctx: PaperModeContext): Promise<void> {
  const modes = quantizeModes(ctx.input);
  await selectBackend(ctx.registry, process.env.LOOM_BACKEND);
  refuseAsyncReads('--backend'); // the evaluations and quantizeModel read on the host synchronously
  const dir =
    (ctx.options['saved-model'] as string | undefined) ??
    latestRunArtifacts('bert', ctx.preset, 'model', localStore(ctx.trackingUri), { variant: 'finetune-pretrained' });
  const configFile = path.join(path.dirname(dir), 'config.json');
  if (!fs.existsSync(configFile))
    throw new DataError(`${configFile} is missing: --saved-model must be the model directory inside a fine-tuning run's artifacts`);
  const data = (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { data: JsonObject }).data;
  const source = ctx.registry.create('dataset', data.source as PluginSpec, 'data.source');
  const test = source.load(String(data.test ?? 'test'));
  const float = loadModel(dir, ctx.registry, Bert);
  const reference = new Int32Array(test.size);
  const scored = async (model: Model) => {
    const b = inferenceBytes(model);
    const predicted = new Int32Array(test.size);
    const scores = await binaryScores(model, test, predicted);
    if (model === float) reference.set(predicted);
    return { ...scores, changedFromFp32: predicted.filter((p, i) => p !== reference[i]).length, weightBytes: b.float32 + b.int8 };
  };
  try {
    const results: BertQuantizedResult[] = await measureQuantized(
      float,
      ctx.registry,
      modes,
      () => calibrationSample(source.load(String(data.train ?? 'train')), Number(ctx.options['calibration-samples'] ?? 256), ctx.seed ?? 0),
      scored,
    );
    const pct = (v: number) => `${(100 * v).toFixed(2)} %`.padStart(9);
    ctx.out(`quantized ${dir} (test messages: ${test.size})`);
    ctx.out('model           accuracy  precision     recall         F1  changed  weight bytes');
    for (const r of results)
      ctx.out(
        `${r.model.padEnd(14)} ${pct(r.accuracy)}  ${pct(r.precision)}  ${pct(r.recall)}  ${pct(r.f1)}  ${String(r.changedFromFp32).padStart(7)}  ${String(r.weightBytes).padStart(12)}`,
      );
    if (ctx.json) fs.writeFileSync(ctx.json, `${JSON.stringify({ model: dir, testMessages: test.size, results }, null, 2)}\n`);
  } finally {
    float.dispose();
  }
}
