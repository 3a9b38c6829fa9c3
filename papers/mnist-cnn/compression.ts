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
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, mergeConfig, readToHost, saveModel, type JsonObject, type Model } from '../../core';
import { cachePath, gitCommit, runExperiment, type PaperMode, type PaperModeContext } from '../../runtime';

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
  sparsity?: { pruned: number; overall: number };
  /** Bytes of the saved model (model.json + weights.bin): float32 dense, and (pruned runs) masks as bits or sparse. */
  bytes?: { dense: number; maskBits?: number; sparse?: number };
}

const sizeOf = (dir: string) => ['model.json', 'weights.bin'].reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);

/** Saves `model` in each storage into a scratch folder and returns the sizes. */
function artifactSizes(model: Model): CompressionRun['bytes'] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-compression-'));
  try {
    const masked = model.weights().some((p) => p.mask);
    if (!masked) {
      saveModel(model, path.join(dir, 'dense'));
      return { dense: sizeOf(path.join(dir, 'dense')) };
    }
    saveModel(model, path.join(dir, 'bits'), { maskStorage: 'dense' });
    saveModel(model, path.join(dir, 'sparse'), { maskStorage: 'sparse' });
    // The same weights without masks: float32 dense, as an unpruned model is stored.
    const w = fs.statSync(path.join(dir, 'bits', 'weights.bin')).size;
    const words = model.weights().reduce((a, p) => a + p.variable.size, 0);
    return { dense: sizeOf(path.join(dir, 'bits')) - w + 4 * words, maskBits: sizeOf(path.join(dir, 'bits')), sparse: sizeOf(path.join(dir, 'sparse')) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sparsityOf(model: Model): CompressionRun['sparsity'] {
  let zeros = 0;
  let masked = 0;
  let allZeros = 0;
  let all = 0;
  for (const p of model.weights()) {
    const v = p.variable.dataSync();
    let z = 0;
    for (let i = 0; i < v.length; i++) if (v[i] === 0) z++;
    all += v.length;
    allZeros += z;
    if (p.mask) {
      masked += v.length;
      zeros += z;
    }
  }
  return { pruned: masked ? zeros / masked : 0, overall: allZeros / all };
}

/** Mean and sample standard deviation (n − 1) of each group's test accuracy. */
export function summarize(runs: CompressionRun[]): Record<string, { n: number; mean: number; std: number | null; min: number; max: number }> {
  const groups = [...new Set(runs.map((r) => r.group))];
  return Object.fromEntries(
    groups.map((g) => {
      const a = runs.filter((r) => r.group === g).map((r) => r.test_accuracy);
      const mean = a.reduce((s, x) => s + x, 0) / a.length;
      const std = a.length > 1 ? Math.sqrt(a.reduce((s, x) => s + (x - mean) ** 2, 0) / (a.length - 1)) : null;
      return [g, { n: a.length, mean, std, min: Math.min(...a), max: Math.max(...a) }];
    }),
  );
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
  const sparsities = String(ctx.options.sparsities ?? '50,75,90,95')
    .split(',')
    .map((s) => {
      const v = Number(s) / 100;
      if (!(v > 0 && v < 1)) throw new ConfigError('--sparsities', `expected percentages between 0 and 100 (exclusive), got "${s}"`);
      return v;
    });
  const data: JsonObject = {};
  if (ctx.options['train-limit'] !== undefined) data.trainLimit = Number(ctx.options['train-limit']);
  if (ctx.options['test-limit'] !== undefined) data.testLimit = Number(ctx.options['test-limit']);
  const base = (preset: string, seed: number, patch: JsonObject = {}) =>
    mergeConfig(mergeConfig(presets[preset]!, { seed, data, trainer: { epochs }, callbacks: [] }), patch);
  const trainImages = Math.min((data.trainLimit as number | undefined) ?? 60000, 60000);
  const steps = epochs * Math.ceil((trainImages - Math.floor(trainImages * 0.1)) / 32);
  const beginStep = Math.floor(0.1 * steps);
  const frequency = Math.max(1, Math.min(100, Math.floor((0.6 * steps) / 4)));
  const prunings = Math.max(1, Math.floor((0.6 * steps) / frequency));
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
      runName: `mnist-cnn-compression-${group}-seed${seed}`,
      tags: { paper: 'mnist-cnn', mode: 'compression', group },
      log: () => undefined,
      evaluate: async (trainer) => {
        await readToHost(); // saveModel and the sparsity count read the weights and masks synchronously (webgpu: fetch them first)
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
        const pruning = { type: 'magnitude-pruning', finalSparsity: s, beginStep, frequency, prunings, scope: 'layer' };
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
    const cpus = os.cpus();
    const record = {
      paper: 'mnist-cnn',
      mode: 'compression',
      what,
      epochs,
      seeds,
      trainLimit: data.trainLimit ?? null,
      testLimit: data.testLimit ?? null,
      pruningSchedule: what === 'distill' ? null : { beginStep, frequency, prunings, stepsPerRun: steps },
      backend,
      machine: `${cpus.length} × ${cpus[0]?.model ?? 'unknown'}, ${os.platform()} ${os.arch()}, Node ${process.versions.node}`,
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
