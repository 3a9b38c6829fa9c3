/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped: model weights and buffers,
 * the optimizer's step, hyper-parameters and slots, every random stream, the data-loader position, the step,
 * the epoch's running sums, metric and callback state and the history so far. A checkpoint is a directory
 * `ckpt-<step>` holding `state.json` and `tensors.bin`; it is written into a temporary directory, fsynced and
 * renamed into place, so a crash (even SIGKILL) leaves either the previous checkpoint or the new one, never half.
 * A write that fails (a full disk) removes its temporary directory and leaves the previous checkpoints as they were.
 * `state.json` carries SHA-256 checksums of itself and of `tensors.bin`, so a truncated or altered file is refused
 * with a {@link FileError} naming it, rather than resuming from wrong numbers. (Checkpoints written before the
 * checksums were added load without that check.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { DataError, FileError } from './errors';
import { describeFsError, fsyncDir, sha256, writeFileAtomic, writeFileSynced } from './fs-atomic';
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
  /**
   * Whether training had been told to stop (early stopping, `trainer.maxSteps`) when the snapshot was taken: a run
   * interrupted after that, while it was being tested, resumes to its test and does not train another epoch.
   * Absent in checkpoints written before 2026-12-01 (read as false).
   */
  stopped?: boolean;
}

export interface Checkpoint {
  /** The run it belongs to, so `--resume` continues the same tracked run. */
  run: { runId: string; experimentId: string; experiment: string; runName: string };
  /** The experiment config of the run; resuming with a different one is refused. */
  config: JsonObject;
  trainer: TrainerSnapshot;
  weights: NamedWeights;
  optimizer: OptimizerState;
  /**
   * The run's wall time up to this checkpoint, summed over every process that led to it (a run resumed from here
   * adds its own; the time between a checkpoint and an interruption is not counted, as that work is done again).
   * Absent in checkpoints written before 2026-12-02: a run resumed from one knows only its own process's time.
   */
  elapsedSec?: number;
  /**
   * The machine of the process that wrote it, as its run tags say (CPU, backend, SIMD level, threads): results are
   * bit-identical only on the same instruction set and thread count, so a resume elsewhere says so. Absent in
   * checkpoints written before 2026-12-02.
   */
  machine?: Record<string, string>;
}

interface Manifest {
  format: 'loom.checkpoint';
  version: 1;
  run: Checkpoint['run'];
  config: JsonObject;
  trainer: TrainerSnapshot;
  optimizer: { step: number; hyper: JsonObject; slots: { param: string; slot: string }[] };
  tensors: WeightEntry[];
  elapsedSec?: number;
  machine?: Record<string, string>;
  /** SHA-256 of tensors.bin. */
  tensorsSha256?: string;
}

/**
 * The manifest's shape, checked on load (a file that parses but is not a checkpoint is refused, not half-used).
 * The checksum already rejects alterations; this catches files without one and hand edits.
 */
const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const count = z.number().int().min(0);
const manifestSchema = z.object({
  format: z.literal('loom.checkpoint'),
  version: z.literal(1),
  run: z.object({ runId: z.string(), experimentId: z.string(), experiment: z.string(), runName: z.string() }),
  config: z.record(z.string(), z.unknown()),
  trainer: z.object({
    epoch: count,
    batch: count,
    step: count,
    sums: z.object({ loss: z.number(), count: finite, window: z.number(), windowCount: finite, skipped: count }),
    history: z.array(z.record(z.string(), z.number().nullable())),
    lastFiniteLoss: z.number().nullable(),
    rng: z.record(z.string(), z.object({ seed: z.number(), state: z.looseObject({}) })),
    metrics: z.array(z.unknown()),
    callbacks: z.array(z.unknown()),
    model: z.record(z.string(), z.unknown()),
    stopped: z.boolean().optional(),
  }),
  optimizer: z.object({ step: count, hyper: z.record(z.string(), z.unknown()), slots: z.array(z.object({ param: z.string(), slot: z.string() })) }),
  tensors: z.array(z.object({ name: z.string(), shape: z.array(count), offset: count })),
  elapsedSec: z.number().min(0).optional(),
  machine: z.record(z.string(), z.string()).optional(),
  tensorsSha256: z.string().optional(),
  sha256: z.string().optional(),
});

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
      format: 'loom.checkpoint',
      version: 1,
      run: ckpt.run,
      config: ckpt.config,
      trainer: ckpt.trainer,
      optimizer: { step: ckpt.optimizer.step, hyper: ckpt.optimizer.hyper, slots },
      tensors: entries,
      ...(ckpt.elapsedSec === undefined ? {} : { elapsedSec: ckpt.elapsedSec }),
      ...(ckpt.machine === undefined ? {} : { machine: ckpt.machine }),
      tensorsSha256: sha256(data),
    };
    const body = JSON.stringify(manifest);
    const name = `ckpt-${String(ckpt.trainer.step).padStart(9, '0')}-e${ckpt.trainer.epoch}b${ckpt.trainer.batch}`;
    const target = path.join(this.dir, name);
    const tmp = path.join(this.dir, `.${name}.${process.pid}.tmp`);
    try {
      fs.mkdirSync(tmp, { recursive: true });
      writeFileSynced(path.join(tmp, 'tensors.bin'), data);
      // The manifest's own checksum covers the JSON text it is appended to (see readManifest).
      writeFileSynced(path.join(tmp, 'state.json'), `${body.slice(0, -1)},"sha256":"${sha256(body)}"}`);
      fsyncDir(tmp);
      fs.rmSync(target, { recursive: true, force: true });
      fs.renameSync(tmp, target);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      const previous = latestCheckpoint(this.dir);
      const cause = e instanceof FileError ? e.message : describeFsError(e);
      throw new FileError(
        target,
        `cannot write checkpoint ${target}: ${cause}; ${previous ? `the previous checkpoint ${previous} is intact` : 'no earlier checkpoint of this run exists'}`,
      );
    }
    fsyncDir(this.dir);
    for (const old of listCheckpoints(this.dir).slice(0, -this.keep)) fs.rmSync(old, { recursive: true, force: true });
    return target;
  }
}

