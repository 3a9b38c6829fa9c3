/**
 * The variational-LSTM smoke preset as a user runs it: three variants and MC dropout train and are scored, with
 * perplexity far below the vocabulary size (what a model that learned nothing would give).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clipGradients } from '../../core';
import { testRegistry } from '../../test/harness';
import { recipeDifferences } from '../../cli/report';
import { readStore } from '../../core/mlflow-store';
import paper, { lmLayers } from '.';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'cli/bin.mjs');

describe('variational-lstm', () => {
  it('builds each variant as the paper describes: dropout layers, variational masks, recurrent and embedding dropout', () => {
    const o = { units: 8, layers: 2, init: 0.1, dropout: 0.5, recurrentDropout: 0.2, embeddingDropout: 0.1, variants: [], mcSamples: 0 };
    const types = (v: 'none' | 'naive' | 'variational') => lmLayers(v, o, 50).map((l) => (l as { type: string }).type);
    expect(types('none')).toEqual(['embedding', 'lstm', 'lstm', 'dense']);
    expect(types('naive')).toEqual(['embedding', 'dropout', 'lstm', 'dropout', 'lstm', 'dropout', 'dense']);
    expect(types('variational')).toEqual(['embedding', 'variational-dropout', 'lstm', 'variational-dropout', 'lstm', 'variational-dropout', 'dense']);
    const lstm = (v: 'naive' | 'variational') =>
      lmLayers(v, o, 50).find((l) => (l as { type: string }).type === 'lstm') as unknown as { recurrentDropout: number; stateful: boolean };
    expect([lstm('naive').recurrentDropout, lstm('variational').recurrentDropout, lstm('variational').stateful]).toEqual([0, 0.2, true]);
    expect((lmLayers('variational', o, 50)[0] as unknown as { dropout: number }).dropout).toBe(0.1);
  });

  it("medium's SGD is Zaremba et al.'s: lr 1, clipping at 5 and weight decay 1e-7 of a loss summed over the 35 steps", async () => {
    // Zaremba et al.'s code (and Gal's, built on it) backpropagates the batch-mean cross-entropy of every one of the
    // `unroll` time steps, i.e. the gradient of their sum, then clips its global norm at 5 and steps with lr 1 (weight
    // decay 1e-7 in Gal's). loom's loss is the mean over all batch × unroll tokens, whose gradient is 1/unroll of that:
    // the same step needs lr × unroll, clipNorm / unroll and weightDecay / unroll. Checked on a random softmax layer.
    const medium = JSON.parse(fs.readFileSync(path.join(repo, 'papers/variational-lstm/presets/medium.json'), 'utf8'));
    const T = medium.data.source.unroll as number;
    expect(T).toBe(35);
    expect(medium.optimizer.lr).toBeCloseTo(1 * T, 12);
    expect(medium.schedule.lr).toBe(medium.optimizer.lr);
    expect(medium.trainer.clipNorm).toBeCloseTo(5 / T, 15);
    expect(medium.optimizer.weightDecay).toBeCloseTo(1e-7 / T, 20);
    const registry = await testRegistry();
    const loss = registry.create('loss', 'sparse-categorical-crossentropy');
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 2, max: 5 }),
        fc.constantFrom(1e-3, 5),
        fc.constantFrom(0, 0.1),
        fc.integer({ min: 0, max: 1e6 }),
        (batch, unroll, clip, decay, seed) => {
          const [dim, vocab] = [4, 6];
          const x = tf.randomNormal([batch * unroll, dim], 0, 1, 'float32', seed);
          const y = tf.randomUniform([batch * unroll], 0, vocab, 'int32', seed + 1);
          const w0 = tf.randomNormal([dim, vocab], 0, 1, 'float32', seed + 2);
          const stepped = (lr: number, clipNorm: number, weightDecay: number, f: (z: tf.Tensor) => tf.Scalar) => {
            const grads = { w: tf.grad((w: tf.Tensor) => f(tf.matMul(x, w)))(w0) };
            const clipped = clipGradients(grads, { clipNorm });
            const opt = registry.create('optimizer', { type: 'sgd', lr, weightDecay, noDecay: [] });
            const p = { name: 'w', variable: tf.variable(w0.clone()), role: 'kernel' as const, trainable: true };
            opt.step([p], clipped);
            const out = p.variable.dataSync();
            for (const t of [grads.w, clipped.w, p.variable]) t.dispose();
            opt.dispose();
            return out;
          };
          // Their loss: Σ over time of the batch mean; rows are [batch, time] in row-major order.
          const summed = (z: tf.Tensor) => {
            const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(z), tf.oneHot(y, vocab)), 1));
            return tf.sum(tf.mean(tf.reshape(nll, [batch, unroll]), 0)) as tf.Scalar;
          };
          const want = stepped(1, clip, decay, summed);
          const got = stepped(unroll, clip / unroll, decay / unroll, (z) => loss.compute(y, z));
          for (const t of [x, y, w0]) t.dispose();
          got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1e-5 * (1 + Math.abs(want[i]!))));
        },
      ),
      { numRuns: 30 },
    );
  });

  it('smoke: every variant trains and is scored, with MC dropout', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-lstm-'));
    try {
      const out = execFileSync(process.execPath, [cli, 'paper', 'variational-lstm', '--preset', 'smoke', '--json', 'summary.json'], { cwd, encoding: 'utf8' });
      const { metrics } = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
      // The smoke vocabulary has 789 words: a model that learned nothing scores about 789; one epoch gives ~100.
      for (const v of ['none', 'naive', 'variational', 'variational-mc']) expect(metrics[`${v}/test_perplexity`], v).toBeLessThan(300);
      expect(out).toMatch(/measured test perplexity, best first: /);
      expect(out).toMatch(/SMALLER THAN THE PAPER/);
      // --mc-dropout T scores the trained variational run again: with the run's 2 samples, its own MC number exactly,
      // and weight scaling as its test perplexity (a loss computed another way: to 1e-5); more samples, another value.
      const again = (t: string) => {
        execFileSync(process.execPath, [cli, 'paper', 'variational-lstm', '--preset', 'smoke', '--mc-dropout', t, '--json', `mc${t}.json`], {
          cwd,
          encoding: 'utf8',
        });
        return JSON.parse(fs.readFileSync(path.join(cwd, `mc${t}.json`), 'utf8'));
      };
      const mc2 = again('2');
      expect(mc2.mc).toBe(metrics['variational-mc/test_perplexity']);
      expect(Math.abs(mc2.weightScaling / metrics['variational/test_perplexity'] - 1)).toBeLessThan(1e-5);
      const mc3 = again('3');
      expect(mc3.weightScaling).toBe(mc2.weightScaling);
      expect(mc3.mc).not.toBe(mc2.mc);
      const bad = spawnSync(process.execPath, [cli, 'paper', 'variational-lstm', '--preset', 'smoke', '--mc-dropout', '0'], { cwd, encoding: 'utf8' });
      expect([bad.status, bad.stderr]).toEqual([2, expect.stringMatching(/--mc-dropout.*positive integer/)]);
      // The claim's `varies` covers what the variants differ in: the network (dropout layers and rates) only.
      const runs = readStore(path.join(cwd, 'mlruns')).map((r) => ({
        label: r.tags.variant!,
        config: JSON.parse(fs.readFileSync(path.join(r.dir!, 'artifacts', 'config.json'), 'utf8')),
      }));
      expect(runs.map((r) => r.label).sort()).toEqual(['naive', 'none', 'variational']);
      expect(recipeDifferences(runs, paper.claims![0]!.varies)).toEqual([]);
      expect(recipeDifferences(runs, []).length).toBeGreaterThan(0);
      expect(recipeDifferences(runs, []).every((d) => d.startsWith('model.'))).toBe(true);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('--resume latest resumes each variant from its own run: a finished one keeps its results, a missing one starts', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-lstm-resume-'));
    try {
      const paper = (...args: string[]) =>
        execFileSync(process.execPath, [cli, 'paper', 'variational-lstm', '--preset', 'smoke', '--set', 'lm.mcSamples=0', ...args], { cwd, encoding: 'utf8' });
      paper('--set', 'lm.variants=["none"]', '--json', 'first.json');
      const first = JSON.parse(fs.readFileSync(path.join(cwd, 'first.json'), 'utf8'));
      // Before: the one checkpoint that --resume latest found (the none run's) was handed to every variant.
      const out = paper('--set', 'lm.variants=["none","naive"]', '--resume', 'latest', '--json', 'both.json');
      const both = JSON.parse(fs.readFileSync(path.join(cwd, 'both.json'), 'utf8'));
      expect(out).toMatch(/already FINISHED/);
      expect(both.metrics['none/test_perplexity']).toBe(first.metrics['none/test_perplexity']);
      expect(both.metrics['naive/test_perplexity']).toBeLessThan(300);
      const runs = fs.readdirSync(path.join(cwd, 'mlruns', first.mlflowExperimentId)).filter((d) => d !== 'meta.yaml');
      expect(runs).toHaveLength(2); // none (once) and naive
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});
