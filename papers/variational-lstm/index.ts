/**
 * Gal & Ghahramani (2016), "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks":
 * for an LSTM language model, variational dropout (one mask per sequence, shared across time, on inputs,
 * recurrent connections and outputs, plus word-embedding dropout) against naive dropout (Zaremba et al. 2014: a
 * new mask at every step, non-recurrent connections only) and no dropout, on the Brown corpus split of Bengio et
 * al. (2003). Each variant is one tracked run; "variational-mc" evaluates the variational model with Monte-Carlo
 * dropout (the average of T stochastic forward passes) instead of the usual weight scaling.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  ConfigError,
  DataError,
  finalEpochLogs,
  loadModel,
  loadPresets,
  mergeConfig,
  parseExperimentConfig,
  Rng,
  selectBackend,
  type JsonObject,
  type PluginRegistry,
  type PluginSpec,
} from '../../core';
import { cutShortNotes, findLatestCheckpoint, latestRunArtifacts, localStore, runExperiment, type Paper, type PaperResult } from '../../runtime';
import brown from '../../plugins/data/brown';
import { mcDropoutPerplexity } from './mc-dropout';

const here = path.dirname(fileURLToPath(import.meta.url));
const VARIANTS = ['none', 'naive', 'variational'] as const;
type Variant = (typeof VARIANTS)[number];

/** The paper-specific part of a preset: the network and its dropout, besides the experiment config. */
const lmSchema = z.object({
  units: z.number().int().positive(),
  layers: z.number().int().positive().default(2),
  /** Uniform initialisation in [−init, init] (Zaremba et al.: 0.05 for the medium model). */
  init: z.number().positive(),
  /** Dropout on inputs and outputs of each LSTM layer (naive and variational). */
  dropout: z.number().min(0).lt(1),
  /** Variational only: dropout on the recurrent connections, and word-type dropout on the embedding. */
  recurrentDropout: z.number().min(0).lt(1),
  embeddingDropout: z.number().min(0).lt(1),
  variants: z.array(z.enum(VARIANTS)).default([...VARIANTS]),
  /** Monte-Carlo dropout samples for "variational-mc" (0: skip it). */
  mcSamples: z.number().int().min(0).default(0),
});
type LmOptions = z.output<typeof lmSchema>;

/** The network of one variant, as layer specs: embedding, `layers` stacked stateful LSTMs, a softmax projection. */
export function lmLayers(variant: Variant, o: LmOptions, vocab: number): PluginSpec[] {
  const init = { type: 'random-uniform', min: -o.init, max: o.init };
  const drop = (name: string): PluginSpec[] =>
    variant === 'naive'
      ? [{ type: 'dropout', rate: o.dropout, name }]
      : variant === 'variational'
        ? [{ type: 'variational-dropout', rate: o.dropout, name }]
        : [];
  const layers: PluginSpec[] = [
    { type: 'embedding', vocabSize: vocab, dim: o.units, initializer: init, dropout: variant === 'variational' ? o.embeddingDropout : 0, name: 'embedding' },
    ...drop('drop_in'),
  ];
  for (let i = 1; i <= o.layers; i++) {
    layers.push({
      type: 'lstm',
      units: o.units,
      stateful: true,
      returnSequences: true,
      unitForgetBias: false,
      name: `lstm_${i}`,
      kernelInitializer: init,
      recurrentInitializer: init,
      recurrentDropout: variant === 'variational' ? o.recurrentDropout : 0,
    });
    layers.push(...drop(`drop_${i}`));
  }
  layers.push({ type: 'dense', units: vocab, kernelInitializer: init, name: 'softmax' });
  return layers;
}

const presets = loadPresets(path.join(here, 'presets'));