/**
 * Complete checkpoints in `dir`, oldest first (temporary directories of interrupted writes are ignored): by step, then
 * epoch, then batch, as numbers. Two checkpoints can share a step (one written at a stop after an epoch's last batch,
 * `e9b6`, then the resumed run's end of that epoch, `e10b0`), and as text `e10` sorts before `e9`.
 */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const position = (d: string) => (/^ckpt-(\d+)(?:-e(\d+)b(\d+))?/.exec(d) ?? []).slice(1).map((v) => Number(v ?? 0));
  return fs
    .readdirSync(dir)
    .filter((d) => /^ckpt-\d+/.test(d) && fs.existsSync(path.join(dir, d, 'state.json')))
    .map((d) => ({ d, at: position(d) }))
    .sort((a, b) => a.at[0]! - b.at[0]! || a.at[1]! - b.at[1]! || a.at[2]! - b.at[2]! || (a.d < b.d ? -1 : a.d > b.d ? 1 : 0))
    .map(({ d }) => path.join(dir, d));
}

export function latestCheckpoint(dir: string): string | null {
  return listCheckpoints(dir).at(-1) ?? null;
}

/**
 * Reads a checkpoint back. A missing, truncated or altered `state.json` or `tensors.bin` throws a {@link FileError}
 * naming the file and what is wrong with it (checksum, length, structure), so a resume never starts from bad state.
 */
export function loadCheckpoint(dir: string): Checkpoint {
  const file = path.join(dir, 'state.json');
  if (!fs.existsSync(file)) throw new DataError(`no checkpoint at ${dir} (state.json missing)`);
  const m = readManifest(file);
  const tensorsFile = path.join(dir, 'tensors.bin');
  const data = readBytes(tensorsFile, 'checkpoint tensors');
  if (m.tensorsSha256 !== undefined && sha256(data) !== m.tensorsSha256) {
    throw new FileError(
      tensorsFile,
      `checkpoint file ${tensorsFile} is corrupt: its checksum differs from the one state.json recorded (truncated or altered since it was written)`,
    );
  }
  const all = unpackWeights(m.tensors, data, tensorsFile);
  const weights: NamedWeights = new Map([...all].filter(([k]) => !k.startsWith(SLOT)));
  const slots: OptimizerState['slots'] = {};
  for (const { param, slot } of m.optimizer.slots) {
    const t = all.get(`${SLOT}${param}/${slot}`);
    if (!t) throw new FileError(file, `checkpoint file ${file} is corrupt: optimizer slot ${slot} of ${param} has no tensor`);
    (slots[param] ??= {})[slot] = t;
  }
  return {
    run: m.run,
    config: m.config,
    trainer: m.trainer,
    weights,
    optimizer: { step: m.optimizer.step, hyper: m.optimizer.hyper, slots },
    ...(m.elapsedSec === undefined ? {} : { elapsedSec: m.elapsedSec }),
    ...(m.machine === undefined ? {} : { machine: m.machine }),
  };
}

/** `state.json`, parsed, its checksum verified and its structure checked. */
function readManifest(file: string): Manifest {
  const text = readBytes(file, 'checkpoint state').toString('utf8');
  const corrupt = (why: string) => new FileError(file, `checkpoint file ${file} is corrupt: ${why}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw corrupt(`not valid JSON (${(e as Error).message}; ${text.length} characters)`);
  }
  const sum = (raw as { sha256?: unknown } | null)?.sha256;
  if (sum !== undefined) {
    // Written as `<manifest JSON without its last "}">,"sha256":"<hex>"}`: the checksum covers that prefix + "}".
    const tail = `,"sha256":${JSON.stringify(sum)}}`;
    if (!text.endsWith(tail) || sha256(`${text.slice(0, -tail.length)}}`) !== sum)
      throw corrupt('its checksum does not match its contents (truncated or altered since it was written)');
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw corrupt(`${issue.path.join('.') || 'the file'}: ${issue.message}`);
  }
  return raw as Manifest; // as written: the schema checks, and does not strip fields it does not know
}

function readBytes(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new FileError(file, `cannot read ${what} ${file}: ${describeFsError(e)}`);
  }
}

/**
 * A run's record that it ended FINISHED, written beside its checkpoints (`finished.json`) once the tracker marked it
 * so: resuming such a run changes nothing (see `runExperiment`). Removed when the run is reopened to train further.
 */
export interface FinishedRecord {
  runId: string;
  experimentId: string;
  /** The tracked run's location (e.g. its folder in ./mlruns). */
  location: string;
  step: number;
  epochs: number;
  backend: string;
  test: Logs | null;
  wallTimeSec: number;
  /** The epoch whose weights the run ended with, if a callback restored one (absent in records before 2026-12-02). */
  restoredEpoch?: number | null;
}

const FINISHED = 'finished.json';

export function writeFinished(dir: string, record: FinishedRecord): void {
  writeFileAtomic(path.join(dir, FINISHED), JSON.stringify(record, null, 2));
}

/** The FINISHED record of run `runId` in `dir`, or null (none, another run's, or unreadable: then not finished). */
export function readFinished(dir: string, runId: string): FinishedRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(dir, FINISHED), 'utf8')) as FinishedRecord;
    return r.runId === runId ? r : null;
  } catch {
    return null;
  }
}

export function clearFinished(dir: string): void {
  fs.rmSync(path.join(dir, FINISHED), { force: true });
}
