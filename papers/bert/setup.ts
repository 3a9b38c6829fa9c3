/**
 * What every way of running the BERT paper starts from (the training run and the `--compression` mode): the preset
 * merged with the overrides and checked, the WordPiece vocabulary (trained once into ./cache/bert/), the model spec
 * per head, and the SpamAssassin fine-tuning's data and config.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { ConfigError, mergeConfig, writeFileAtomic, type JsonObject } from '../../core';
import { cachePath } from '../../runtime';
import { corpusTexts, CORPORA } from '../../plugins/data/text-corpus';
import { WordPiece } from '../../plugins/tokenizers/wordpiece';
import { fewShotSchema } from './few-shot';

export const bertSchema = z.object({
  vocabSize: z.number().int().positive(),
  seqLen: z.number().int().min(8),
  tokenizerChars: z.number().int().positive(),
  /** Characters of the pretraining text (null: all of it). */
  pretrainChars: z.number().int().positive().nullable(),
  bowFeatures: z.number().int().positive(),
  /**
   * Masked-LM pretraining in BERT's gathered form (max_predictions_per_seq): the head predicts at most this many
   * selected positions per sequence instead of computing logits at every position; unset: every position.
   */
  maxPredictions: z.number().int().positive().optional(),
  /** BERT's dupe_factor: each pretraining sequence masked this many ways (one epoch = that many passes). */
  dupeFactor: z.number().int().positive().optional(),
  /** SpamAssassin groups to use (smoke: a small ham and a small spam group). */
  groups: z.array(z.string()).optional(),
  /** The few-shot learning curves (few-shot.ts) instead of one fine-tuning on the whole training split. */
  fewShot: fewShotSchema.optional(),
});
export type BertOptions = z.output<typeof bertSchema>;

export interface BertSetup {
  b: BertOptions;
  /** The preset's sections other than bert, model, pretrain, finetune and baseline (experiment, seed, ...). */
  common: JsonObject;
  rawModel: JsonObject;
  pretrain: JsonObject;
  finetune: JsonObject;
  baseline: JsonObject;
  /** The WordPiece vocabulary's file and size. */
  tokenizer: string;
  vocab: number;
  /** The `bert` model spec with the given head. */
  bertModel(head: 'mlm' | 'classifier'): JsonObject;
  /** The SpamAssassin data section (train and test splits) and the groups option shared with the baseline. */
  spam: JsonObject;
  groups: JsonObject;
  /** The classifier's fine-tuning config without data and model: loss, metrics and the preset's `finetune` section. */
  classify: JsonObject;
  /** How the preset differs from BERT-base, in words (the `scale` tag). */
  scale: string;
}

/** The preset `preset` of `presets` with `overrides` merged in, its vocabulary trained if missing. */
export function bertSetup(presets: Record<string, JsonObject>, preset: string, overrides: JsonObject = {}): BertSetup {
  const base = presets[preset];
  if (!base) throw new ConfigError('--preset', `paper "bert" has no preset "${preset}"; presets: ${Object.keys(presets).join(', ')}`);
  const { bert: rawBert, model: rawModel, pretrain, finetune, baseline, ...common } = mergeConfig(base, overrides);
  const parsed = bertSchema.strict().safeParse(rawBert);
  if (!parsed.success) throw new ConfigError(`bert.${parsed.error.issues[0]!.path.join('.')}`, parsed.error.issues[0]!.message);
  const b = parsed.data;

  // The WordPiece vocabulary, trained on the pretraining corpora and saved for the data plugins. It is a cache
  // (./cache/bert/), not a checkpoint: the checkpoint root holds run folders only. One trained where earlier
  // versions kept it (./checkpoints/bert/) is moved over rather than trained again.
  const name = `wordpiece-${preset}-${b.vocabSize}.json`;
  const tokenizer = cachePath('bert', name);
  const legacy = path.resolve('checkpoints', 'bert', name);
  if (!fs.existsSync(tokenizer) && fs.existsSync(legacy)) {
    writeFileAtomic(tokenizer, fs.readFileSync(legacy));
    fs.rmSync(legacy);
    if (fs.readdirSync(path.dirname(legacy)).length === 0) fs.rmdirSync(path.dirname(legacy));
  }
  if (!fs.existsSync(tokenizer)) {
    const text = corpusTexts(CORPORA).join('\n\n').slice(0, b.tokenizerChars);
    writeFileAtomic(tokenizer, JSON.stringify(WordPiece.train([text], { vocabSize: b.vocabSize }).getState()));
  }
  const vocab = (JSON.parse(fs.readFileSync(tokenizer, 'utf8')) as { vocab: string[] }).vocab.length;
  // The sections as the preset gives them (not defaulted): the few-shot caches are keyed by them.
  const model = rawModel as JsonObject;
  const groups: JsonObject = b.groups ? { groups: b.groups } : {};
  return {
    b,
    common,
    rawModel: model,
    pretrain: pretrain as JsonObject,
    finetune: finetune as JsonObject,
    baseline: baseline as JsonObject,
    tokenizer,
    vocab,
    bertModel: (head) => ({
      type: 'bert',
      name: 'bert',
      vocabSize: vocab,
      maxLength: b.seqLen,
      head,
      ...(head === 'mlm' && b.maxPredictions ? { maxPredictions: b.maxPredictions } : {}),
      ...(model ?? {}),
    }),
    spam: { source: { type: 'spam-assassin', tokenizer, maxLen: b.seqLen, ...groups }, train: 'train', test: 'test' },
    groups,
    classify: { loss: 'sparse-categorical-crossentropy', metrics: ['accuracy'], ...(finetune as JsonObject) },
    scale: scaleLine(preset, b, model),
  };
}

function scaleLine(preset: string, b: BertOptions, model: JsonObject): string {
  return `SMALLER THAN BERT-base (preset ${preset}): ${model?.layers} layer(s), d_model ${model?.dModel}, ${model?.numHeads} heads, sequences of ${b.seqLen}, WordPiece ${b.vocabSize}, pretraining on ${b.pretrainChars ?? 'all'} characters${b.groups ? `, SpamAssassin groups ${b.groups.join(' + ')} only` : ''}`;
}
