/**
 * Vaswani et al. (2017), the Transformer, reproduced as grapheme-to-phoneme conversion on CMUdict: spelling in,
 * pronunciation out, scored by word error rate (a word is right when the output equals any of its reference
 * pronunciations) and phoneme error rate (edit distance to the closest reference over its length), with greedy
 * and beam-search decoding. The published anchor is a 3-layer, 256-wide Transformer at 20.6 % WER on the
 * cmusphinx split (our split has the same test size but is drawn by hash, see plugins/data/cmudict.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  ConfigError,
  DataError,
  definePlugin,
  editDistance,
  finalEpochLogs,
  loadCheckpoint,
  readToHost,
  readWeights,
  Rng,
  buildModel,
  expectModel,
  modelOptions,
  writeWeights,
  loadModel,
  loadPresets,
  mergeConfig,
  parseExperimentConfig,
  selectBackend,
  type Callback,
  type JsonObject,
  type Model,
  type PluginRegistry,
  type PluginSpec,
} from '../../core';
import {
  averageCheckpoints,
  cutShortNotes,
  formatMetric,
  lastCheckpoints,
  registerPaperPlugins,
  runExperiment,
  latestRunArtifacts,
  localStore,
  type Paper,
  type PaperResult,
} from '../../runtime';
import cmudict, { type G2P } from '../../plugins/data/cmudict';
import seq2seqModel, { TransformerSeq2Seq } from '../../plugins/models/transformer-seq2seq';

const here = path.dirname(fileURLToPath(import.meta.url));
const presets = loadPresets(path.join(here, 'presets'));

const g2pSchema = z.object({
  beam: z.number().int().positive().default(4),
  /** α of the GNMT length penalty ((5 + |Y|) / 6)^α. */
  lengthPenalty: z.number().min(0).default(0.6),
  decodeBatch: z.number().int().positive().default(256),
  /** Decode only the first N test words (smoke presets); default: all of them. */
  testWords: z.number().int().positive().optional(),
  /**
   * Also score the average of the run's last K checkpoints (Vaswani et al. 2017, §6.1: the last 5), as the
   * `test_*_avg` metrics; keep at least K checkpoints (`trainer.checkpoint.keep`). 0: off.
   */
  averageLast: z.number().int().min(0).default(0),
  /**
   * Knowledge distillation: the preset whose newest finished run (in the tracking store) is the teacher of a
   * `distillation` loss that names no `teacher` directory itself (the `distill` preset: a 1+1-layer student of the
   * converged `cpu` model).
   */
  teacherPreset: z.string().min(1).optional(),
});
type G2pOptions = z.output<typeof g2pSchema>;

/** Levenshtein distance between two symbol sequences (core's; the tests import it from here). */
export { editDistance };

/**
 * WER and PER of hypotheses against every word's references: a word is correct when its hypothesis equals one of
 * them; its phoneme errors are the edit distance to the closest reference, and PER divides their sum by the summed
 * length of those closest references.
 */
export function scoreG2P(hyps: string[][], refs: string[][][]): { wer: number; per: number } {
  let wrong = 0;
  let edits = 0;
  let length = 0;
  hyps.forEach((h, i) => {
    const rs = refs[i]!;
    if (!rs.some((r) => r.join(' ') === h.join(' '))) wrong++;
    const best = rs.map((r) => ({ d: editDistance(h, r), n: r.length })).sort((a, b) => a.d - b.d || a.n - b.n)[0]!;
    edits += best.d;
    length += best.n;
  });
  return { wer: wrong / hyps.length, per: edits / Math.max(length, 1) };
}

/** `word`'s letter ids, or null for a word the model cannot take (a character outside the alphabet, or longer than `srcLen`). */
function encodeFitting(g2p: G2P, word: string, srcLen: number): number[] | null {
  try {
    const e = g2p.encodeWord(word);
    return e.length <= srcLen ? e : null;
  } catch {
    return null;
  }
}

