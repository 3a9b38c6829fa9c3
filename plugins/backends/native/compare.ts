/**
 * Comparisons and logical and/or with broadcasting, in JavaScript over the broadcast strides (tfjs's cpu kernels
 * compute every element's broadcast index separately). They read float32, int32 and bool storage and return bool.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { size, type Info, type KernelArgs, type KernelFamily } from './kernel';
import { broadcastDims, forEachRow } from './strides';

type Row = (x: ArrayLike<number>, y: ArrayLike<number>, out: Uint8Array, i: number, oa: number, ob: number, n: number, sa: number, sb: number) => void;
/**
 * Comparisons and logical ops (tfjs's cpu backend computes every element's broadcast index separately), one
 * loop per op so that each stays monomorphic.
 */
const PREDICATES: Record<string, Row> = {
  Equal: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! === y[b + j * sb]! ? 1 : 0;
  },
  NotEqual: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! !== y[b + j * sb]! ? 1 : 0;
  },
  Greater: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! > y[b + j * sb]! ? 1 : 0;
  },
  GreaterEqual: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! >= y[b + j * sb]! ? 1 : 0;
  },
  Less: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! < y[b + j * sb]! ? 1 : 0;
  },
  LessEqual: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! <= y[b + j * sb]! ? 1 : 0;
  },
  LogicalAnd: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! && y[b + j * sb]! ? 1 : 0;
  },
  LogicalOr: (x, y, o, i, a, b, n, sa, sb) => {
    for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! || y[b + j * sb]! ? 1 : 0;
  },
};

export const compareFamily: KernelFamily = {
  overrides: () =>
    Object.fromEntries(
      Object.entries(PREDICATES).map(([name, row]) => [
        name,
        (args: KernelArgs): Info | null => {
          const backend = args.backend as MathBackendCPU;
          const { a, b } = args.inputs as { a: Info; b: Info };
          const va = backend.data.get(a.dataId).values,
            vb = backend.data.get(b.dataId).values;
          const numeric = (v: unknown) => v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array;
          if (!numeric(va) || !numeric(vb) || size(a.shape) === 0 || size(b.shape) === 0) return null;
          const x = va as Float32Array,
            y = vb as Float32Array;
          const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
          const out = new Uint8Array(size(outShape));
          forEachRow(broadcastDims(a.shape, b.shape, outShape), (i, oa, ob, n, sa, sb) => row(x, y, out, i, oa, ob, n, sa, sb));
          return backend.makeTensorInfo(outShape, 'bool', out);
        },
      ]),
    ),
};
