/**
 * Saving and loading models (a Sequential or a registered model): `model.json` (the model's config + weight
 * manifest + the SHA-256 of the weights) and `weights.bin` (float32, little-endian, in manifest order). Both files
 * are written atomically. Loading rebuilds the model from its config through the registry and checks every weight's
 * name and shape, the manifest's layout and the checksum: a truncated or altered file is refused with a
 * {@link FileError} naming it. The config part of model.json may be edited by hand (it is not checksummed); the
 * weights' part may not. A pruned parameter's mask ({@link Parameter.mask}) is saved with it (format version 3) and put
 * back on load, stored as bits beside the dense values or, sparsely, as the kept entries' indices and values.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { DataError, FileError, LoomError, ShapeError } from './errors';
import { describeFsError, sha256, writeFileAtomic } from './fs-atomic';
import { buildModel, expectModel, type ModelConfig } from './model';
import type { Model, Parameter } from './interfaces';
import { setMask } from './masks';
import { Rng } from './random';
import type { PluginRegistry } from './registry';

/**
 * One tensor in a weights file: its place (`offset`, in 4-byte words) and, for a masked (pruned) parameter, how its
 * mask is stored: `bits`, the n dense float32 values then ⌈n/32⌉ uint32 words of mask bits (bit i%32 of word i/32 set
 * = kept); `sparse`, `count` uint32 indices of the kept entries (ascending) then their `count` float32 values.
 * `dtype: 'int8'` (a quantized layer's integer weights, {@link Parameter.int8}): n int8 bytes, padded to whole words.
 */
export interface WeightEntry {
  name: string;
  shape: number[];
  offset: number;
  mask?: 'bits' | 'sparse';
  count?: number;
  dtype?: 'int8';
}
/** How {@link saveModel} stores a masked parameter: `auto` takes the smaller of `dense` (values + mask bits) and `sparse`. */
export type MaskStorage = 'auto' | 'dense' | 'sparse';
/**
 * `loom.model` version 2 holds the model's whole spec (`{ type, ... }`); version 3 (written only when a parameter
 * has a mask) adds masked entries ({@link WeightEntry}); `loom.sequential` version 1 (written before models other
 * than Sequential existed) holds a Sequential's config without `type`; version 4 (written only when a parameter is
 * int8) adds int8 entries. All still load.
 */
export interface ModelManifest {
  format: 'loom.model' | 'loom.sequential';
  version: 4 | 3 | 2 | 1;
  config: ModelConfig;
  weights: WeightEntry[];
  /** SHA-256 of weights.bin (absent in files saved before it was recorded). */
  weightsSha256?: string;
}

const count = z.number().int().min(0);
const modelManifestSchema = z.object({
  format: z.enum(['loom.model', 'loom.sequential']),
  version: z.union([z.literal(4), z.literal(3), z.literal(2), z.literal(1)]),
  config: z.record(z.string(), z.unknown()),
  weights: z.array(
    z.object({
      name: z.string(),
      shape: z.array(count),
      offset: count,
      mask: z.enum(['bits', 'sparse']).optional(),
      count: count.optional(),
      dtype: z.literal('int8').optional(),
    }),
  ),
  weightsSha256: z.string().optional(),
});

/** Values by parameter name; `mask` (1 = kept, 0 = pruned) for a masked parameter when read `withMasks`. */
export type NamedWeights = Map<string, { shape: number[]; values: Float32Array; mask?: Uint8Array; int8?: boolean }>;

/** Copies the current values of `params` out of their tensors (and, `withMasks`, their masks). */
export function readWeights(params: readonly Parameter[], opts: { withMasks?: boolean } = {}): NamedWeights {
  const out: NamedWeights = new Map();
  // Copies: on the cpu backend dataSync() is the variable's live buffer, which the backend may reuse once the
  // variable is assigned again (kept weights such as early stopping's best must not change under it).
  for (const p of params) {
    const mask = opts.withMasks && p.mask ? Uint8Array.from(p.mask.dataSync(), (v) => (v !== 0 ? 1 : 0)) : undefined;
    out.set(p.name, {
      shape: [...p.variable.shape],
      values: Float32Array.from(p.variable.dataSync() as Float32Array),
      ...(mask ? { mask } : {}),
      ...(p.int8 ? { int8: true } : {}),
    });
  }
  return out;
}

/**
 * Assigns saved values to `params`; every parameter must be present with the same shape. A saved mask is put on its
 * parameter ({@link setMask}); a parameter saved without one keeps the mask it has.
 */