/** Pronunciations of `words` (greedy with beam 1), in batches; words the model cannot take yield []. */
export async function transcribe(
  model: TransformerSeq2Seq,
  g2p: G2P,
  words: string[],
  o: Pick<G2pOptions, 'beam' | 'lengthPenalty' | 'decodeBatch'>,
  beam = o.beam,
): Promise<string[][]> {
  const out: string[][] = [];
  const srcLen = model.opts.srcLen;
  for (let s = 0; s < words.length; s += o.decodeBatch) {
    const chunk = words.slice(s, s + o.decodeBatch);
    const ids = chunk.map((w) => encodeFitting(g2p, w, srcLen));
    const rows = ids.map((e) => [...(e ?? []), ...Array(srcLen - (e?.length ?? 0)).fill(0)]);
    const src = tf.tensor2d(rows, [rows.length, srcLen], 'int32');
    let decoded: number[][];
    try {
      decoded = await (beam === 1 ? model.greedy(src) : model.beamSearch(src, beam, model.opts.tgtLen, o.lengthPenalty));
    } finally {
      src.dispose();
    }
    decoded.forEach((d, i) => out.push(ids[i] && ids[i]!.length > 0 ? g2p.decodePhonemes(d) : []));
  }
  return out;
}

/** WER and PER of `words` decoded greedily and with the beam of `o`, against `refs`. */
async function scoreModel(
  model: TransformerSeq2Seq,
  source: G2P,
  words: string[],
  refs: string[][][],
  o: G2pOptions,
): Promise<Record<'wer_greedy' | 'per_greedy' | 'wer_beam' | 'per_beam', number>> {
  const greedy = scoreG2P(await transcribe(model, source, words, o, 1), refs);
  const beam = scoreG2P(await transcribe(model, source, words, o), refs);
  return { wer_greedy: greedy.wer, per_greedy: greedy.per, wer_beam: beam.wer, per_beam: beam.per };
}

/** The run's model as the seq2seq Transformer this paper decodes with (a ConfigError if the config built another). */
function seq2seqOf(model: Model): TransformerSeq2Seq {
  return expectModel(model, TransformerSeq2Seq);
}

/**
 * The validation word and phoneme error rates at the end of every epoch (greedy decoding of the data set's
 * validation words), as the epoch metrics `val_wer` and `val_per`: what early stopping monitors when the model is
 * "trained until validation WER stops improving" (the label-smoothed validation loss is a proxy for it, not the
 * same ranking). Registered by this paper; its options name the data source so that it is plain JSON.
 */
export const g2pValidation = definePlugin({
  kind: 'callback',
  name: 'g2p-validation',
  description: 'G2P: greedy-decode the validation words each epoch and log val_wer / val_per (for early stopping)',
  schema: z
    .object({
      /** The cmudict data source of the run (its validation split is decoded). */
      source: z.object({ type: z.literal('cmudict') }).passthrough(),
      /** Decode only the first N validation words (default: all). */
      words: z.number().int().positive().optional(),
      decodeBatch: z.number().int().positive().default(256),
    })
    .strict(),
  properties: ['logs val_wer and val_per (scoreG2P of greedy decoding) at every epoch end (the smoke preset runs it)'],
  create: ({ source, words: limit, decodeBatch }, ctx): Omit<Callback, 'spec'> => {
    const g2p = ctx.registry.build(cmudict, source as PluginSpec, `${ctx.path}.source`);
    const words = g2p.words('valid').slice(0, limit);
    const refs = words.map((w) => g2p.references(w));
    const options = { beam: 1, lengthPenalty: 0.6, decodeBatch };
    return {
      async onEpochMetrics(state, logs) {
        const { wer, per } = scoreG2P(await transcribe(seq2seqOf(state.model), g2p, words, options, 1), refs);
        logs.val_wer = wer;
        logs.val_per = per;
      },
    };
  },
});

function split(preset: JsonObject): { config: JsonObject; g2p: G2pOptions } {
  const { g2p: raw, ...config } = preset;
  const parsed = g2pSchema.strict().safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(`g2p.${parsed.error.issues[0]!.path.join('.')}`, parsed.error.issues[0]!.message);
  return { config, g2p: parsed.data };
}

