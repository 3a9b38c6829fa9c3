/**
 * The variational-LSTM smoke preset as a user runs it: three variants and MC dropout train and are scored, with
 * perplexity far below the vocabulary size (what a model that learned nothing would give).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { lmLayers } from '.';

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

  it('smoke: every variant trains and is scored, with MC dropout', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-lstm-'));
    try {
      const out = execFileSync(process.execPath, [cli, 'paper', 'variational-lstm', '--preset', 'smoke', '--json', 'summary.json'], { cwd, encoding: 'utf8' });
      const { metrics } = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
      // The smoke vocabulary has 789 words: a model that learned nothing scores about 789; one epoch gives ~100.
      for (const v of ['none', 'naive', 'variational', 'variational-mc']) expect(metrics[`${v}/test_perplexity`], v).toBeLessThan(300);
      expect(out).toMatch(/measured test perplexity, best first: /);
      expect(out).toMatch(/SMALLER THAN THE PAPER/);
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
