/**
 * `loom paper bert --preset P --compression prune`: the sparsity sweep of issue 24 on the fine-tuned spam classifier.
 * The classifier is fine-tuned on SpamAssassin (the preset's `finetune` section, from random initialisation: no
 * pretraining, which at `tiny` takes ~30 min and changed accuracy by 0.3 points, see README) densely and with gradual
 * magnitude pruning (Zhu & Gupta 2017, callback `magnitude-pruning`) to each sparsity, one run per seed and sparsity,
 * the schedule scaled to the run (pruning from 10 % to 70 % of the steps: runtime/compression.ts). Scored on the test
 * split (accuracy, and precision, recall and F1 of spam), with the artifact's size stored densely and sparsely.
 *
 * Which weights (`--prune`): `encoder` (default) prunes every encoder layer's attention projections (the packed
 * q,k,v kernel and W^O) and feed-forward kernels, the encoder's weight matrices that BERT pruning studies prune
 * (e.g. Chen et al. 2020, "The Lottery Ticket Hypothesis for Pre-trained BERT Networks"); the embeddings, the pooler
 * and the classifier stay dense. `all` prunes every kernel and the token and position embeddings too. At BERT-Tiny the
 * embeddings hold most of the weights (8,000 × 128 of the 1.45 M), so `encoder` sparsity shrinks the artifact little.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, mergeConfig, readToHost, type JsonObject } from '../../core';
import { gitCommit, runExperiment, type PaperMode, type PaperModeContext } from '../../runtime';
import {
  artifactSizes,
  machineLine,
  parseSparsities,
  pruningSchedule,
  sparsityOf,
  summarize,
  type ArtifactBytes,
  type Sparsity,
} from '../../runtime/compression';
import { spamAssassinTexts, spamTextSchema } from '../../plugins/data/spam-assassin';
import { binaryScores } from './scores';
import { bertSetup } from './setup';

export interface BertCompressionRun {
  group: string;
  seed: number;
  test_accuracy: number;
  test_precision: number;
  test_recall: number;
  test_f1: number;
  test_loss: number;
  wallTimeSec: number;
  runId: string;
  /** The saved model (`<run>/artifacts/model`) where the run is tracked in a file store. */
  artifact: string | null;
  params: number;
  sparsity?: Sparsity;
  bytes: ArtifactBytes;
}

/** The `magnitude-pruning` parameter selection of each `--prune` choice. */
export const PRUNE_SCOPES: Record<string, JsonObject> = {
  encoder: { roles: ['kernel'], match: '/encoder_\\d+/' },
  all: { roles: ['kernel', 'embedding'] },
};

export function compressionMode(presets: Record<string, JsonObject>): PaperMode {
  return {
    flag: 'compression',
    value: 'prune',
    help: 'fine-tune the spam classifier densely and with magnitude pruning to each sparsity and compare accuracy, F1 and artifact size; --json FILE writes every run and the summary',
    json: true,
    options: {
      sparsities: { value: 'LIST', help: 'comma-separated percentages to prune to (default: 50,75,90,95)' },
      seeds: { value: 'K', type: 'integer', min: 1, help: 'seeds per group, --seed (or 0) and the next K-1 (default: 1)' },
      epochs: { value: 'N', type: 'integer', min: 1, help: "fine-tuning epochs of every run (default: the preset's)" },
      prune: {
        value: 'encoder|all',
        help: "encoder: the encoder layers' attention and feed-forward kernels; all: every kernel and the embeddings (default: encoder)",
      },
    },
    run: (ctx) => runCompression(ctx, presets),
  };
}

