/**
 * `loom paper mnist-cnn --compression distill|prune|all`: the measured trade-offs of issue 24's compression methods on
 * this CNN, each run a short, tracked training from the presets.
 * - distill: the seed's model trained as the teacher (seed 0, saved to `cache/mnist-cnn/teacher`, where the `distill`
 *   preset looks for it); the `student` preset (8 filters, 32 hidden units) trained alone and distilled from the
 *   teacher (`distill`: Hinton et al. 2015, T 4, α 0.1), one run per seed.
 * - prune: the seed's model dense and with gradual magnitude pruning (Zhu & Gupta 2017) to each sparsity, one run
 *   per seed and sparsity; the schedule scaled to the run (pruning from 10 % to 70 % of the steps, every 100 steps);
 *   the artifact's size stored densely and sparsely.
 * Every run uses the same epochs; the summary gives each group's mean and sample standard deviation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, mergeConfig, readToHost, saveModel, type JsonObject, type Model } from '../../core';
import { cachePath, gitCommit, runExperiment, type PaperMode, type PaperModeContext } from '../../runtime';
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

const WHAT = ['distill', 'prune', 'all'] as const;

export interface CompressionRun {
  group: string;
  seed: number;
  test_accuracy: number;
  test_loss: number;
  wallTimeSec: number;
  runId: string;
  params: number;
  /** Pruned runs: the fraction of zeros among the pruned (masked) weights, and among all weights. */
  sparsity?: Sparsity;
  /** Bytes of the saved model (model.json + weights.bin): float32 dense, and (pruned runs) masks as bits or sparse. */
  bytes?: ArtifactBytes;
}

export function compressionMode(presets: Record<string, JsonObject>): PaperMode {
  return {
    flag: 'compression',
    value: 'WHAT',
    help: "measure compression instead of training one preset: distill (student alone vs distilled from the seed's model), prune (dense vs magnitude-pruned), or all; --json FILE writes every run and the summary",
    json: true,
    options: {
      epochs: { value: 'N', type: 'integer', min: 1, help: 'epochs of every run, teacher included (default: 2)' },
      seeds: { value: 'K', type: 'integer', min: 1, help: 'seeds 0..K-1 per group (default: 3)' },
      sparsities: { value: 'LIST', help: 'comma-separated percentages to prune to (default: 50,75,90,95)' },
      scope: {
        value: 'layer|global',
        help: 'prune each kernel to the sparsity (layer) or the smallest magnitudes of all kernels together (global) (default: layer)',
      },
      'train-limit': { value: 'N', type: 'integer', min: 100, help: 'use the first N training images, a tenth of them for validation (default: all 60,000)' },
      'test-limit': { value: 'N', type: 'integer', min: 1, help: 'use the first N test images (default: all 10,000)' },
    },
    run: (ctx) => runCompression(ctx, presets),
  };
}

