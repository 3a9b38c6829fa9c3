/**
 * What a run checks in its data before it trains (`runExperiment`), so that bad data stops it at once with the
 * cause named, instead of as a non-finite loss some steps in (NaN inputs) or never (labels outside the class range,
 * which a one-hot or gather silently turns into a zero row): every split has examples; every float input and
 * target is finite; every target suits the loss ({@link Loss.checkTargets}: e.g. class labels in [0, classes)).
 * Each failure is a {@link DataError} naming the split, the example and the value.
 */
import type { Dataset, Loss } from '../core/interfaces';
import { DataError } from '../core/errors';

/** Values read per chunk while scanning (about 4 MB of float32). */
const CHUNK_VALUES = 1 << 20;

/**
 * Scans every example of each split once. `splits` pairs a label for messages ("training", "test") with the data
 * set, or null where the run has no such split. The data sets' `batch` must not depend on the order of calls (it
 * is already called out of order when a run describes its inputs to the tracker).
 */
export function checkData(splits: [string, Dataset | null][], loss: Loss, outputShape: readonly (number | null)[]): void {
  for (const [label, ds] of splits) {
    if (!ds) continue;
    if (ds.size === 0) throw new DataError(`the ${label} set "${ds.name}" is empty: it has no examples`);
    const per = Math.max(
      1,
      ds.xShape.reduce((a, b) => a * b, 1),
      ds.yShape.reduce((a, b) => a * b, 1),
    );
    const chunk = Math.max(1, Math.floor(CHUNK_VALUES / per));
    for (let start = 0; start < ds.size; start += chunk) {
      const n = Math.min(chunk, ds.size - start);
      const { x, y } = ds.batch(Int32Array.from({ length: n }, (_, i) => start + i));
      try {
        const xs = x.dtype === 'float32' ? (x.dataSync() as Float32Array) : null;
        const ys = y.dataSync() as Float32Array | Int32Array;
        const at = (values: ArrayLike<number>, i: number) => `example ${start + Math.floor((i * n) / values.length)}`;
        const badX = xs ? firstNonFinite(xs) : -1;
        if (badX >= 0)
          throw new DataError(
            `the ${label} set "${ds.name}": ${at(xs!, badX)} has a non-finite input value (${xs![badX]}); remove or repair it before training`,
          );
        const badY = y.dtype === 'float32' ? firstNonFinite(ys) : -1;
        if (badY >= 0)
          throw new DataError(`the ${label} set "${ds.name}": ${at(ys, badY)} has a non-finite target (${ys[badY]}); remove or repair it before training`);
        const wrong = loss.checkTargets?.(ys, outputShape);
        if (wrong) throw new DataError(`the ${label} set "${ds.name}": ${at(ys, wrong.index)}: ${wrong.reason}`);
      } finally {
        x.dispose();
        y.dispose();
      }
    }
  }
}

/** Index of the first NaN or ±Infinity, or −1. (v − v is 0 for every finite v and NaN otherwise.) */
function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (a[i]! - a[i]! !== 0) return i;
  return -1;
}