export function writeWeights(params: readonly Parameter[], weights: NamedWeights, source = 'weights'): void {
  for (const p of params) {
    const w = weights.get(p.name);
    if (!w) throw new DataError(`${source}: no values for parameter "${p.name}" (have: ${[...weights.keys()].join(', ')})`);
    if (w.shape.length !== p.variable.shape.length || w.shape.some((d, i) => d !== p.variable.shape[i])) {
      throw new ShapeError(`${source}: parameter "${p.name}"`, `[${p.variable.shape.join(', ')}]`, w.shape);
    }
    tf.tidy(() => p.variable.assign(tf.tensor(w.values, w.shape, 'float32')));
    if (w.mask) setMask(p, tf.tensor(Float32Array.from(w.mask), w.shape, 'float32'));
  }
}

/** Words (4 bytes) a masked tensor of n values with `kept` kept entries takes in each storage. */
const maskedWords = (n: number, kept: number) => ({ bits: n + Math.ceil(n / 32), sparse: 2 * kept });

/**
 * Encodes weights as a manifest and one buffer of 4-byte words (float32 values; a masked tensor's mask as bits or
 * its kept entries' uint32 indices, as `maskStorage` says: see {@link WeightEntry}).
 */
export function packWeights(weights: NamedWeights, maskStorage: MaskStorage = 'auto'): { entries: WeightEntry[]; data: Uint8Array } {
  let total = 0;
  const entries: WeightEntry[] = [];
  for (const [name, w] of weights) {
    if (w.int8 && !w.mask) {
      entries.push({ name, shape: w.shape, offset: total, dtype: 'int8' });
      total += Math.ceil(w.values.length / 4);
      continue;
    }
    if (!w.mask) {
      entries.push({ name, shape: w.shape, offset: total });
      total += w.values.length;
      continue;
    }
    const kept = w.mask.reduce((a, b) => a + b, 0);
    const words = maskedWords(w.values.length, kept);
    const mask = maskStorage === 'dense' || (maskStorage === 'auto' && words.bits <= words.sparse) ? 'bits' : 'sparse';
    entries.push({ name, shape: w.shape, offset: total, mask, ...(mask === 'sparse' ? { count: kept } : {}) });
    total += words[mask];
  }
  const all = new Float32Array(total);
  const ints = new Uint32Array(all.buffer);
  let i = 0;
  for (const w of weights.values()) {
    const e = entries[i++]!;
    const n = w.values.length;
    if (e.dtype === 'int8') {
      const bytes = new Int8Array(all.buffer, 4 * e.offset, n);
      for (let j = 0; j < n; j++) {
        const v = w.values[j]!;
        if (!(Number.isInteger(v) && v >= -128 && v <= 127)) throw new Error(`packWeights: "${e.name}" is int8 but holds ${v} at ${j}`);
        bytes[j] = v;
      }
      continue;
    }
    if (e.mask === 'sparse') {
      let k = 0;
      for (let j = 0; j < n; j++) {
        if (!w.mask![j]) continue;
        ints[e.offset + k] = j;
        all[e.offset + e.count! + k] = w.values[j]!;
        k++;
      }
      continue;
    }
    all.set(w.values, e.offset);
    if (e.mask === 'bits') for (let j = 0; j < n; j++) if (w.mask![j]) ints[e.offset + n + (j >>> 5)]! |= 1 << (j & 31);
  }
  return { entries, data: new Uint8Array(all.buffer) };
}

/**
 * Decodes what {@link packWeights} wrote. The entries must tile `data` exactly, in order (as packWeights lays
 * them out): a short, long or reordered file throws a {@link FileError} naming `file`.
 */
