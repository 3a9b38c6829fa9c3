/**
 * BERT's central claim where a small model can show it: pretraining helps most when labelled examples are few
 * (Devlin et al. 2018, §5.4 and Fig. 2 compare model sizes on small GLUE sets; the few-shot learning curve is the
 * standard test of the claim, e.g. Howard & Ruder 2018, Fig. 3). For each labelled-set size and seed, a stratified
 * subset of the SpamAssassin training split is drawn (`spam-assassin`'s `trainSubset`), and the classifier is
 * fine-tuned from the pretrained encoder and from scratch, and the bag-of-words baseline is trained, all on the same
 * messages; the test split is always the whole fixed one. One pretrained encoder serves every fine-tuning.
 *
 * The grid is long (sizes × seeds × 3 runs after pretraining), so it is resumable at the grain of runs: the
 * pretrained encoder is cached (cache/bert/encoder-<key>.*, keyed by everything that determines it) and each
 * finished run's scores are kept (cache/bert/few-shot-<key>.json); running the same preset again skips what is done.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { packWeights, unpackWeights, writeFileAtomic, type Logs, type NamedWeights, type WeightEntry } from '../../core';
import { cachePath, examplesCurvesSvg, meanStd } from '../../runtime';

export const fewShotSchema = z
  .object({
    /** Labelled-set sizes (messages drawn from the training split), `"all"` for the whole split. */
    sizes: z.array(z.union([z.number().int().min(2), z.literal('all')])).min(1),
    /** One subset (and one initialization) per seed and size. */
    seeds: z.array(z.number().int()).min(1),
    /**
     * At least this many optimizer steps per fine-tuning: the preset's epochs over 50 messages are 6 steps, too few
     * to fit anything, so small sets get more epochs (epochs = max(preset epochs, ⌈minSteps / steps per epoch⌉)).
     * Applied alike to the pretrained and the scratch classifier and to the baseline.
     */
    minSteps: z.number().int().min(0).default(0),
    /** Where the curve's table, plot and data are written (relative to the working directory). */
    out: z.string().default('results'),
  })
  .strict();
export type FewShotOptions = z.output<typeof fewShotSchema>;

export const FEW_SHOT_VARIANTS = ['finetune-pretrained', 'finetune-scratch', 'baseline-bow'] as const;
export type FewShotVariant = (typeof FEW_SHOT_VARIANTS)[number];

/** A stable key of everything that determines a cached result (sorted keys, so field order does not matter). */
export function cacheKey(value: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canonical(value)))
    .digest('hex')
    .slice(0, 16);
}

/** The pretrained encoder kept by key: its weights and the pretraining's validation metrics. */
export function loadEncoder(key: string): { weights: NamedWeights; metrics: Logs } | null {
  const meta = cachePath('bert', `encoder-${key}.json`);
  const bin = cachePath('bert', `encoder-${key}.bin`);
  if (!fs.existsSync(meta) || !fs.existsSync(bin)) return null;
  const { entries, metrics } = JSON.parse(fs.readFileSync(meta, 'utf8')) as { entries: WeightEntry[]; metrics: Logs };
  return { weights: unpackWeights(entries, new Uint8Array(fs.readFileSync(bin)), bin), metrics };
}

export function saveEncoder(key: string, weights: NamedWeights, metrics: Logs): void {
  const { entries, data } = packWeights(weights);
  writeFileAtomic(cachePath('bert', `encoder-${key}.bin`), data); // the weights first: the .json marks it complete
  writeFileAtomic(cachePath('bert', `encoder-${key}.json`), JSON.stringify({ entries, metrics }));
}

/** Scores of the finished runs of one grid, by `variant/size/seed`. */
export class FewShotResults {
  readonly file: string;
  readonly done: Record<string, Logs & { examples: number }>;

  constructor(key: string) {
    this.file = cachePath('bert', `few-shot-${key}.json`);
    this.done = fs.existsSync(this.file) ? JSON.parse(fs.readFileSync(this.file, 'utf8')) : {};
  }

  static id(variant: FewShotVariant, size: number | 'all', seed: number): string {
    return `${variant}/${size}/${seed}`;
  }