const paper: Paper = {
  name: 'variational-lstm',
  title: 'Gal & Ghahramani 2016: variational dropout in LSTM language models (Brown corpus)',
  presets,
  presetNotes: {
    smoke: 'a 2×32 LSTM on the first 20,000 tokens, 1 epoch per variant: the CI check that all variants train (about a minute)',
    cpu: "a 2×200 LSTM with the paper's medium dropout rates (0.5 on inputs and outputs, 0.2 recurrent and on word embeddings) on the full Brown split, up to 39 epochs per variant (SGD lr 35 on the per-token mean loss, i.e. Zaremba et al.'s lr 1 on the loss summed over 35 steps, ÷1.2 per epoch after epoch 6), early stopping on validation perplexity (patience 3, best epoch restored): ~3.5-4 minutes per epoch per variant on 1 thread here (0.19 s per step with the fused cell kernels, 1,143 steps, plus validation); none overfits and stops after ~7 epochs, the dropout variants train up to 39: ~5-6 hours of one core for all three; smaller than the paper",
    medium: "the paper's medium setting (2×650, 39 epochs, dropout 0.5): for a GPU or a very long CPU run",
  },
  references: [
    {
      metric: 'test_perplexity',
      variant: 'naive',
      label: 'Zaremba et al. 2014 (naive dropout), PTB medium, test',
      value: 82.7,
      source: 'Gal & Ghahramani 2016, Table 1 (a different corpus: PTB)',
    },
    {
      metric: 'test_perplexity',
      variant: 'variational',
      label: 'Gal & Ghahramani 2016 (variational), PTB medium, test',
      value: 79.7,
      source: 'Gal & Ghahramani 2016, Table 1 (a different corpus: PTB)',
    },
    {
      metric: 'test_perplexity',
      label: 'Bengio et al. 2003, best MLP, Brown test',
      value: 252,
      source: 'Bengio et al. 2003, Table 1 (same corpus split, their own vocabulary)',
    },
    { metric: 'test_perplexity', label: 'Bengio et al. 2003, best n-gram (Kneser-Ney), Brown test', value: 312, source: 'Bengio et al. 2003, Table 1' },
  ],
  claims: [
    {
      statement: 'variational < naive < none in test perplexity',
      source: 'Gal & Ghahramani 2016, Table 1 (PTB medium: variational 79.7, naive dropout 82.7); an unregularised LSTM overfits (Zaremba et al. 2014)',
      metric: 'test_perplexity',
      better: 'lower',
      order: [
        { label: 'variational', variant: 'variational' },
        { label: 'naive', variant: 'naive' },
        { label: 'none', variant: 'none' },
      ],
      // The variants differ in their dropout layers and rates only; the rest of the recipe must be the same.
      varies: ['model'],
    },
  ],
  modes: [
    {
      flag: 'mc-dropout',
      value: 'T',
      help: 'score the newest finished variational run of the preset (of --seed, when given) on the test set with Monte-Carlo dropout over T samples, beside weight scaling, instead of training (Gal & Ghahramani 2016, §4; train the preset first)',
      json: true,
      run: async (ctx) => {
        const samples = Number(ctx.input);
        if (!Number.isInteger(samples) || samples < 1)
          throw new ConfigError('--mc-dropout', `the number of samples must be a positive integer, got "${ctx.input}"`);
        const r = await mcDropoutOfRun(ctx.registry, ctx.preset, samples, localStore(ctx.trackingUri), ctx.seed);
        ctx.out(`variational run ${r.runId} (preset ${ctx.preset}, seed ${r.seed}), test set:`);
        ctx.out(`  weight scaling             perplexity ${r.weightScaling.toFixed(2)}`);
        ctx.out(`  MC dropout, ${String(samples).padEnd(4)} samples    perplexity ${r.mc.toFixed(2)}`);
        if (ctx.json) fs.writeFileSync(ctx.json, `${JSON.stringify({ paper: 'variational-lstm', preset: ctx.preset, samples, ...r }, null, 2)}\n`);
      },
    },
  ],
  async run(opts): Promise<PaperResult> {
    const base = presets[opts.preset];
    if (!base) throw new ConfigError('--preset', `paper "variational-lstm" has no preset "${opts.preset}"; presets: ${Object.keys(presets).join(', ')}`);
    const { lm: rawLm, ...rest } = mergeConfig(base, (opts.overrides ?? {}) as JsonObject);
    const parsedLm = lmSchema.strict().safeParse(rawLm);
    if (!parsedLm.success) throw new ConfigError(`preset ${opts.preset}.lm.${parsedLm.error.issues[0]!.path.join('.')}`, parsedLm.error.issues[0]!.message);
    const lm = parsedLm.data;
    const seed = opts.seed ?? Number(rest.seed ?? 0);
    const source = opts.registry.build(brown, (rest.data as JsonObject).source as PluginSpec, 'data.source');
    const vocab = source.vocab.length;
    const metrics: Record<string, number> = {};
    const runs: PaperResult['mlflow'][] = [];
    let backend = '';
    let commit = 'unknown';
    let wall = 0;
    const cut: string[] = [];
    for (const variant of lm.variants) {
      const config = parseExperimentConfig({
        ...rest,
        seed,
        model: { inputShape: [(rest.data as { source: { unroll: number } }).source.unroll], layers: lmLayers(variant, lm, vocab) },
      });
      const withMc = variant === 'variational' && lm.mcSamples > 0;
      const runName = `variational-lstm-${opts.preset}-seed${seed}-${variant}`;
      const r = await runExperiment({
        registry: opts.registry,
        config,
        backend: opts.backend,
        trackingUri: opts.trackingUri,
        resume: resumeOf(opts.resume, config.experiment, runName),
        runName,
        tags: { paper: 'variational-lstm', preset: opts.preset, variant, scale: scaleOf(opts.preset, lm, vocab, config.trainer.epochs) },
        evaluate: withMc
          ? async (trainer, test) => ({
              mc_perplexity: test ? await mcDropoutPerplexity(trainer.model, test, lm.mcSamples, config.trainer.evalBatchSize, new Rng(seed + 1)) : NaN,
            })
          : undefined,
      });
      backend = r.backend;
      commit = r.tags['git.commit'] ?? commit;
      wall += r.wallTimeSec;
      cut.push(...cutShortNotes(config, r.history.length, r.restoredEpoch).map((n) => `${variant}: ${n}`));
      runs.push(r.run);
      metrics[`${variant}/val_perplexity`] = finalEpochLogs(r.history, r.restoredEpoch).val_perplexity ?? NaN;
      metrics[`${variant}/test_perplexity`] = r.test?.perplexity ?? NaN;
      if (withMc) metrics['variational-mc/test_perplexity'] = r.test?.mc_perplexity ?? NaN;
    }
    const order = Object.entries(metrics)
      .filter(([k]) => k.endsWith('/test_perplexity'))
      .sort((a, b) => a[1] - b[1]);
    const notes = [
      ...cut,
      `validation / test perplexity: ${lm.variants.map((v) => `${v} ${metrics[`${v}/val_perplexity`]!.toFixed(1)} / ${metrics[`${v}/test_perplexity`]!.toFixed(1)}`).join('; ')}`,
      `measured test perplexity, best first: ${order.map(([k, v]) => `${k.split('/')[0]} ${v.toFixed(1)}`).join(' < ')}`,
      `vocabulary ${vocab} words (Bengio et al. report 16,383); ${source.stats.tokens} tokens in the stream`,
      ...runs.map((r, i) => `${lm.variants[i]}: MLflow run ${r.runId}`),
    ];
    const comparison = paper.references.flatMap((ref) => {
      const variants = ref.variant ? [ref.variant] : lm.variants;
      return variants.map((v) => ({
        metric: `${v}/${ref.metric}`,
        label: ref.variant ? ref.label : `${v}: ${ref.label}`,
        measured: metrics[`${v}/${ref.metric}`] ?? null,
        reference: ref.value,
        source: ref.source,
      }));
    });
    if (metrics['variational-mc/test_perplexity'] !== undefined) {
      comparison.push({
        metric: 'variational-mc/test_perplexity',
        label: `variational, MC dropout (${lm.mcSamples} samples), test`,
        measured: metrics['variational-mc/test_perplexity']!,
        reference: 79.7,
        source: 'compared with the variational PTB number above',
      });
    }
    return {
      paper: 'variational-lstm',
      preset: opts.preset,
      backend,
      seed,
      metrics,
      wallTimeSec: wall,
      mlflow: runs.at(-1)!,
      commit,
      comparison,
      notes,
      scale: scaleOf(opts.preset, lm, vocab, parseExperimentConfig({ ...rest, model: { inputShape: [1], layers: ['flatten'] } }).trainer.epochs),
    };
  },
};

