/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped: model weights and buffers,
 * the optimizer's step, hyper-parameters and slots, every random stream, the data-loader position, the step,
 * the epoch's running sums, metric and callback state and the history so far. A checkpoint is a directory
 * `ckpt-<step>` holding `state.json` and `tensors.bin`; it is written into a temporary directory, fsynced and
 * renamed into place, so a crash (even SIGKILL) leaves either the previous checkpoint or the new one, never half.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError } from './errors';
import { fsyncDir, writeFileSynced } from './fs-atomic';
import type { Json, JsonObject, Logs, OptimizerState } from './interfaces';
import type { RngState } from './random';
import { packWeights, unpackWeights, type NamedWeights, type WeightEntry } from './serialization';

/** Where the trainer stands: enough to rebuild its loop state (tensors travel separately). */
export interface TrainerSnapshot {
  /** Epoch in progress (0-based), and how many of its batches are done. */
  epoch: number;
  batch: number;
  /** Optimizer steps taken in the whole run. */
  step: number;
  /** The epoch's running sums: loss·examples, examples, and the logging window. */
  sums: { loss: number; count: number; window: number; windowCount: number; skipped: number };
  history: Logs[];
  lastFiniteLoss: number | null;
  rng: Record<string, RngState>;
  metrics: Json[];
  callbacks: Json[];
  /** State carried between batches by layers (stateful RNNs), by layer name. */
  model: JsonObject;
}

export interface Checkpoint {
  /** The run it belongs to, so `--resume` continues the same tracked run. */
  run: { runId: string; experimentId: string; experiment: string; runName: string };
  /** The experiment config of the run; resuming with a different one is refused. */
  config: JsonObject;
  trainer: TrainerSnapshot;
  weights: NamedWeights;
  optimizer: OptimizerState;
}

interface Manifest {
  format: 'loom.checkpoint';
  version: 1;
  run: Checkpoint['run'];
  config: JsonObject;
  trainer: TrainerSnapshot;
  optimizer: { step: number; hyper: JsonObject; slots: { param: string; slot: string }[] };
  tensors: WeightEntry[];
}

const SLOT = '@optimizer/';

/** Writes checkpoints into one directory, keeping the newest `keep`. */
export class Checkpointer {
  constructor(
    readonly dir: string,
    readonly keep = 2,
  ) {}

  save(ckpt: Checkpoint): string {
    const tensors: NamedWeights = new Map(ckpt.weights);
    const slots: { param: string; slot: string }[] = [];
    for (const [param, byName] of Object.entries(ckpt.optimizer.slots)) {
      for (const [slot, t] of Object.entries(byName)) {
        tensors.set(`${SLOT}${param}/${slot}`, t);
        slots.push({ param, slot });
      }
    }
    const { entries, data } = packWeights(tensors);
    const manifest: Manifest = {
      format: 'loom.checkpoint', version: 1, run: ckpt.run, config: ckpt.config, trainer: ckpt.trainer,
      optimizer: { step: ckpt.optimizer.step, hyper: ckpt.optimizer.hyper, slots }, tensors: entries,
    };
    const name = `ckpt-${String(ckpt.trainer.step).padStart(9, '0')}-e${ckpt.trainer.epoch}b${ckpt.trainer.batch}`;
    const target = path.join(this.dir, name);
    const tmp = path.join(this.dir, `.${name}.${process.pid}.tmp`);
    fs.mkdirSync(tmp, { recursive: true });
    writeFileSynced(path.join(tmp, 'tensors.bin'), data);
    writeFileSynced(path.join(tmp, 'state.json'), JSON.stringify(manifest));
    fsyncDir(tmp);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(tmp, target);
    fsyncDir(this.dir);
    for (const old of listCheckpoints(this.dir).slice(0, -this.keep)) fs.rmSync(old, { recursive: true, force: true });
    return target;
  }
}

/** Complete checkpoints in `dir`, oldest first (temporary directories of interrupted writes are ignored). */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((d) => /^ckpt-\d+/.test(d) && fs.existsSync(path.join(dir, d, 'state.json'))).sort().map((d) => path.join(dir, d));
}

export function latestCheckpoint(dir: string): string | null {
  return listCheckpoints(dir).at(-1) ?? null;
}

export function loadCheckpoint(dir: string): Checkpoint {
  const file = path.join(dir, 'state.json');
  if (!fs.existsSync(file)) throw new DataError(`no checkpoint at ${dir} (state.json missing)`);
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
  if (m.format !== 'loom.checkpoint') throw new DataError(`${file}: not a loom checkpoint (format ${JSON.stringify(m.format)})`);
  const all = unpackWeights(m.tensors, fs.readFileSync(path.join(dir, 'tensors.bin')));
  const weights: NamedWeights = new Map([...all].filter(([k]) => !k.startsWith(SLOT)));
  const slots: OptimizerState['slots'] = {};
  for (const { param, slot } of m.optimizer.slots) (slots[param] ??= {})[slot] = all.get(`${SLOT}${param}/${slot}`)!;
  return { run: m.run, config: m.config, trainer: m.trainer, weights, optimizer: { step: m.optimizer.step, hyper: m.optimizer.hyper, slots } };
}