  set(id: string, scores: Logs & { examples: number }): void {
    this.done[id] = scores;
    writeFileAtomic(this.file, JSON.stringify(this.done, null, 1));
  }
}

/** Epochs for `examples` labelled messages in batches of `batchSize`: the preset's, or more to reach `minSteps`. */
export function fewShotEpochs(presetEpochs: number, examples: number, batchSize: number, minSteps: number): number {
  return Math.max(presetEpochs, Math.ceil(minSteps / Math.ceil(examples / batchSize)));
}

export interface CurvePoint {
  size: number | 'all';
  examples: number;
  variant: FewShotVariant;
  metric: 'accuracy' | 'f1';
  mean: number;
  std: number;
  n: number;
}

/** The learning curves: per size, variant and metric, the mean and standard deviation over the finished seeds. */
export function curvePoints(o: FewShotOptions, results: FewShotResults): CurvePoint[] {
  const points: CurvePoint[] = [];
  for (const size of o.sizes)
    for (const variant of FEW_SHOT_VARIANTS) {
      const runs = o.seeds.map((s) => results.done[FewShotResults.id(variant, size, s)]).filter((r) => r !== undefined);
      if (runs.length === 0) continue;
      for (const metric of ['accuracy', 'f1'] as const) {
        const { mean, std } = meanStd(runs.map((r) => r[metric]!));
        points.push({ size, examples: runs[0]!.examples, variant, metric, mean, std, n: runs.length });
      }
    }
  return points;
}

/** Whether pretrained's one-standard-deviation band lies wholly above scratch's at a size (the issue's goal). */
export function separated(points: CurvePoint[], size: number | 'all', metric: 'accuracy' | 'f1'): boolean | null {
  const p = points.find((x) => x.size === size && x.variant === 'finetune-pretrained' && x.metric === metric);
  const s = points.find((x) => x.size === size && x.variant === 'finetune-scratch' && x.metric === metric);
  return p && s ? p.mean - p.std > s.mean + s.std : null;
}

const pct = (v: number) => (v * 100).toFixed(2);

/** The curve as a Markdown table, an SVG plot (log-scale x, mean ± one standard deviation) and JSON, under `o.out`. */
export async function writeCurves(o: FewShotOptions, points: CurvePoint[], header: string[], name: string): Promise<string[]> {
  const rows = o.sizes.map((size) => {
    const cell = (variant: FewShotVariant, metric: 'accuracy' | 'f1') => {
      const p = points.find((x) => x.size === size && x.variant === variant && x.metric === metric);
      return p ? `${pct(p.mean)} ± ${pct(p.std)} (${p.n})` : 'not run';
    };
    const examples = points.find((x) => x.size === size)?.examples ?? size;
    const sep = separated(points, size, 'accuracy');
    return `| ${size === 'all' ? `all (${examples})` : size} | ${FEW_SHOT_VARIANTS.map((v) => `${cell(v, 'accuracy')} | ${cell(v, 'f1')}`).join(' | ')} | ${sep === null ? 'n/a' : sep ? 'yes' : 'no'} |`;
  });
  const md = [
    ...header,
    '',
    'Test accuracy and F1 of the spam class (%), mean ± standard deviation over seeds (number of seeds):',
    '',
    '| labelled examples | pretrained: accuracy | pretrained: F1 | scratch: accuracy | scratch: F1 | bag-of-words: accuracy | bag-of-words: F1 | pretrained above scratch, 1-σ bands apart (accuracy) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ];
  const svg = await examplesCurvesSvg('BERT few-shot: test scores against labelled examples (mean ± 1 s.d. over seeds)', points);
  const dir = path.resolve(o.out);
  fs.mkdirSync(dir, { recursive: true });
  const files = ['md', 'svg', 'json'].map((ext) => path.join(dir, `${name}.${ext}`));
  fs.writeFileSync(files[1]!, svg);
  fs.writeFileSync(files[0]!, `${md.join('\n')}\n\n![few-shot curves](${name}.svg)\n`);
  fs.writeFileSync(files[2]!, `${JSON.stringify({ points }, null, 1)}\n`);
  return files;
}