export function unpackWeights(entries: WeightEntry[], data: Uint8Array, file = 'weights.bin'): NamedWeights {
  const corrupt = (why: string) => new FileError(file, `${file} is corrupt: ${why}`);
  if (data.byteLength % 4 !== 0) throw corrupt(`${data.byteLength} bytes is not a whole number of float32 values (truncated?)`);
  const floats = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const ints = new Uint32Array(floats.buffer);
  const out: NamedWeights = new Map();
  let expected = 0;
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.mask === 'sparse' && (e.count === undefined || e.count > n)) throw corrupt(`"${e.name}" is sparse with a count of ${e.count} for ${n} values`);
    if (e.dtype === 'int8' && e.mask) throw corrupt(`"${e.name}" is both int8 and masked`);
    const words = e.dtype === 'int8' ? Math.ceil(n / 4) : e.mask ? maskedWords(n, e.count ?? 0)[e.mask] : n;
    if (e.offset !== expected) throw corrupt(`"${e.name}" is listed at offset ${e.offset}, expected ${expected}`);
    if (e.offset + words > floats.length) throw corrupt(`too short for "${e.name}" (${floats.length} values, it needs ${e.offset + words}; truncated?)`);
    if (out.has(e.name)) throw corrupt(`"${e.name}" is listed twice`);
    if (e.dtype === 'int8') out.set(e.name, { shape: e.shape, values: Float32Array.from(new Int8Array(floats.buffer, 4 * e.offset, n)), int8: true });
    else if (!e.mask) out.set(e.name, { shape: e.shape, values: floats.slice(e.offset, e.offset + n) });
    else if (e.mask === 'bits') {
      const mask = new Uint8Array(n);
      for (let j = 0; j < n; j++) mask[j] = (ints[e.offset + n + (j >>> 5)]! >>> (j & 31)) & 1;
      out.set(e.name, { shape: e.shape, values: floats.slice(e.offset, e.offset + n), mask });
    } else {
      const values = new Float32Array(n);
      const mask = new Uint8Array(n);
      for (let k = 0; k < e.count!; k++) {
        const j = ints[e.offset + k]!;
        if (j >= n || (k > 0 && j <= ints[e.offset + k - 1]!)) throw corrupt(`"${e.name}" has index ${j} at ${k} (not ascending, or beyond its ${n} values)`);
        mask[j] = 1;
        values[j] = floats[e.offset + e.count! + k]!;
      }
      out.set(e.name, { shape: e.shape, values, mask });
    }
    expected += words;
  }
  if (expected !== floats.length) throw corrupt(`it holds ${floats.length} values, the manifest lists ${expected}`);
  return out;
}

/**
 * Writes `model.json` and `weights.bin` (parameters, then buffers such as BatchNorm statistics) atomically; masked
 * (pruned) parameters with their masks, stored as `maskStorage` says (version 3; without masks, version 2 as before).
 */
export function saveModel(model: Model, dir: string, opts: { maskStorage?: MaskStorage } = {}): void {
  const { entries, data } = packWeights(readWeights(model.weights(), { withMasks: true }), opts.maskStorage);
  const version = entries.some((e) => e.dtype === 'int8') ? 4 : entries.some((e) => e.mask) ? 3 : 2;
  const manifest: ModelManifest = { format: 'loom.model', version, config: model.spec, weights: entries, weightsSha256: sha256(data) };
  writeFileAtomic(path.join(dir, 'weights.bin'), data);
  writeFileAtomic(path.join(dir, 'model.json'), JSON.stringify(manifest, null, 2));
}

/**
 * Rebuilds a saved model; with `type`, it must be a model of that class (a paper's GPT), else a ConfigError says
 * which model the directory holds. A model.json that is not valid JSON or not a loom model, a config the registry cannot
 * build, or a weights.bin that is truncated or does not match its checksum throws a {@link FileError} naming the
 * file; weights whose names or shapes do not fit the config throw as {@link writeWeights} does.
 */
export function loadModel(dir: string, registry: PluginRegistry): Model;
export function loadModel<T extends Model>(dir: string, registry: PluginRegistry, type: abstract new (...args: never[]) => T): T;
export function loadModel(dir: string, registry: PluginRegistry, type?: abstract new (...args: never[]) => Model): Model {
  const file = path.join(dir, 'model.json');
  if (!fs.existsSync(file)) throw new DataError(`no saved model at ${dir} (model.json missing)`);
  const corrupt = (f: string, why: string) => new FileError(f, `saved model file ${f} is corrupt: ${why}`);
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(readFile(file).toString('utf8')) as ModelManifest;
  } catch (e) {
    throw e instanceof FileError ? e : corrupt(file, `not valid JSON (${(e as Error).message})`);
  }
  const checked = modelManifestSchema.safeParse(manifest);
  if (!checked.success) throw corrupt(file, `${checked.error.issues[0]!.path.join('.') || 'the file'}: ${checked.error.issues[0]!.message}`);
  const weightsFile = path.join(dir, 'weights.bin');
  const data = readFile(weightsFile);
  if (manifest.weightsSha256 !== undefined && sha256(data) !== manifest.weightsSha256) {
    throw corrupt(weightsFile, 'its checksum differs from the one model.json recorded (truncated or altered since it was saved)');
  }
  const weights = unpackWeights(manifest.weights, data, weightsFile);
  const config = (manifest.format === 'loom.sequential' ? { type: 'sequential', ...manifest.config } : manifest.config) as ModelConfig;
  let model: Model;
  try {
    model = buildModel(config, registry);
    model.build(model.inputShape, new Rng(0));
  } catch (e) {
    throw corrupt(file, `its config does not describe a model loom can build: ${e instanceof LoomError ? e.message : String(e)}`);
  }
  try {
    writeWeights(model.weights(), weights, dir);
    return type ? expectModel(model, type, `saved model ${file}`) : model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new FileError(file, `cannot read ${file}: ${describeFsError(e)}`);
  }
}
