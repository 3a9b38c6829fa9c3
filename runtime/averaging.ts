/**
 * Checkpoint averaging: the elementwise mean of the weights saved in several checkpoints of one run. Vaswani et al.
 * (2017, §6.1) evaluate "a single model obtained by averaging the last 5 checkpoints, which were written at
 * 10-minute intervals"; the average of late iterates is a cheap ensemble of nearby points of the same trajectory
 * (Polyak & Juditsky 1992). Sums in float64, so the order of the checkpoints does not change the result beyond
 * the final rounding to float32.
 */
import { DataError } from '../core/errors';
import { listCheckpoints, loadCheckpoint } from '../core/checkpoint';
import type { NamedWeights } from '../core/serialization';

/** The mean of the weights (parameters and buffers) of the checkpoints in `dirs`, which must all hold the same names and shapes. */
export function averageCheckpoints(dirs: readonly string[]): NamedWeights {
  if (dirs.length === 0) throw new DataError('averageCheckpoints: no checkpoints to average');
  let sums: Map<string, { shape: number[]; values: Float64Array }> | null = null;
  for (const dir of dirs) {
    const { weights } = loadCheckpoint(dir);
    if (!sums) {
      sums = new Map([...weights].map(([k, w]) => [k, { shape: [...w.shape], values: new Float64Array(w.values.length) }]));
    }
    if (weights.size !== sums.size) throw new DataError(`averageCheckpoints: ${dir} holds ${weights.size} tensors, ${dirs[0]} ${sums.size}`);
    for (const [k, w] of weights) {
      const s = sums.get(k);
      if (!s || s.shape.join() !== w.shape.join())
        throw new DataError(`averageCheckpoints: tensor "${k}" of ${dir} is not in ${dirs[0]} with shape [${w.shape}]`);
      for (let i = 0; i < w.values.length; i++) s.values[i]! += w.values[i]!;
    }
  }
  return new Map([...sums!].map(([k, s]) => [k, { shape: s.shape, values: Float32Array.from(s.values, (v) => v / dirs.length) }]));
}

/** The last `k` complete checkpoints of a run's checkpoint directory (oldest first), or fewer if it has fewer. */
export function lastCheckpoints(runDir: string, k: number): string[] {
  return listCheckpoints(runDir).slice(-k);
}
