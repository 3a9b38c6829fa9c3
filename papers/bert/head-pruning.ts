/**
 * `loom paper bert --preset P --prune-heads MAX|all`: Michel et al. (2019, §4, Fig. 3) on the fine-tuned spam
 * classifier. The importance of every attention head, I_h = E_x |∂L/∂ξ_h| (eq. 2; plugins/callbacks/head-pruning.ts),
 * is estimated once on a seeded sample of the training messages and normalized per layer by its ℓ2 norm; then the
 * k least important heads are pruned, for k = 0 .. MAX, without retraining, and each pruned model is scored on the
 * test split the run was scored on. The model is the preset's newest finished `finetune-pretrained` run (or
 * `--saved-model DIR` inside a fine-tuning run's artifacts, e.g. a `--compression` run's dense model).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { batchesOf, ConfigError, DataError, epochOrder, loadModel, readToHost, selectBackend, type JsonObject, type PluginSpec } from '../../core';
import { gitCommit, latestRunArtifacts, localStore, type PaperMode, type PaperModeContext } from '../../runtime';
import { machineLine } from '../../runtime/compression';
import { headImportance, headsToPrune, normalizeByLayer, pruneHeads, type HeadRef, type LayerImportance } from '../../plugins/callbacks/head-pruning';
import { Bert } from '../../plugins/models/bert';
import { binaryScores } from './scores';

export interface HeadPruningRow {
  /** Heads pruned (the k least important). */
  pruned: number;
  heads: string[];
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
}

export function headPruningMode(): PaperMode {
  return {
    flag: 'prune-heads',
    value: 'MAX|all',
    help: "prune the fine-tuned spam classifier's 0..MAX least important attention heads (Michel et al. 2019) and score each on the test split; --json FILE writes the table",
    json: true,
    options: {
      'saved-model': {
        value: 'DIR',
        help: "the model directory of a fine-tuning run's artifacts (its config.json beside it says which data) (default: the newest finetune-pretrained)",
      },
      'importance-samples': {
        value: 'N',
        type: 'integer',
        min: 1,
        help: 'training messages the importance is estimated on, a seeded sample, in batches of 32 (default: 512)',
      },
    },
    run: (ctx) => runHeadPruning(ctx),
  };
}

const label = (h: HeadRef) => `${h.layer.split('/').at(-2)}/head ${h.head}`;

async function runHeadPruning(ctx: PaperModeContext): Promise<void> {
  const selected = await selectBackend(ctx.registry, process.env.LOOM_BACKEND);
  const commit = gitCommit(); // the code that runs, read before the work
  const dir =
    (ctx.options['saved-model'] as string | undefined) ??
    latestRunArtifacts('bert', ctx.preset, 'model', localStore(ctx.trackingUri), { variant: 'finetune-pretrained' });
  const configFile = path.join(path.dirname(dir), 'config.json');
  if (!fs.existsSync(configFile))
    throw new DataError(`${configFile} is missing: --saved-model must be the model directory inside a fine-tuning run's artifacts`);
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as { data: JsonObject; loss?: PluginSpec; seed?: number };
  const source = ctx.registry.create('dataset', config.data.source as PluginSpec, 'data.source');
  const test = source.load(String(config.data.test ?? 'test'));
  const train = source.load(String(config.data.train ?? 'train'));
  const loss = ctx.registry.create('loss', config.loss ?? 'sparse-categorical-crossentropy', 'loss');

  const model = loadModel(dir, ctx.registry, Bert);
  let importance: LayerImportance[];
  const samples = Math.min(Number(ctx.options['importance-samples'] ?? 512), train.size);
  const order = epochOrder(train.size, ctx.seed ?? 0, 0, true).subarray(0, samples);
  const batches = [...batchesOf(order, 32)].map((idx) => train.batch(idx));
  try {
    importance = await headImportance(model, loss, batches);
  } finally {
    for (const b of batches) tf.dispose([b.x, b.y]);
    model.dispose();
  }
  const total = importance.reduce((a, l) => a + l.numHeads, 0);
  const max = ctx.input === 'all' ? total : Number(ctx.input);
  if (!(Number.isInteger(max) && max >= 0 && max <= total))
    throw new ConfigError('--prune-heads', `expected all or a whole number of heads from 0 to ${total} (the model's heads), got "${ctx.input}"`);

  const ranked = headsToPrune(importance, total);
  const rows: HeadPruningRow[] = [];
  for (let k = 0; k <= max; k++) {
    const m = loadModel(dir, ctx.registry, Bert); // pruning is destructive: each k from the saved weights
    try {
      await readToHost(m); // pruneHeads reads the masks synchronously (webgpu: fetch them first)
      pruneHeads(m, ranked.slice(0, k));
      rows.push({ pruned: k, heads: ranked.slice(0, k).map(label), ...(await binaryScores(m, test)) });
    } finally {
      m.dispose();
    }
  }
  const normalized = normalizeByLayer(importance);
  const pct = (v: number) => `${(100 * v).toFixed(2)} %`.padStart(9);
  ctx.out(`head importance of ${dir} (${samples} training messages; normalized per layer by the ℓ2 norm):`);
  for (const [i, l] of importance.entries())
    ctx.out(`  ${l.layer}: ${l.importance.map((v, h) => `head ${h} ${v.toExponential(3)} (${normalized[i]!.importance[h]!.toFixed(3)})`).join(', ')}`);
  ctx.out(`pruned  accuracy  precision     recall         F1  heads (test messages: ${test.size})`);
  for (const r of rows)
    ctx.out(`${String(r.pruned).padStart(6)} ${pct(r.accuracy)}  ${pct(r.precision)}  ${pct(r.recall)}  ${pct(r.f1)}  ${r.heads.join(', ') || '-'}`);
  if (ctx.json) {
    const record = {
      model: dir,
      importanceSamples: samples,
      seed: ctx.seed ?? 0,
      testMessages: test.size,
      heads: total,
      importance,
      order: ranked.map(label),
      rows,
      backend: selected.tags.backend ?? selected.backend.spec?.type,
      machine: machineLine(),
      commit,
      date: new Date().toISOString(),
    };
    fs.mkdirSync(path.dirname(path.resolve(ctx.json)), { recursive: true });
    fs.writeFileSync(ctx.json, `${JSON.stringify(record, null, 2)}\n`);
  }
}