const REFERENCES = [
  {
    metric: 'test_wer_beam',
    label: 'WER, Transformer 3×256 (published G2P result)',
    value: 0.206,
    source: 'Yolchuyeva et al. 2019, CMUdict (cmusphinx split)',
  },
  {
    metric: 'test_wer_beam',
    label: 'WER, Phonetisaurus (joint-sequence n-gram)',
    value: 0.244,
    source: 'as compared by Yolchuyeva et al. 2019 (cmusphinx split)',
  },
  { metric: 'test_wer_beam', label: 'WER, bi-LSTM (Yao & Zweig 2015)', value: 0.2355, source: 'as compared by Yolchuyeva et al. 2019 (cmusphinx split)' },
];

/** The paper's own methods: a pronunciation from a trained run, and the scores of averaged checkpoints (both also modes). */
interface TransformerPaper extends Paper {
  /** `store`: the MLflow file store to find the trained run in (default ./mlruns). */
  predict(registry: PluginRegistry, preset: string, word: string, store?: string): Promise<string>;
  evaluateCheckpoints(registry: PluginRegistry, preset: string, checkpoints: string[]): Promise<Record<string, number>>;
}

const paper: TransformerPaper = {
  name: 'transformer',
  title: 'Vaswani et al. 2017: the Transformer, as grapheme-to-phoneme conversion on CMUdict',
  presets,
  presetNotes: {
    smoke: 'a 1-layer, 32-wide model on 3,000 training pairs, 2 epochs, 200 test words: the CI check (about a minute)',
    cpu: 'the published 3 layers × 256, 4 heads, batches bucketed by length, up to 40 epochs with early stopping on validation WER (patience 3, the best epoch restored), the last 5 checkpoints averaged too: ~12 minutes per epoch with 2 threads here (0.39 s per step), hours in all',
    'cpu-batch256':
      "cpu with batches of 256 words and the learning rate scaled for them: the Noam warm-up in steps divided by 4 (1,000), so the schedule is the same in examples and the rate √4 = 2× cpu's at every example (Noam's rate goes as warmup^-1/2 and step^-1/2); checkpoints every 250 steps, the same examples apart as cpu's 1,000",
    base: "the paper's base model (6 layers, 512, 8 heads), for a GPU",
    student: 'a 1+1-layer student (one encoder and one decoder layer of the cpu width), trained alone on the labels: the baseline of distill',
    distill:
      "the student distilled from the newest finished cpu run (word-level knowledge distillation, Kim & Rush 2016 §3.1: the teacher's per-position distribution at T 1, weight 0.5 beside the label-smoothed loss)",
    'smoke-distill': "the smoke model distilled from the newest finished smoke run: the CI check of distill's wiring",
  },
  references: REFERENCES,
  claims: [
    {
      statement: 'the distilled 1+1-layer student has a lower test WER than the same student trained alone',
      source: 'Hinton et al. 2015; word-level distillation, Kim & Rush 2016 §3.1',
      metric: 'test_wer_beam',
      better: 'lower',
      order: [
        { label: 'distill', preset: 'distill' },
        { label: 'student', preset: 'student' },
      ],
      // The same student, data, optimizer and schedule; only the loss adds the teacher's distribution.
      varies: ['loss'],
    },
  ],
  plugins: [g2pValidation],
  modes: [
    {
      flag: 'predict',
      value: 'WORD',
      help: 'transcribe WORD with the newest trained run of the preset instead of training (train the preset first)',
      run: async (ctx) => ctx.out(await paper.predict(ctx.registry, ctx.preset, ctx.input, localStore(ctx.trackingUri))),
    },
    {
      flag: 'average-checkpoints',
      value: 'DIR',
      help: "score the average of the last --last checkpoints in DIR (a run's checkpoint folder) on the preset's test set instead of training (Vaswani et al. 2017 §6.1)",
      options: { last: { value: 'K', type: 'integer', min: 1, help: 'how many of the newest checkpoints to average, a positive integer (default: 5)' } },
      json: true,
      run: async (ctx) => {
        const dirs = lastCheckpoints(path.resolve(ctx.input), Number(ctx.options.last ?? 5));
        if (dirs.length === 0) throw new ConfigError('--average-checkpoints', `no checkpoints (ckpt-*) in ${path.resolve(ctx.input)}`);
        ctx.out(`loom: averaging ${dirs.length} checkpoint(s): ${dirs.map((d) => path.basename(d)).join(', ')}`);
        const scores = await paper.evaluateCheckpoints(ctx.registry, ctx.preset, dirs);
        for (const [k, v] of Object.entries(scores)) ctx.out(`${k.padEnd(18)} ${k === 'checkpoints' || k === 'test_words' ? String(v) : formatMetric(v, k)}`);
        if (ctx.json) fs.writeFileSync(ctx.json, `${JSON.stringify({ paper: paper.name, preset: ctx.preset, checkpoints: dirs, metrics: scores }, null, 2)}\n`);
      },
    },
  ],
  async run(opts): Promise<PaperResult> {
    const base = presets[opts.preset];
    if (!base) throw new ConfigError('--preset', `paper "transformer" has no preset "${opts.preset}"; presets: ${Object.keys(presets).join(', ')}`);
    const { config: raw, g2p } = split(mergeConfig(base, (opts.overrides ?? {}) as JsonObject));
    if (opts.seed !== undefined) raw.seed = opts.seed;
    const loss = raw.loss as JsonObject | undefined;
    if (g2p.teacherPreset && loss?.type === 'distillation' && loss.teacher === undefined) {
      loss.teacher = latestRunArtifacts('transformer', g2p.teacherPreset, 'model', localStore(opts.trackingUri));
    }
    registerPaperPlugins(opts.registry, paper);
    const config = parseExperimentConfig(raw);
    const source = opts.registry.build(cmudict, config.data.source, 'data.source');
    const words = source.words('test').slice(0, g2p.testWords);
    const refs = words.map((w) => source.references(w));
    const r = await runExperiment({
      registry: opts.registry,
      config,
      backend: opts.backend,
      trackingUri: opts.trackingUri,
      resume: opts.resume,
      runName: `transformer-${opts.preset}-seed${config.seed}`,
      tags: { paper: 'transformer', preset: opts.preset, scale: scaleOf(opts.preset, config, words.length) },
      evaluate: async (trainer, _test, run) => {
        const model = seq2seqOf(trainer.model);
        const score = () => scoreModel(model, source, words, refs, g2p);
        const out: Record<string, number> = await score();
        const dirs = g2p.averageLast > 1 && run.checkpoints ? lastCheckpoints(run.checkpoints, g2p.averageLast) : [];
        if (dirs.length > 1) {
          // The averaged weights in place of the trained ones for the decoding, then the trained ones back.
          const params = trainer.model.parameters();
          await readToHost(params.map((p) => p.variable)); // readWeights reads synchronously: the host copy first (webgpu)
          const trained = readWeights(params);
          writeWeights(params, averageCheckpoints(dirs), `the average of ${dirs.length} checkpoints`);
          try {
            for (const [k, v] of Object.entries(await score())) out[`${k}_avg`] = v;
            out.avg_checkpoints = dirs.length;
          } finally {
            writeWeights(params, trained, 'the trained weights');
          }
        }
        return out;
      },
    });
    const metrics: Record<string, number> = {};
    for (const [k, v] of Object.entries(finalEpochLogs(r.history, r.restoredEpoch))) metrics[k] = v;
    for (const [k, v] of Object.entries(r.test ?? {})) metrics[`test_${k}`] = v;
    return {
      paper: 'transformer',
      preset: opts.preset,
      backend: r.backend,
      seed: config.seed,
      metrics,
      wallTimeSec: r.wallTimeSec,
      mlflow: r.run,
      commit: r.tags['git.commit'] ?? 'unknown',
      scale: scaleOf(opts.preset, config, words.length),
      comparison: REFERENCES.map((ref) => ({ ...ref, measured: metrics[ref.metric] ?? null, reference: ref.value })),
      notes: [
        ...cutShortNotes(config, r.history.length, r.restoredEpoch),
        `greedy decoding: WER ${pct(metrics.test_wer_greedy)}, PER ${pct(metrics.test_per_greedy)}; beam ${g2p.beam}: WER ${pct(metrics.test_wer_beam)}, PER ${pct(metrics.test_per_beam)}`,
        ...(metrics.test_avg_checkpoints
          ? [
              `the average of the last ${metrics.test_avg_checkpoints} checkpoints: greedy WER ${pct(metrics.test_wer_greedy_avg)}, PER ${pct(metrics.test_per_greedy_avg)}; beam WER ${pct(metrics.test_wer_beam_avg)}, PER ${pct(metrics.test_per_beam_avg)}`,
            ]
          : []),
      ],
    };
  },
  /**
   * The test WER and PER (greedy and beam) of the average of `checkpoints` (of one run): the model is rebuilt from
   * the config saved in the checkpoints, and the test words are the preset's.
   */
  async evaluateCheckpoints(registry, preset, checkpoints) {
    if (checkpoints.length === 0) throw new ConfigError('--average-checkpoints', 'no checkpoints to average');
    await selectBackend(registry, process.env.LOOM_BACKEND);
    const { g2p } = split(presets[preset]!);
    const saved = parseExperimentConfig(loadCheckpoint(checkpoints.at(-1)!).config);
    const source = registry.build(cmudict, saved.data.source, 'data.source');
    const words = source.words('test').slice(0, g2p.testWords);
    const refs = words.map((w) => source.references(w));
    const model = seq2seqOf(buildModel(saved.model, registry));
    model.build(model.inputShape, new Rng(saved.seed));
    try {
      writeWeights(model.parameters(), averageCheckpoints(checkpoints), `the average of ${checkpoints.length} checkpoints`);
      const scores = Object.entries(await scoreModel(model, source, words, refs, g2p)).map(([k, v]) => [`test_${k}`, v]);
      return { ...Object.fromEntries(scores), checkpoints: checkpoints.length, test_words: words.length };
    } finally {
      model.dispose();
    }
  },
  /** The pronunciation of any word, from the newest finished run of `preset` in `store` (default ./mlruns). */
  async predict(registry, preset, word, store = 'mlruns') {
    await selectBackend(registry, process.env.LOOM_BACKEND);
    const dir = latestRunArtifacts('transformer', preset, 'model', store);
    const model = loadModel(dir, registry, TransformerSeq2Seq);
    try {
      const { g2p } = split(presets[preset]!);
      const source = registry.build(cmudict, (presets[preset]!.data as JsonObject).source as PluginSpec, 'data.source');
      // transcribe gives [] both for a word the model cannot take and for an empty decoding: only the first is the user's.
      if (!encodeFitting(source, word, model.opts.srcLen)?.length)
        throw new DataError(`cannot spell "${word}": letters A-Z, apostrophe, period and hyphen, at most ${model.opts.srcLen} of them`);
      const [phonemes] = await transcribe(model, source, [word], g2p);
      const said = phonemes && phonemes.length > 0 ? phonemes.join(' ') : '(no phonemes: the model ends the word at once; train it longer)';
      const known = source.references(word);
      return `${word.toUpperCase()}  ${said}${known.length ? `   (dictionary: ${known.map((p) => p.join(' ')).join(' | ')})` : '   (not in the dictionary)'}`;
    } finally {
      model.dispose();
    }
  },
};

const pct = (v: number | undefined) => (v === undefined ? 'n/a' : `${(v * 100).toFixed(2)} %`);

function scaleOf(preset: string, config: ReturnType<typeof parseExperimentConfig>, testWords: number): string {
  const layer = modelOptions(seq2seqModel, config.model);
  const published = layer.dModel === 256 && layer.layers === 3 && !config.data.trainLimit;
  return `${published ? 'the published 3×256 configuration' : 'SMALLER THAN THE PUBLISHED MODEL'} (preset ${preset}): ${layer.layers} layer(s), d_model ${layer.dModel}, ${layer.numHeads} heads, ${config.trainer.epochs} epoch(s), ${config.data.trainLimit ?? 'all'} training pairs, ${testWords} test words; our hash split, not cmusphinx's`;
}

export default paper;