async function runCompression(ctx: PaperModeContext, presets: Record<string, JsonObject>): Promise<void> {
  if (ctx.input !== 'prune') throw new ConfigError('--compression', `expected prune, got "${ctx.input}"`);
  const scope = String(ctx.options.prune ?? 'encoder');
  if (!PRUNE_SCOPES[scope]) throw new ConfigError('--prune', `expected one of ${Object.keys(PRUNE_SCOPES).join(', ')}, got "${scope}"`);
  const sparsities = parseSparsities(String(ctx.options.sparsities ?? '50,75,90,95'));
  const seeds = Array.from({ length: Number(ctx.options.seeds ?? 1) }, (_, i) => (ctx.seed ?? 0) + i);
  const setup = bertSetup(presets, ctx.preset);
  const trainer = (setup.finetune.trainer ?? {}) as { epochs?: number; batchSize?: number };
  const epochs = Number(ctx.options.epochs ?? trainer.epochs ?? 1);
  const trainCount = spamAssassinTexts('train', spamTextSchema.parse(setup.groups)).labels.length;
  const { stepsPerRun, ...schedule } = pruningSchedule(epochs * Math.ceil(trainCount / (trainer.batchSize ?? 32)));
  const commit = gitCommit(); // the code that runs: read now, before a long sweep, not at its end
  const runs: BertCompressionRun[] = [];
  let backend = '';

  const train = async (group: string, seed: number, callbacks: JsonObject[]) => {
    let extra: Pick<BertCompressionRun, 'params' | 'sparsity' | 'bytes' | 'test_precision' | 'test_recall' | 'test_f1'> | null = null;
    const config = mergeConfig(
      { ...setup.common, seed, data: setup.spam, model: setup.bertModel('classifier'), ...setup.classify },
      { trainer: { epochs }, callbacks },
    );
    const run = await runExperiment({
      registry: ctx.registry,
      config,
      trackingUri: ctx.trackingUri,
      runName: `bert-${ctx.preset}-compression-${group}-seed${seed}`,
      tags: { paper: 'bert', preset: ctx.preset, mode: 'compression', group, scale: setup.scale },
      log: () => undefined,
      evaluate: async (t, test) => {
        const scores = await binaryScores(t.model, test!);
        await readToHost(t.model); // the sparsity count and the sizes read the weights and masks synchronously (webgpu: fetch them first)
        const masked = t.model.weights().some((p) => p.mask);
        extra = {
          params: t.model.countParams(),
          ...(masked ? { sparsity: sparsityOf(t.model) } : {}),
          bytes: artifactSizes(t.model),
          test_precision: scores.precision,
          test_recall: scores.recall,
          test_f1: scores.f1,
        };
        return { ...scores };
      },
    });
    backend = run.backend;
    const artifact = path.join(run.run.location, 'artifacts', 'model');
    const r: BertCompressionRun = {
      group,
      seed,
      test_accuracy: run.test!.accuracy!,
      test_loss: run.test!.loss!,
      wallTimeSec: run.wallTimeSec,
      runId: run.run.runId,
      artifact: fs.existsSync(path.join(artifact, 'model.json')) ? artifact : null,
      ...extra!,
    };
    runs.push(r);
    ctx.out(
      `${group.padEnd(10)} seed ${seed}  accuracy ${pct(r.test_accuracy)}  F1 ${pct(r.test_f1)}  ${r.wallTimeSec.toFixed(0)} s` +
        (r.sparsity ? `  sparsity ${pct(r.sparsity.pruned)} of the pruned tensors, ${pct(r.sparsity.overall)} overall` : '') +
        `  ${r.bytes.dense} B dense${r.bytes.sparse ? `, ${r.bytes.sparse} B sparse` : ''}`,
    );
  };

  for (const seed of seeds) await train('dense', seed, []);
  for (const s of sparsities) {
    const pruning = { type: 'magnitude-pruning', finalSparsity: s, ...schedule, scope: 'layer', ...PRUNE_SCOPES[scope] };
    for (const seed of seeds) await train(`pruned-${Math.round(s * 100)}`, seed, [pruning]);
  }

  const accuracy = summarize(runs, 'test_accuracy');
  const f1 = summarize(runs, 'test_f1');
  const sparsity = summarize(
    runs.map((r) => ({ group: r.group, v: r.sparsity?.overall ?? 0 })),
    'v',
  );
  const sparse = summarize(
    runs.map((r) => ({ group: r.group, v: r.bytes.sparse ?? r.bytes.dense })),
    'v',
  );
  ctx.out('');
  ctx.out(`group       n  accuracy mean (min-max)    F1 mean (min-max)         zeros overall  bytes (sparse storage)`);
  for (const g of Object.keys(accuracy)) {
    const a = accuracy[g]!;
    const f = f1[g]!;
    ctx.out(
      `${g.padEnd(10)} ${String(a.n).padStart(2)}  ${pct(a.mean)} (${pct(a.min)}-${pct(a.max)})  ${pct(f.mean)} (${pct(f.min)}-${pct(f.max)})  ${pct(sparsity[g]!.mean).padStart(13)}  ${Math.round(sparse[g]!.mean)}`,
    );
  }
  if (ctx.json) {
    const record = {
      paper: 'bert',
      mode: 'compression',
      what: 'prune',
      preset: ctx.preset,
      prune: scope,
      pruned: PRUNE_SCOPES[scope],
      initialization: 'random (no pretraining)',
      epochs,
      seeds,
      sparsities,
      trainMessages: trainCount,
      pruningSchedule: { ...schedule, stepsPerRun },
      backend,
      machine: machineLine(),
      commit,
      date: new Date().toISOString(),
      summary: { accuracy, f1 },
      runs,
    };
    fs.mkdirSync(path.dirname(path.resolve(ctx.json)), { recursive: true });
    fs.writeFileSync(ctx.json, `${JSON.stringify(record, null, 2)}\n`);
    ctx.out(`wrote ${ctx.json}`);
  }
}

const pct = (v: number) => `${(100 * v).toFixed(2)} %`;
