/**
 * core/mlflow-store.ts: what the tracker's side writes, the readers' side reads back (runs, tags with `/` in their
 * keys, metric values including nan and ±inf, statuses), and a resumed run's metrics are cut at its step.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createExperiment,
  createRunFolders,
  ensureDefaultExperiment,
  findExperiment,
  listRuns,
  metricLine,
  MLFLOW_STATUS,
  newRunMeta,
  readRunMeta,
  readStore,
  readTag,
  runDirectory,
  runFile,
  truncateMetrics,
  writeRunMeta,
} from './mlflow-store';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-store-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** A run written with the store's writers: tags, and metric values at steps 1..n. */
function writeRun(experiment: string, runId: string, start: number, tags: Record<string, string>, metrics: Record<string, number[]>): string {
  ensureDefaultExperiment(root);
  const exp = findExperiment(root, experiment) ?? createExperiment(root, experiment);
  const dir = runDirectory(root, exp, runId);
  createRunFolders(dir);
  writeRunMeta(dir, newRunMeta(dir, exp, runId, `${runId}-name`, start));
  for (const [k, v] of Object.entries(tags)) fs.writeFileSync(runFile(dir, 'tags', k), v);
  for (const [k, vs] of Object.entries(metrics)) vs.forEach((v, i) => fs.appendFileSync(runFile(dir, 'metrics', k), metricLine(v, i + 1, start + i)));
  return dir;
}

describe('MLflow file store', () => {
  it('reads back every run, tag and metric value it writes, newest run first', () => {
    const value = fc.oneof(fc.double({ noNaN: false }), fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, -0.5));
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), fc.array(value, { maxLength: 3 }), (loss, acc) => {
        fs.rmSync(root, { recursive: true, force: true });
        writeRun('a', 'r1', 1000, { paper: 'p', 'mlflow.source/name': 'loom' }, { loss, 'val/acc': acc });
        const dir = writeRun('b', 'r2', 2000, { paper: 'q' }, {});
        writeRunMeta(dir, { ...readRunMeta(dir)!, status: MLFLOW_STATUS.FINISHED, end_time: 2500 });
        const runs = readStore(root);
        expect(runs.map((r) => [r.runId, r.runName, r.status, r.start, r.end])).toEqual([
          ['r2', 'r2-name', 'FINISHED', 2000, 2500],
          ['r1', 'r1-name', 'RUNNING', 1000, null],
        ]);
        const r1 = runs[1]!;
        expect(r1.tags).toEqual({ paper: 'p', 'mlflow.source/name': 'loom' });
        expect(r1.metrics.loss).toEqual(loss.map((v, i) => [i + 1, v]));
        if (acc.length) expect(r1.metrics['val/acc']).toEqual(acc.map((v, i) => [i + 1, v]));
        expect(readTag(r1.dir!, 'paper')).toBe('p');
        expect(readTag(r1.dir!, 'missing')).toBeUndefined();
      }),
      { numRuns: 25 },
    );
  });

  it('finds experiments by name, lists only folders with a meta.yaml, and cuts metrics after a step', () => {
    const dir = writeRun('exp', 'r1', 5, {}, { loss: [3, 2, 1, 0.5] });
    const id = findExperiment(root, 'exp')!;
    expect(findExperiment(root, 'Default')).toBe('0');
    expect(findExperiment(root, 'nope')).toBeUndefined();
    fs.mkdirSync(path.join(root, id, 'not-a-run'));
    fs.mkdirSync(path.join(root, 'not-an-experiment', 'r9'), { recursive: true });
    expect(listRuns(root).map((r) => r.dir)).toEqual([dir]);
    truncateMetrics(dir, 2);
    expect(readStore(root)[0]!.metrics.loss).toEqual([
      [1, 3],
      [2, 2],
    ]);
    expect(readStore(path.join(root, 'absent'))).toEqual([]);
  });
});
