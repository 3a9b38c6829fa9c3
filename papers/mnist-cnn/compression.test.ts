/**
 * `loom paper mnist-cnn --compression all` as a user runs it, on a small slice of MNIST in a scratch folder: every
 * group trains, the teacher is saved where the `distill` preset finds it, pruned models reach their sparsity and
 * store smaller sparsely, and the summary is each group's mean and sample standard deviation.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { CompressionRun } from './compression';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'cli/bin.mjs');

describe('mnist-cnn --compression', () => {
  it('a distill preset without its teacher is a user error naming loss.teacher', () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-distill-'));
    try {
      const r = spawnSync(process.execPath, [cli, 'paper', 'mnist-cnn', '--preset', 'distill'], { cwd, encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/loss\.teacher.*no saved teacher model/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('--scope global prunes the smallest magnitudes of all kernels together; a bad --scope is a user error', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-prune-global-'));
    try {
      const bad = spawnSync(process.execPath, [cli, 'paper', 'mnist-cnn', '--compression', 'prune', '--scope', 'everything'], { cwd, encoding: 'utf8' });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/--scope.*layer or global/);
      expect(bad.stderr).not.toMatch(/\n\s+at /);
      const args = ['paper', 'mnist-cnn', '--compression', 'prune', '--scope', 'global', '--epochs', '1', '--seeds', '1', '--sparsities', '90'];
      execFileSync(process.execPath, [cli, ...args, '--train-limit', '600', '--test-limit', '100', '--json', 'out.json'], { cwd, encoding: 'utf8' });
      const out = JSON.parse(fs.readFileSync(path.join(cwd, 'out.json'), 'utf8'));
      expect(out.pruningSchedule.scope).toBe('global');
      const r = (out.runs as CompressionRun[]).find((q) => q.group === 'pruned-90')!;
      // ⌊0.9·n⌋ of the 3×3×1×32 + 5408×64 + 64×10 kernel weights taken together (a kept weight may also be 0) ...
      const n = 3 * 3 * 1 * 32 + 5408 * 64 + 64 * 10;
      expect(r.sparsity!.pruned).toBeGreaterThanOrEqual(Math.floor(0.9 * n) / n);
      expect(r.sparsity!.pruned).toBeLessThan(Math.floor(0.9 * n) / n + 1e-3);
      // ... spread unevenly: the per-kernel fractions differ, and their weighted mean is the total.
      const fractions = Object.values(r.sparsity!.byParameter);
      expect(fractions).toHaveLength(3);
      expect(Math.max(...fractions) - Math.min(...fractions)).toBeGreaterThan(0.01);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('trains every group and records sparsity, sizes and the mean and sd of each', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-compression-'));
    try {
      const args = ['paper', 'mnist-cnn', '--compression', 'all', '--epochs', '1', '--seeds', '2', '--sparsities', '90'];
      execFileSync(process.execPath, [cli, ...args, '--train-limit', '600', '--test-limit', '200', '--json', 'out.json'], { cwd, encoding: 'utf8' });
      const out = JSON.parse(fs.readFileSync(path.join(cwd, 'out.json'), 'utf8'));
      const runs = out.runs as CompressionRun[];
      expect(Object.keys(out.summary)).toEqual(['dense', 'student', 'distilled', 'pruned-90']);
      for (const [group, s] of Object.entries(out.summary) as [string, { n: number; mean: number; std: number }][]) {
        const a = runs.filter((r) => r.group === group).map((r) => r.test_accuracy);
        expect(s.n).toBe(2);
        expect(s.mean).toBeCloseTo((a[0]! + a[1]!) / 2, 12);
        expect(s.std).toBeCloseTo(Math.abs(a[0]! - a[1]!) / Math.SQRT2, 12);
      }
      expect(runs.find((r) => r.group === 'student')!.params).toBe(43706);
      // The teacher is the dense seed-0 model, saved where the distill preset looks for it.
      expect(fs.existsSync(path.join(cwd, 'cache', 'mnist-cnn', 'teacher', 'model.json'))).toBe(true);
      for (const r of runs.filter((q) => q.group === 'pruned-90')) {
        // ⌊0.9·n⌋ of each kernel of the seed's model: 3×3×1×32 (conv), 5408×64 and 64×10 (dense); a kept weight may also be 0.
        const kernels = [3 * 3 * 1 * 32, 5408 * 64, 64 * 10];
        const expected = kernels.reduce((a, n) => a + Math.floor(0.9 * n), 0) / kernels.reduce((a, n) => a + n, 0);
        expect(r.sparsity!.pruned).toBeGreaterThanOrEqual(expected);
        expect(r.sparsity!.pruned).toBeLessThan(expected + 1e-3);
        expect(r.bytes!.sparse!).toBeLessThan(0.25 * r.bytes!.dense);
        expect(r.bytes!.maskBits!).toBeGreaterThan(r.bytes!.dense);
      }
      expect(out).toMatchObject({ what: 'all', epochs: 1, seeds: [0, 1], trainLimit: 600 });
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});
