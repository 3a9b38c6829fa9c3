/**
 * What the papers' compression sweeps share (`loom paper mnist-cnn --compression`, `loom paper bert --compression`):
 * the pruning schedule scaled to a run, the sparsity reached, the artifact's size stored densely and sparsely, and
 * each group's mean and spread.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, saveModel, type Model } from '../core';

/** The fraction of zeros among the pruned (masked) weights, and among all weights. */
export interface Sparsity {
  pruned: number;
  overall: number;
  /** Zeros per masked parameter, by name: how a `global` pruning spread the sparsity over the layers. */
  byParameter: Record<string, number>;
}

/** Bytes of the saved model (model.json + weights.bin): float32 dense, and (pruned models) masks as bits or sparse. */
export interface ArtifactBytes {
  dense: number;
  maskBits?: number;
  sparse?: number;
}

const sizeOf = (dir: string) => ['model.json', 'weights.bin'].reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);

/** Saves `model` in each storage into a scratch folder and returns the sizes. Reads the weights synchronously. */
export function artifactSizes(model: Model): ArtifactBytes {
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

/** Zeros among the masked weights of `model` and among all its weights (read synchronously). */
export function sparsityOf(model: Model): Sparsity {
  let zeros = 0;
  let masked = 0;
  let allZeros = 0;
  let all = 0;
  const byParameter: Record<string, number> = {};
  for (const p of model.weights()) {
    const v = p.variable.dataSync();
    let z = 0;
    for (let i = 0; i < v.length; i++) if (v[i] === 0) z++;
    all += v.length;
    allZeros += z;
    if (p.mask) {
      masked += v.length;
      zeros += z;
      byParameter[p.name] = z / v.length;
    }
  }
  return { pruned: masked ? zeros / masked : 0, overall: allZeros / all, byParameter };
}

export interface GroupSummary {
  n: number;
  mean: number;
  std: number | null;
  min: number;
  max: number;
}

/** Mean and sample standard deviation (n − 1) of `key` (test accuracy by default) per group, in order of first appearance. */
export function summarize<R extends { group: string }>(runs: R[], key: keyof R = 'test_accuracy' as keyof R): Record<string, GroupSummary> {
  const groups = [...new Set(runs.map((r) => r.group))];
  return Object.fromEntries(
    groups.map((g) => {
      const a = runs.filter((r) => r.group === g).map((r) => r[key] as number);
      const mean = a.reduce((s, x) => s + x, 0) / a.length;
      const std = a.length > 1 ? Math.sqrt(a.reduce((s, x) => s + (x - mean) ** 2, 0) / (a.length - 1)) : null;
      return [g, { n: a.length, mean, std, min: Math.min(...a), max: Math.max(...a) }];
    }),
  );
}

/** `--sparsities 50,75,90,95`: percentages strictly between 0 and 100, as fractions. */
export function parseSparsities(list: string, flag = '--sparsities'): number[] {
  return list.split(',').map((s) => {
    const v = Number(s) / 100;
    if (!(v > 0 && v < 1)) throw new ConfigError(flag, `expected percentages between 0 and 100 (exclusive), got "${s}"`);
    return v;
  });
}

/**
 * The `magnitude-pruning` schedule (Zhu & Gupta 2017) scaled to a run of `steps` optimizer steps: pruning from 10 %
 * to 70 % of the steps, every `maxFrequency` steps at most and at least four times, so the last 30 % of the run
 * trains the pruned model.
 */
export function pruningSchedule(steps: number, maxFrequency = 100): { beginStep: number; frequency: number; prunings: number; stepsPerRun: number } {
  const beginStep = Math.floor(0.1 * steps);
  const frequency = Math.max(1, Math.min(maxFrequency, Math.floor((0.6 * steps) / 4)));
  const prunings = Math.max(1, Math.floor((0.6 * steps) / frequency));
  return { beginStep, frequency, prunings, stepsPerRun: steps };
}

/** The machine a record was measured on: cores × model, platform, Node. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown'}, ${os.platform()} ${os.arch()}, Node ${process.versions.node}`;
}
