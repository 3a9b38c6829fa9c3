/**
 * Devlin et al. (2018), BERT, at small scale: a WordPiece vocabulary trained on our corpora, masked-LM pretraining
 * (15 % of tokens selected, replaced 80/10/10 by [MASK], a random token or themselves) on Brown, the State of the
 * Union addresses and Moby Dick, then fine-tuning a [CLS] classifier on SpamAssassin (ham vs spam), with and
 * without the pretrained encoder, beside a bag-of-words logistic regression on the same split. Four tracked runs,
 * tagged `variant`: pretrain, finetune-pretrained, finetune-scratch, baseline-bow.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  expectModel,
  finalEpochLogs,
  listCheckpoints,
  loadPresets,
  mergeConfig,
  parseExperimentConfig,
  readToHost,
  readWeights,
  writeWeights,
  type Dataset,
  type JsonObject,
  type Logs,
  type Model,
  type NamedWeights,
  type Trainer,
} from '../../core';
import { cachePath, cutShortNotes, registerPaperPlugins, runExperiment, type Paper, type PaperResult } from '../../runtime';
import { Bert } from '../../plugins/models/bert';
import { bowData, mlmData } from './data';
import { binaryScores } from './scores';
import { quantizeMode } from './quantization';
import { compressionMode } from './compression';
import { headPruningMode } from './head-pruning';
import { bertSetup } from './setup';
import { cacheKey, curvePoints, FEW_SHOT_VARIANTS, FewShotResults, fewShotEpochs, loadEncoder, saveEncoder, separated, writeCurves } from './few-shot';
import { spamAssassinTexts, spamTextSchema } from '../../plugins/data/spam-assassin';

const here = path.dirname(fileURLToPath(import.meta.url));
const presets = loadPresets(path.join(here, 'presets'));

export { binaryScores } from './scores';

const paper: Paper = {
  name: 'bert',
  title: 'Devlin et al. 2018: BERT pretraining (masked LM) and fine-tuning on SpamAssassin, at small scale',
  presets,
  presetNotes: {
    smoke: 'a 1-layer, 32-wide BERT on 200,000 characters; SpamAssassin hard-ham-1 + spam-1 only: the CI check (about a minute)',
    tiny: 'BERT-Tiny (2 layers, 128 wide, 2 heads) pretrained for one pass over the three corpora, fine-tuned 3 epochs',
    mini: 'BERT-Mini (4 layers, 256 wide, 4 heads), the same schedule',
    'few-shot':
      'BERT-Tiny pretrained once (3 passes), then learning curves: 50, 100, 200, 500, 1,000 and all labelled messages × 3 seeds, fine-tuned from the pretrained encoder and from scratch, beside the bag-of-words baseline (resumable: finished runs are kept in ./cache/bert)',
    'few-shot-long':
      "the few-shot curves from an encoder pretrained ~7x longer: 20 passes over the corpora (each sequence masked 4 ways, BERT's dupe_factor, × 5 epochs, so each masking is seen 5 times; 19,200 steps of 32), the masked-LM head run at the selected positions only (max_predictions_per_seq 32)",
    'few-shot-smoke':
      'the few-shot curves on the smoke model and data: 20 and all labelled messages × 2 seeds, pretrained as few-shot-long is (gathered head, dupe factor 2): the CI check of the grid',
  },
  plugins: [mlmData, bowData],
  modes: [quantizeMode(), compressionMode(presets), headPruningMode()],
  references: [
    {
      metric: 'test_accuracy',
      variant: 'baseline-bow',
      label: 'bag-of-words logistic regression, accuracy',
      value: 0.985,
      source: 'Géron 2019, ch. 3 exercise 4 (his own split of the same corpus)',
    },
    {
      metric: 'test_accuracy',
      variant: 'finetune-pretrained',
      label: 'bag-of-words logistic regression (Géron), for comparison',
      value: 0.985,
      source: 'Géron 2019, ch. 3',
    },
  ],
  async run(opts): Promise<PaperResult> {
    // Three runs in sequence (pretraining, fine-tuning, baseline): there is no one checkpoint to continue from.
    if (opts.resume) throw new ConfigError('--resume', 'the bert paper trains three runs in sequence and cannot resume one; run it again without --resume');
    const setup = bertSetup(presets, opts.preset, (opts.overrides ?? {}) as JsonObject);
    const { b, common, rawModel, pretrain, finetune, baseline, tokenizer, vocab, bertModel, spam, groups, classify } = setup;
    const seed = opts.seed ?? Number(common.seed ?? 0);
    registerPaperPlugins(opts.registry, paper);

    const metrics: Record<string, number> = {};
    const runs: PaperResult['mlflow'][] = [];
    const cut: string[] = [];
    let wall = 0;
    let backend = '';
    let commit = 'unknown';
    const run = async (
      variant: string,
      config: JsonObject,
      hooks: { evaluate?: (t: Trainer, d: Dataset | null) => Logs | Promise<Logs>; initialize?: (m: Model) => void } = {},
      grid?: { seed: number; size: number | 'all'; examples: number },
      resume?: string,
    ) => {
      // Merged, not spread: a trainer field given for the whole paper (--max-steps, --set trainer.X) reaches each run's trainer.
      const parsed = parseExperimentConfig(mergeConfig({ ...common, seed: grid?.seed ?? seed }, config));
      const r = await runExperiment({
        registry: opts.registry,
        config: parsed,
        backend: opts.backend,
        trackingUri: opts.trackingUri,
        resume,
        runName: grid ? `bert-${opts.preset}-few-shot-${grid.size}-seed${grid.seed}-${variant}` : `bert-${opts.preset}-seed${seed}-${variant}`,
        tags: {
          paper: 'bert',
          preset: opts.preset,
          variant,
          scale: setup.scale,
          // The labelled subset: its size as the grid names it (a number, or 'all') and how many examples that is, the
          // x of the learning curves `loom report` draws.
          ...(grid
            ? {
                'few_shot.size': String(grid.size),
                'few_shot.examples': String(grid.examples),
                'few_shot.seed': String(grid.seed),
                'few_shot.encoder_seed': String(seed),
              }
            : {}),
        },
        ...hooks,
      });
      runs.push(r.run);
      cut.push(...cutShortNotes(parsed, r.history.length, r.restoredEpoch).map((n) => `${variant}: ${n}`));
      wall += r.wallTimeSec;
      backend = r.backend;
      commit = r.tags['git.commit'] ?? commit;
      for (const [k, v] of Object.entries(r.test ?? {})) metrics[`${variant}/test_${k}`] = v;
      for (const [k, v] of Object.entries(finalEpochLogs(r.history, r.restoredEpoch))) metrics[`${variant}/${k}`] = v;
      return r;
    };

    // 2. Masked-LM pretraining; the encoder's weights are kept for fine-tuning.
    let encoder: NamedWeights | null = null;
    const pretrainConfig: JsonObject = {
      data: {
        source: {
          type: 'bert-mlm',
          tokenizer,
          seqLen: b.seqLen,
          seed,
          ...(b.pretrainChars ? { maxChars: b.pretrainChars } : {}),
          ...(b.maxPredictions ? { maxPredictions: b.maxPredictions } : {}),
          ...(b.dupeFactor ? { dupeFactor: b.dupeFactor } : {}),
        },
        train: 'train',
        validation: 'valid',
        test: null,
      },
      model: bertModel('mlm'),
      loss: { type: 'sparse-categorical-crossentropy', ignoreIndex: 0 },
      metrics: [{ type: 'accuracy', ignoreIndex: 0 }],
      ...(pretrain as JsonObject),
    };
    const pretrainHooks = {
      evaluate: async (t: Trainer) => {
        const params = expectModel(t.model, Bert).encoderParameters();
        await readToHost(params.map((p) => p.variable)); // readWeights reads synchronously: the host copy first (webgpu)
        encoder = readWeights(params);
        return {};
      },
    };

    // 3. Fine-tuning on SpamAssassin, from the pretrained encoder and from scratch; 4. the bag-of-words baseline.
    const scores = async (t: Trainer, d: Dataset | null): Promise<Logs> => (d ? { ...(await binaryScores(t.model, d)) } : {});
    const bowConfig = (subset: JsonObject): JsonObject => ({
      data: { source: { type: 'spam-bow', features: b.bowFeatures, ...groups, ...subset }, train: 'train', test: 'test' },
      model: { inputShape: [b.bowFeatures], layers: [{ type: 'dense', units: 2, name: 'logistic' }] },
      loss: 'sparse-categorical-crossentropy',
      metrics: ['accuracy'],
      optimizer: { type: 'adam', lr: 0.01 },
      ...(baseline as JsonObject),
    });
    const initializeEncoder = (m: Model) => writeWeights(expectModel(m, Bert).encoderParameters(), encoder!, 'pretrained encoder');

    if (b.fewShot) {
      // The few-shot learning curves (few-shot.ts): one pretrained encoder, cached, then sizes × seeds × 3 runs.
      const grid = b.fewShot;
      const tokenizerHash = cacheKey(fs.readFileSync(tokenizer, 'utf8'));
      const { fewShot: _, ...bertRest } = b;
      const encoderKey = cacheKey({ pretrainConfig, bert: bertRest, seed, tokenizerHash, common });
      const cached = loadEncoder(encoderKey);
      const pretrainNote = cached ? `pretrained encoder reused from ${path.relative(process.cwd(), cachePath('bert', `encoder-${encoderKey}.bin`))}` : '';
      if (cached) {
        encoder = cached.weights;
        for (const [k, v] of Object.entries(cached.metrics)) metrics[`pretrain/${k}`] = v;
      } else {
        // Its checkpoints in the cache beside the encoder it will give: an interrupted pretraining continues.
        const dir = cachePath('bert', `pretrain-${encoderKey}`);
        const latest = listCheckpoints(dir).at(-1);
        const r = await run('pretrain', mergeConfig(pretrainConfig, { trainer: { checkpoint: { dir } } }), pretrainHooks, undefined, latest);
        if (!encoder)
          throw new ConfigError(
            'bert.fewShot',
            `the pretraining in ${dir} had already finished but its encoder is not in the cache: delete ${dir} to pretrain again`,
          );
        saveEncoder(encoderKey, encoder, finalEpochLogs(r.history, r.restoredEpoch));
      }
      const results = new FewShotResults(cacheKey({ encoderKey, finetune, baseline, model: rawModel, minSteps: grid.minSteps }));
      const trainCount = spamAssassinTexts('train', spamTextSchema.parse(groups)).labels.length;
      const epochsOf = (section: unknown) => ((section as { trainer?: { epochs?: number } }).trainer?.epochs ?? 1) as number;
      const batchOf = (section: unknown) => ((section as { trainer?: { batchSize?: number } }).trainer?.batchSize ?? 32) as number;
      for (const size of grid.sizes) {
        const examples = size === 'all' ? trainCount : size;
        if (examples > trainCount) throw new ConfigError('bert.fewShot.sizes', `${size} exceeds the ${trainCount} training messages`);
        for (const s of grid.seeds) {
          const subset: JsonObject = size === 'all' ? {} : { trainSubset: { size, seed: s } };
          for (const variant of FEW_SHOT_VARIANTS) {
            const id = FewShotResults.id(variant, size, s);
            if (results.done[id]) continue;
            const section = variant === 'baseline-bow' ? baseline : finetune;
            const epochs = fewShotEpochs(epochsOf(section), examples, batchOf(section), grid.minSteps);
            const trainer = { trainer: { epochs } };
            const config =
              variant === 'baseline-bow'
                ? mergeConfig(bowConfig(subset), trainer)
                : mergeConfig(
                    { data: { ...spam, source: { ...(spam.source as JsonObject), ...subset } }, model: bertModel('classifier'), ...classify },
                    trainer,
                  );
            const hooks = variant === 'finetune-pretrained' ? { evaluate: scores, initialize: initializeEncoder } : { evaluate: scores };
            const r = await run(variant, config, hooks, { seed: s, size, examples });
            results.set(id, { ...(r.test ?? {}), examples });
          }
        }
      }
      const points = curvePoints(grid, results);
      for (const k of Object.keys(metrics)) if (!k.startsWith('pretrain/')) delete metrics[k]; // the last grid run's, not the curve's
      for (const p of points) {
        metrics[`few-shot/${p.size}/${p.variant}/${p.metric}_mean`] = p.mean;
        metrics[`few-shot/${p.size}/${p.variant}/${p.metric}_std`] = p.std;
      }
      const header = [
        `# BERT few-shot learning curves (preset ${opts.preset}, encoder pretrained with seed ${seed})`,
        '',
        `${setup.scale}. Pretraining: masked-LM validation loss ${metrics['pretrain/val_loss']?.toFixed(4)}, masked-token accuracy ${pct(metrics['pretrain/val_accuracy'])}. Subsets stratified from the ${trainCount} training messages, one per seed; the test split is the whole fixed one. Fine-tuning epochs: the preset's, or more to reach ${grid.minSteps} optimizer steps.`,
      ];
      const files = await writeCurves(grid, points, header, `bert-few-shot-${opts.preset}`);
      const sep = grid.sizes.map((size) => `${size}: ${separated(points, size, 'accuracy') ? 'apart' : 'not apart'}`);
      return {
        paper: 'bert',
        preset: opts.preset,
        backend,
        seed,
        metrics,
        wallTimeSec: wall,
        mlflow: runs.at(-1) ?? { runId: '', experimentId: '', location: '' },
        commit,
        scale: `${setup.scale}; few-shot sizes ${grid.sizes.join(', ')} × seeds ${grid.seeds.join(', ')}`,
        comparison: [],
        notes: [
          ...cut,
          ...(pretrainNote ? [pretrainNote] : []),
          `few-shot curves written to ${files.map((f) => path.relative(process.cwd(), f)).join(', ')}`,
          `pretrained vs scratch, one-standard-deviation accuracy bands: ${sep.join('; ')}`,
          ...points
            .filter((p) => p.metric === 'accuracy')
            .map((p) => `${p.size} examples, ${p.variant}: accuracy ${pct(p.mean)} ± ${pct(p.std)} (${p.n} seeds)`),
        ],
      };
    }

    await run('pretrain', pretrainConfig, pretrainHooks);

    for (const pretrained of [true, false]) {
      await run(
        pretrained ? 'finetune-pretrained' : 'finetune-scratch',
        { data: spam, model: bertModel('classifier'), ...classify },
        { evaluate: scores, initialize: pretrained ? initializeEncoder : undefined },
      );
    }
    await run('baseline-bow', bowConfig({}), { evaluate: scores });

    const row = (v: string) =>
      `${v}: accuracy ${pct(metrics[`${v}/test_accuracy`])}, precision ${pct(metrics[`${v}/test_precision`])}, recall ${pct(metrics[`${v}/test_recall`])}, F1 ${pct(metrics[`${v}/test_f1`])}`;
    return {
      paper: 'bert',
      preset: opts.preset,
      backend,
      seed,
      metrics,
      wallTimeSec: wall,
      mlflow: runs.at(-1)!,
      commit,
      scale: setup.scale,
      comparison: paper.references.map((r) => ({
        metric: `${r.variant}/${r.metric}`,
        label: `${r.variant}: ${r.label}`,
        measured: metrics[`${r.variant}/${r.metric}`] ?? null,
        reference: r.value,
        source: r.source,
      })),
      notes: [
        ...cut,
        `pretraining: masked-LM validation loss ${metrics['pretrain/val_loss']?.toFixed(4)}, masked-token accuracy ${pct(metrics['pretrain/val_accuracy'])} (vocabulary ${vocab})`,
        row('finetune-pretrained'),
        row('finetune-scratch'),
        row('baseline-bow'),
      ],
    };
  },
};

const pct = (v: number | undefined) => (v === undefined ? 'n/a' : `${(v * 100).toFixed(2)} %`);

export default paper;
