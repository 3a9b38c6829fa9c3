/**
 * The experiment config: a plain-JSON description of one run (data, model, loss, optimizer, trainer, trackers).
 * Papers ship presets of it; the CLI overrides fields; the tracker logs it flattened as params.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { ConfigError } from './errors';
import type { Json, JsonObject } from './interfaces';
import { modelConfigSchema } from './model';
import { pluginSpecSchema } from './registry';

export const trainerOptionsSchema = z
  .object({
    epochs: z.number().int().positive(),
    batchSize: z.number().int().positive(),
    /** Fraction of the training set held out for validation, taken from its end (as Keras does). */
    validationSplit: z.number().min(0).max(0.9).default(0),
    shuffle: z.boolean().default(true),
    /** Log step metrics every N optimizer steps. */
    logEvery: z.number().int().positive().default(10),
    evalBatchSize: z.number().int().positive().default(256),
    /** Rescale all gradients together so their global L2 norm is at most this (Pascanu et al. 2013, Algorithm 1). */
    clipNorm: z.number().positive().optional(),
    /** Average the gradients of this many consecutive batches before each optimizer step (gradient accumulation). */
    accumulateSteps: z.number().int().positive().default(1),
    /** Clamp every gradient element to [−clipValue, clipValue]. */
    clipValue: z.number().positive().optional(),
    /**
     * A non-finite loss or gradient stops the run (`stop`: FAILED with a report, the last good checkpoint kept) or
     * skips that batch (`skip`: no update, and batch norm's statistics, carried recurrent state and metrics as they were
     * before it; counted in the `skipped_batches` metric).
     */
    onNonFinite: z.enum(['stop', 'skip']).default('stop'),
    /**
     * Stop after this many optimizer steps (then evaluate and test as at the end of training): replays the start of a
     * recorded run with the same config and seed, whose first losses must come out the same (`--max-steps N`).
     */
    maxSteps: z.number().int().positive().optional(),
    /**
     * Also evaluate the validation set every N optimizer steps (counted over the run) inside an epoch (Lightning's `val_check_interval`),
     * logging `val_*` at that step: the validation curve of a run that is one long epoch (the GPT presets). The
     * training trajectory is unchanged (evaluation draws no random numbers; the epoch's running metrics and the
     * model's carried state are put back afterwards); the epoch's end evaluates as always.
     */
    validateEvery: z.number().int().positive().optional(),
    /**
     * Batches of examples of similar length (the "bucket iterator" of fairseq and torchtext): the epoch's shuffled
     * order is cut into pools of `poolBatches` batches, each pool sorted by the data set's `lengths()` and cut into
     * batches, and the batches shuffled. Padding then fills little of a batch, and a model that trims padded
     * positions (transformer-seq2seq) computes less. Needs a data set with `lengths()`. `false` turns it off (over a
     * preset that sets it: `--set trainer.bucketByLength=false`).
     */
    bucketByLength: z.union([z.literal(false), z.object({ poolBatches: z.number().int().positive().default(100) }).strict()]).optional(),
    /**
     * The precision of the matrix products (dense layers, convolutions, attention's q·kᵀ and p·v, forward and
     * backward): `fp32` (absent means fp32), or `bf16`: both operands of every product rounded to bfloat16 (round to
     * nearest even) and their products summed in fp32, while weights, gradients and optimizer state stay fp32 (the
     * mixed precision of Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training", and Micikevicius et
     * al. 2018). Needs a backend that has it (native-cpu: AMX tiles where the CPU has them, vdpbf16ps where it has
     * avx512_bf16, else operands rounded before the fp32 kernel); any other backend refuses it (`--precision bf16`; native/README.md, "bf16 products").
     */
    precision: z.enum(['fp32', 'bf16']).optional(),
    /** Checkpoints (see core/checkpoint.ts): at the end of every epoch and every `everySteps` steps, keeping `keep`. */
    checkpoint: z
      .object({
        enabled: z.boolean().default(true),
        everySteps: z.number().int().positive().optional(),
        keep: z.number().int().positive().default(2),
        /** Directory for this run's checkpoints; default: `checkpoints/<experiment id>/<run id>` under the working directory. */
        dir: z.string().min(1).optional(),
      })
      .strict()
      .default({ enabled: true, keep: 2 }),
  })
  .strict();
export type TrainerOptions = z.infer<typeof trainerOptionsSchema>;

