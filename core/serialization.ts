/**
 * Saving and loading models: `model.json` (config + weight manifest) and `weights.bin` (float32, little-endian,
 * in manifest order). Both files are written atomically. Loading rebuilds the model from its config through the
 * registry and checks every weight's name and shape.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError, ShapeError } from './errors';
import { writeFileAtomic } from './fs-atomic';
import { Sequential, type SequentialConfig } from './model';
import type { Model, Parameter } from './interfaces';
import { Rng } from './random';
import type { PluginRegistry } from './registry';

export interface WeightEntry {
  name: string;
  shape: number[];
  offset: number;
}
export interface ModelManifest {
  format: 'loom.sequential';
  version: 1;
  config: SequentialConfig;
  weights: WeightEntry[];
}

export type NamedWeights = Map<string, { shape: number[]; values: Float32Array }>;

/** Copies the current values of `params` out of their tensors. */
export function readWeights(params: readonly Parameter[]): NamedWeights {
  const out: NamedWeights = new Map();
  for (const p of params) out.set(p.name, { shape: p.variable.shape, values: p.variable.dataSync() as Float32Array });
  return out;
}

/** Assigns saved values to `params`; every parameter must be present with the same shape. */
export function writeWeights(params: readonly Parameter[], weights: NamedWeights, source = 'weights'): void {
  for (const p of params) {
    const w = weights.get(p.name);
    if (!w) throw new DataError(`${source}: no values for parameter "${p.name}" (have: ${[...weights.keys()].join(', ')})`);
    if (w.shape.length !== p.variable.shape.length || w.shape.some((d, i) => d !== p.variable.shape[i])) {
      throw new ShapeError(`${source}: parameter "${p.name}"`, `[${p.variable.shape.join(', ')}]`, w.shape);
    }
    tf.tidy(() => p.variable.assign(tf.tensor(w.values, w.shape, 'float32')));
  }
}

/** Encodes weights as a manifest and one float32 buffer. */
export function packWeights(weights: NamedWeights): { entries: WeightEntry[]; data: Uint8Array } {
  let total = 0;
  const entries: WeightEntry[] = [];
  for (const [name, w] of weights) {
    entries.push({ name, shape: w.shape, offset: total });
    total += w.values.length;
  }
  const all = new Float32Array(total);
  let i = 0;
  for (const w of weights.values()) {
    all.set(w.values, entries[i]!.offset);
    i++;
  }
  return { entries, data: new Uint8Array(all.buffer) };
}

export function unpackWeights(entries: WeightEntry[], data: Uint8Array): NamedWeights {
  const floats = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const out: NamedWeights = new Map();
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.offset + n > floats.length) throw new DataError(`weights.bin is too short for "${e.name}"`);
    out.set(e.name, { shape: e.shape, values: floats.slice(e.offset, e.offset + n) });
  }
  return out;
}

/** Writes `model.json` and `weights.bin` (parameters, then buffers such as BatchNorm statistics) atomically. */
export function saveModel(model: Model, dir: string): void {
  const { entries, data } = packWeights(readWeights([...model.parameters(), ...(model.buffers?.() ?? [])]));
  const { type: _t, ...config } = model.spec;
  const manifest: ModelManifest = { format: 'loom.sequential', version: 1, config: config as unknown as SequentialConfig, weights: entries };
  writeFileAtomic(path.join(dir, 'weights.bin'), data);
  writeFileAtomic(path.join(dir, 'model.json'), JSON.stringify(manifest, null, 2));
}

export function loadModel(dir: string, registry: PluginRegistry): Sequential {
  const file = path.join(dir, 'model.json');
  if (!fs.existsSync(file)) throw new DataError(`no saved model at ${dir} (model.json missing)`);
  const manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as ModelManifest;
  if (manifest.format !== 'loom.sequential') throw new ConfigError('model.json format', `expected "loom.sequential", got ${JSON.stringify(manifest.format)}`);
  const model = new Sequential(manifest.config, registry);
  model.build(undefined, new Rng(0));
  writeWeights(model.weights(), unpackWeights(manifest.weights, fs.readFileSync(path.join(dir, 'weights.bin'))), dir);
  return model;
}
