/**
 * Matrix products: tfjs's BatchMatMul and _FusedMatMul (bias row, linear or relu) on the addon's blocked SGEMM,
 * and the fused kernel that gives a dense layer's weight and bias gradients in one pass over dz.
 */
import { FUSED_KERNELS } from '../../../core/kernels';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { floatValues, isRow, rowsOf, size, values, f32, type Info, type KernelArgs, type KernelContext, type KernelFamily } from './kernel';

/** op(A)·op(B) with batch dimensions that are equal or broadcast from one; null (the original kernel) otherwise. */
function matMul({ native, buffers }: KernelContext, args: KernelArgs, fused: boolean): Info | null {
  const backend = args.backend as MathBackendCPU;
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, Info | undefined>;
  const { transposeA, transposeB, activation } = (args.attrs ?? {}) as { transposeA: boolean; transposeB: boolean; activation?: string };
  if (!a || !b || !f32(a, b, bias) || preluActivationWeights) return null;
  if (fused && activation !== 'linear' && activation !== 'relu') return null;
  const ra = a.shape.length,
    rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if ((transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) !== k) return null;
  const batchA = a.shape.slice(0, -2),
    batchB = b.shape.slice(0, -2);
  const ba = size(batchA),
    bb = size(batchB);
  let outBatch: number[];
  if (ba === bb && batchA.join() === batchB.join()) outBatch = batchA;
  else if (bb === 1) outBatch = batchA.length >= batchB.length ? batchA : [...batchB.slice(0, batchB.length - batchA.length), ...batchA];
  else if (ba === 1) outBatch = batchB.length >= batchA.length ? batchB : [...batchA.slice(0, batchA.length - batchB.length), ...batchB];
  else return null; // general broadcasting: the original kernel
  if (bias && !isRow(bias.shape, n)) return null; // e.g. a [m, 1] column bias: the original kernel
  const batch = Math.max(ba, bb);
  const out = buffers.fresh(batch * m * n);
  native.batchMatMul(
    values(backend, a),
    values(backend, b),
    out,
    batch,
    m,
    n,
    k,
    transposeA,
    transposeB,
    ba === 1 ? 0 : m * k,
    bb === 1 ? 0 : k * n,
    bias ? values(backend, bias) : null,
    fused && activation === 'relu',
  );
  return backend.makeTensorInfo([...outBatch, m, n], 'float32', out);
}

export const matMulFamily: KernelFamily = {
  overrides: (ctx) => ({
    BatchMatMul: (args) => matMul(ctx, args, false),
    _FusedMatMul: (args) => matMul(ctx, args, true),
  }),
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.matMulBiasGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, dz } = args.inputs as { x: Info; dz: Info };
      const [rows, inF] = rowsOf(x);
      const [dzRows, outF] = rowsOf(dz);
      if (rows !== dzRows) throw new Error(`${FUSED_KERNELS.matMulBiasGrad}: x [${x.shape}] and dz [${dz.shape}] must have the same rows`);
      const dw = buffers.fresh(inF * outF),
        db = buffers.fresh(outF);
      native.batchMatMul(floatValues(backend, x), floatValues(backend, dz), dw, 1, inF, outF, rows, true, false, 0, 0, null, false, db);
      return [backend.makeTensorInfo([inF, outF], 'float32', dw), backend.makeTensorInfo([outF], 'float32', db)];
    },
  }),
};