async function runCompression(ctx: PaperModeContext, presets: Record<string, JsonObject>): Promise<void> {
  const what = ctx.input as (typeof WHAT)[number];
  if (!WHAT.includes(what)) throw new ConfigError('--compression', `expected one of ${WHAT.join(', ')}, got "${ctx.input}"`);
  const epochs = Number(ctx.options.epochs ?? 2);
  const seeds = Array.from({ length: Number(ctx.options.seeds ?? 3) }, (_, i) => i);
  const sparsities = parseSparsities(String(ctx.options.sparsities ?? '50,75,90,95'));
  const scope = String(ctx.options.scope ?? 'layer');
  if (scope !== 'layer' && scope !== 'global') throw new ConfigError('--scope', `expected layer or global, got "${scope}"`);
  const data: JsonObject = {};
  if (ctx.options['train-limit'] !== undefined) data.trainLimit = Number(ctx.options['train-limit']);
  if (ctx.options['test-limit'] !== undefined) data.testLimit = Number(ctx.options['test-limit']);
  const base = (preset: string, seed: number, patch: JsonObject = {}) =>
    mergeConfig(mergeConfig(presets[preset]!, { seed, data, trainer: { epochs }, callbacks: [] }), patch);
  const trainImages = Math.min((data.trainLimit as number | undefined) ?? 60000, 60000);
  const steps = epochs * Math.ceil((trainImages - Math.floor(trainImages * 0.1)) / 32);
  const { beginStep, frequency, prunings } = pruningSchedule(steps);
  const runs: CompressionRun[] = [];
  const commit = gitCommit(); // the code that runs: read now, before a long comparison, not at its end
  let backend = '';
  const teacher = cachePath('mnist-cnn', 'teacher');

  const train = async (group: string, seed: number, config: JsonObject, after?: (model: Model) => Partial<CompressionRun>) => {
    let extra: Partial<CompressionRun> = {};
    let params = 0;
    const run = await runExperiment({
      registry: ctx.registry,
      config,
      trackingUri: ctx.trackingUri,
      runName: `mnist-cnn-compression-${group}-seed${seed}`,
      tags: { paper: 'mnist-cnn', mode: 'compression', group },
      log: () => undefined,
      evaluate: async (trainer) => {
        await readToHost(trainer.model); // saveModel and the sparsity count read the weights and masks synchronously (webgpu: fetch them first)
        params = trainer.model.countParams();
        extra = after?.(trainer.model) ?? {};
        return {};
      },
    });
    backend = run.backend;
    const r: CompressionRun = {
      group,
      seed,
      test_accuracy: run.test!.accuracy!,
      test_loss: run.test!.loss!,
      wallTimeSec: run.wallTimeSec,
      runId: run.run.runId,
      params,
      ...extra,
    };
    runs.push(r);
    ctx.out(
      `${group.padEnd(14)} seed ${seed}  test accuracy ${(100 * r.test_accuracy).toFixed(2)} %  ${r.wallTimeSec.toFixed(0)} s` +
        (r.sparsity ? `  sparsity ${(100 * r.sparsity.pruned).toFixed(1)} % of kernels` : '') +
        (r.bytes ? `  ${r.bytes.dense} B dense${r.bytes.sparse ? `, ${r.bytes.sparse} B sparse` : ''}` : ''),
    );
    return r;
  };

  // The dense model: the pruning baseline, and (seed 0) the teacher, saved where the distill preset finds it.
  const denseSeeds = what === 'distill' ? [0] : seeds;
  for (const seed of denseSeeds) {
    await train('dense', seed, base('full', seed), (model) => {
      if (seed === 0) saveModel(model, teacher);
      return { bytes: artifactSizes(model) };
    });
  }
  if (what !== 'prune') {
    for (const seed of seeds) await train('student', seed, base('student', seed));
    for (const seed of seeds) await train('distilled', seed, base('distill', seed, { loss: { teacher } }));
  }
  if (what !== 'distill') {
    for (const s of sparsities) {
      for (const seed of seeds) {
        const pruning = { type: 'magnitude-pruning', finalSparsity: s, beginStep, frequency, prunings, scope };
        await train(`pruned-${Math.round(s * 100)}`, seed, mergeConfig(base('prune-90', seed), { callbacks: [pruning] }), (model) => ({
          sparsity: sparsityOf(model),
          bytes: artifactSizes(model),
        }));
      }
    }
  }
  const summary = summarize(runs);
  ctx.out('');
  ctx.out('group           n  test accuracy mean ± sd (min-max)');
  for (const [g, s] of Object.entries(summary)) {
    const sd = s.std === null ? '' : ` ± ${(100 * s.std).toFixed(2)}`;
    ctx.out(`${g.padEnd(14)} ${String(s.n).padStart(2)}  ${(100 * s.mean).toFixed(2)}${sd} % (${(100 * s.min).toFixed(2)}-${(100 * s.max).toFixed(2)})`);
  }
  if (ctx.json) {
    const record = {
      paper: 'mnist-cnn',
      mode: 'compression',
      what,
      epochs,
      seeds,
      trainLimit: data.trainLimit ?? null,
      testLimit: data.testLimit ?? null,
      pruningSchedule: what === 'distill' ? null : { beginStep, frequency, prunings, stepsPerRun: steps, scope },
      backend,
      machine: machineLine(),
      commit,
      date: new Date().toISOString(),
      summary,
      runs,
    };
    fs.mkdirSync(path.dirname(path.resolve(ctx.json)), { recursive: true });
    fs.writeFileSync(ctx.json, `${JSON.stringify(record, null, 2)}\n`);
    ctx.out(`wrote ${ctx.json}`);
  }
}