/**
 * The test perplexity of the newest finished `variational` run of `preset` (of `seed`, when given) in the store at
 * `store`: with weight scaling and with Monte-Carlo dropout over `samples` passes, on the data and evaluation batch
 * size the run trained with (its saved config), the MC draws seeded as the run's own evaluation seeds them (seed + 1):
 * with the run's sample count it gives the run's `test_mc_perplexity`.
 */
export async function mcDropoutOfRun(
  registry: PluginRegistry,
  preset: string,
  samples: number,
  store = 'mlruns',
  seed?: number,
): Promise<{ runId: string; seed: number; weightScaling: number; mc: number }> {
  await selectBackend(registry, process.env.LOOM_BACKEND);
  const tags = { variant: 'variational', ...(seed === undefined ? {} : { seed: String(seed) }) };
  const modelDir = latestRunArtifacts('variational-lstm', preset, 'model', store, tags);
  const configFile = path.join(path.dirname(modelDir), 'config.json');
  if (!fs.existsSync(configFile)) throw new DataError(`the run at ${path.dirname(path.dirname(modelDir))} has no saved config (${configFile})`);
  const config = parseExperimentConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')));
  const source = registry.build(brown, config.data.source as PluginSpec, 'data.source');
  const test = source.load(config.data.test ?? 'test');
  const model = loadModel(modelDir, registry);
  try {
    const weightScaling = await mcDropoutPerplexity(model, test, 1, config.trainer.evalBatchSize, new Rng(config.seed + 1), false);
    const mc = await mcDropoutPerplexity(model, test, samples, config.trainer.evalBatchSize, new Rng(config.seed + 1));
    return { runId: path.basename(path.dirname(path.dirname(modelDir))), seed: config.seed, weightScaling, mc };
  } finally {
    model.dispose();
  }
}