export const experimentConfigSchema = z.object({
  /** Experiment name in the tracker (one experiment per paper). */
  experiment: z.string().min(1),
  /**
   * Plugin modules the run needs besides the built-ins and the installed plugin packages: package names or paths
   * (relative to the working directory), loaded by runtime/plugin-packages.ts before the config's plugins are built.
   */
  plugins: z.array(z.string().min(1)).optional(),
  seed: z.number().int().nonnegative().default(0),
  data: z
    .object({
      source: pluginSpecSchema,
      train: z.string().default('train'),
      /** A split of the source to validate on (e.g. 'valid'), instead of holding out `trainer.validationSplit`. */
      validation: z.string().optional(),
      test: z.string().nullable().default('test'),
      /** Use only the first N training / test examples (smoke presets). */
      trainLimit: z.number().int().positive().optional(),
      testLimit: z.number().int().positive().optional(),
    })
    .strict(),
  /** A Sequential (`{ inputShape, layers }`) or a registered model (`{ type: "gpt", ... }`). */
  model: modelConfigSchema,
  loss: pluginSpecSchema,
  optimizer: pluginSpecSchema,
  schedule: pluginSpecSchema.optional(),
  metrics: z.array(pluginSpecSchema).default([]),
  callbacks: z.array(pluginSpecSchema).default([]),
  /** Random transformations of the training inputs (rotation, crop, flip, ...), applied in order. */
  augmentations: z.array(pluginSpecSchema).default([]),
  trackers: z.array(pluginSpecSchema).default(['mlflow-file']),
  parallelism: pluginSpecSchema.default('single-process'),
  trainer: trainerOptionsSchema,
});
export type ExperimentConfig = z.infer<typeof experimentConfigSchema>;
export type ExperimentConfigInput = z.input<typeof experimentConfigSchema>;

/** Validates a config, naming the first bad field (`trainer.batchSize: ...`). */
export function parseExperimentConfig(raw: unknown): ExperimentConfig {
  const r = experimentConfigSchema.strict().safeParse(raw);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => new ConfigError(i.path.join('.'), i.message).message);
    throw new ConfigError('', `invalid experiment config: ${msgs.join('; ')}`);
  }
  return r.data;
}

/** Flattens nested config into `a.b.c` keys, as MLflow params are flat strings. */
export function flattenConfig(obj: Json, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (obj !== null && typeof obj === 'object') {
    const entries = Array.isArray(obj) ? obj.map((v, i) => [String(i), v] as const) : Object.entries(obj);
    if (entries.length === 0) out[prefix] = Array.isArray(obj) ? '[]' : '{}';
    for (const [k, v] of entries) flattenConfig(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = String(obj);
  }
  return out;
}

/**
 * Deep-merges `patch` into `base`: objects merge, arrays and scalars replace, and an object whose keys are indices
 * of an array in `base` patches those elements (how `--set model.layers.0.dropout=0.2` reaches into a list). An
 * object patching an array must address its elements: a key that is not an index, or an index past the end, is a
 * ConfigError naming the field and the list's length (rather than replacing the list with an object, which the
 * schema would report only as "expected array, received object"). An object naming another plugin `type` than the
 * base's replaces it whole: the base's options belong to its plugin (a preset that turns the label-smoothed loss
 * into a distillation loss must not inherit `labelSmoothing`). `at` is the dotted path of `base` in the config.
 */
export function mergeConfig<T extends JsonObject>(base: T, patch: JsonObject, at = ''): T {
  const out: JsonObject = { ...base };
  const isObject = (x: unknown): x is JsonObject => !!x && typeof x === 'object' && !Array.isArray(x);
  for (const [k, v] of Object.entries(patch)) {
    const b = out[k];
    const field = at ? `${at}.${k}` : k;
    if (isObject(v) && isObject(b) && typeof v.type === 'string' && typeof b.type === 'string' && v.type !== b.type) out[k] = v;
    else if (isObject(v) && isObject(b)) out[k] = mergeConfig(b, v, field);
    else if (isObject(v) && Array.isArray(b)) {
      const range = b.length ? `indices 0-${b.length - 1}` : 'no indices';
      for (const i of Object.keys(v)) {
        if (!/^\d+$/.test(i)) throw new ConfigError(`${field}.${i}`, `${field} is a list of ${b.length} element(s): expected an index (${range}), got "${i}"`);
        if (Number(i) >= b.length) throw new ConfigError(`${field}.${i}`, `index ${i} is out of range: ${field} has ${b.length} element(s) (${range})`);
      }
      // `{ "0": {...} }` patches one element of an array (from `--set model.layers.0.dropout=0.2`).
      out[k] = b.map((e, i) => (i in v ? (isObject(e) && isObject(v[i]) ? mergeConfig(e, v[i] as JsonObject, `${field}.${i}`) : v[i]!) : e));
    } else out[k] = v;
  }
  return out as T;
}

/**
 * Reads the presets of a paper from `<dir>/*.json`. A preset may say `"extends": "<other preset>"`; it is then
 * deep-merged onto that preset, so small presets (smoke) only state what they change.
 */
export function loadPresets(dir: string): Record<string, JsonObject> {
  const raw: Record<string, JsonObject> = {};
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    raw[path.basename(f, '.json')] = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as JsonObject;
  }
  const resolved: Record<string, JsonObject> = {};
  const resolve = (name: string, seen: string[]): JsonObject => {
    if (resolved[name]) return resolved[name];
    const p = raw[name];
    if (!p) throw new ConfigError(`preset ${seen.at(-1) ?? name}`, `extends unknown preset "${name}" (have: ${Object.keys(raw).join(', ')})`);
    if (seen.includes(name)) throw new ConfigError(`preset ${name}`, `"extends" forms a cycle: ${[...seen, name].join(' -> ')}`);
    const { extends: parent, ...own } = p;
    return (resolved[name] = typeof parent === 'string' ? mergeConfig(resolve(parent, [...seen, name]), own) : own);
  };
  for (const name of Object.keys(raw)) resolve(name, []);
  return resolved;
}