/**
 * Where a variant resumes from: the paper trains one run per variant in sequence, so `--resume` (the newest
 * checkpoint, or a checkpoint given by path) stands for the whole sequence. Each variant continues from the newest
 * checkpoint of its own run (same experiment and run name) under the same checkpoint root; a variant that never
 * started starts now; a finished one says so and keeps its results.
 */
function resumeOf(resume: string | undefined, experiment: string, runName: string): string | undefined {
  if (!resume) return undefined;
  // <root>/<experiment id>/<run id>/ckpt-*: the root is three levels up from a checkpoint, two from a run folder.
  const abs = path.resolve(resume);
  const root = path.basename(abs).startsWith('ckpt-') ? path.dirname(path.dirname(path.dirname(abs))) : path.dirname(path.dirname(abs));
  return findLatestCheckpoint(experiment, root, runName) ?? undefined;
}

function scaleOf(preset: string, lm: LmOptions, vocab: number, epochs: number): string {
  const paperScale = lm.units === 650 && lm.layers === 2 && epochs >= 39;
  return `${paperScale ? "the paper's medium size" : 'SMALLER THAN THE PAPER'} (preset ${preset}): ${lm.layers}×${lm.units} LSTM, ${epochs} epoch(s), vocabulary ${vocab}, dropout ${lm.dropout} (recurrent ${lm.recurrentDropout}, embedding ${lm.embeddingDropout}); Brown corpus, not PTB`;
}

export default paper;
