/**
 * The fused LoomAttention and LoomAttentionGrad (core/ops/attention.ts's `selfAttention` and its gradient) on the
 * addon, LoomCachedAttention (one step of incremental decoding over a key/value cache, multi-head-attention.ts),
 * LoomCacheReorder (that cache's rows reordered for beam search, copying only the positions in use) and
 * LoomMemoryAttention (one step of decoding's cross-attention over the cached encoder memory, shared by a beam).
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, size, values, type Info, type KernelFamily } from './kernel';
import { copyDims } from './strides';

export const attentionFamily: KernelFamily = {
  fused: ({ native, buffers }) => {
    // The decoding kernel's scratch arrays, this installation's own (not the module's: no state shared between
    // backends); `fused` runs once per installation, so they persist, and grow, across its calls.
    const scratch = scratchArrays(3);
    const zero = new Float32Array(1); // the cache reorder's zeros, read with stride 0
    return {
      [FUSED_KERNELS.attention]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { qkv, keep } = args.inputs as { qkv: Info; keep: Info };
        const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
        const [batch, time, d3] = qkv.shape as [number, number, number];
        // Check the tensors' shapes here, for a message in their terms (the C++ side checks the buffers again).
        if (qkv.shape.length !== 3 || d3 % (3 * numHeads) !== 0 || size(keep.shape) !== batch * time) {
          throw new Error(`${FUSED_KERNELS.attention}: qkv [${qkv.shape}] and keep [${keep.shape}] do not fit ${numHeads} heads`);
        }
        const d = d3 / 3;
        const context = buffers.fresh(batch * time * d),
          probs = buffers.fresh(batch * numHeads * time * time);
        native.attention(floatValues(backend, qkv), floatValues(backend, keep), context, probs, batch, time, numHeads, d / numHeads, causal);
        return [backend.makeTensorInfo([batch, time, d], 'float32', context), backend.makeTensorInfo([batch, numHeads, time, time], 'float32', probs)];
      },
      [FUSED_KERNELS.attentionGrad]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { dy, qkv, keep, probs } = args.inputs as { dy: Info; qkv: Info; keep: Info; probs: Info };
        const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
        const [batch, time, d3] = qkv.shape as [number, number, number];
        if (size(dy.shape) * 3 !== size(qkv.shape) || size(probs.shape) !== batch * numHeads * time * time || size(keep.shape) !== batch * time) {
          throw new Error(`${FUSED_KERNELS.attentionGrad}: dy [${dy.shape}], qkv [${qkv.shape}], keep [${keep.shape}] and probs [${probs.shape}] do not fit`);
        }
        const dqkv = buffers.fresh(batch * time * d3);
        native.attentionGrad(
          floatValues(backend, dy),
          floatValues(backend, qkv),
          floatValues(backend, keep),
          floatValues(backend, probs),
          dqkv,
          batch,
          time,
          numHeads,
          d3 / 3 / numHeads,
          causal,
        );
        return backend.makeTensorInfo(qkv.shape, 'float32', dqkv);
      },
      [FUSED_KERNELS.cachedAttention]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { qkv, k, v } = args.inputs as { qkv: Info; k: Info; v: Info };
        const { numHeads: h, length } = args.attrs as { numHeads: number; length: number };
        const [batch, d3] = qkv.shape as [number, number];
        const d = d3 / 3,
          dk = d / h,
          capacity = k.shape[2]!;
        const cacheShape = [batch, h, capacity, dk].join();
        if (
          qkv.shape.length !== 2 ||
          d3 % (3 * h) !== 0 ||
          k.shape.join() !== cacheShape ||
          v.shape.join() !== cacheShape ||
          !(length >= 0 && length < capacity)
        ) {
          throw new Error(`${FUSED_KERNELS.cachedAttention}: qkv [${qkv.shape}], k [${k.shape}], v [${v.shape}] and length ${length} do not fit ${h} heads`);
        }
        const x = floatValues(backend, qkv),
          keys = values(backend, k),
          vals = values(backend, v);
        const keysAt = length + 1;
        // The new position's key and value, head by head, into row `length` of each head's block (in place): one
        // strided copy each ([batch, heads, d_k] from qkv's rows into the cache's blocks), not batch · heads copies from
        // JavaScript (8,192 a step for G2P's beam search).
        const heads = copyDims([batch, h, dk], [d3, dk, 1], [h * capacity * dk, capacity * dk, 1]);
        native.copy(x, d, keys, length * dk, heads);
        native.copy(x, 2 * d, vals, length * dk, heads);
        // The queries as [batch · heads, d_k] rows, so that each product below is one BatchMatMul of batch · heads items
        // (one per thread, each serial) as the composed ops' is: q kᵀ over the first length + 1 rows of each head's
        // block (a batch stride of the capacity), then · 1/√d_k rounded to float32 as tfjs's Multiply by a float32
        // scalar, the softmax, and the probabilities times v.
        const items = batch * h;
        const q = scratch(items * dk, 0);
        native.copy(x, 0, q, 0, copyDims([batch, d], [d3, 1], [d, 1]));
        const scores = scratch(items * keysAt, 1);
        const probs = scratch(items * keysAt, 2);
        const context = buffers.fresh(batch * d);
        native.batchMatMul(q, keys, scores, items, 1, keysAt, dk, false, true, dk, capacity * dk, null, false);
        const scale = Math.fround(1 / Math.sqrt(dk));
        for (let i = 0; i < items * keysAt; i++) scores[i] = Math.fround(scores[i]! * scale);
        native.softmax(scores, probs, items, keysAt);
        native.batchMatMul(probs, vals, context, items, 1, dk, keysAt, false, false, keysAt, capacity * dk, null, false);
        return backend.makeTensorInfo([batch, d], 'float32', context);
      },
      [FUSED_KERNELS.memoryAttention]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { q, k, v, keep } = args.inputs as { q: Info; k: Info; v: Info; keep?: Info };
        const { numHeads: h, repeat } = args.attrs as { numHeads: number; repeat: number };
        const [rows, d] = q.shape as [number, number];
        const [items, , keys] = k.shape as [number, number, number, number];
        const memoryShape = [items, h, keys, d / h].join();
        if (
          q.shape.length !== 2 ||
          d % h !== 0 ||
          !(Number.isInteger(repeat) && repeat >= 1) ||
          items * repeat !== rows ||
          k.shape.join() !== memoryShape ||
          v.shape.join() !== memoryShape ||
          (keep && keep.shape.join() !== [rows, keys].join())
        ) {
          const mask = keep ? `, keep [${keep.shape}]` : '';
          throw new Error(`${FUSED_KERNELS.memoryAttention}: q [${q.shape}], k [${k.shape}], v [${v.shape}]${mask} and repeat ${repeat} do not fit ${h} heads`);
        }
        const context = buffers.fresh(rows * d);
        native.memoryAttention(
          floatValues(backend, q),
          floatValues(backend, k),
          floatValues(backend, v),
          keep ? floatValues(backend, keep) : null,
          context,
          rows,
          h,
          d / h,
          keys,
          repeat,
        );
        return backend.makeTensorInfo([rows, d], 'float32', context);
      },
      [FUSED_KERNELS.cacheReorder]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { x, indices, out: into } = args.inputs as { x: Info; indices: Info; out?: Info };
        const { length } = args.attrs as { length: number };
        const [batch, h, capacity, dk] = x.shape as [number, number, number, number];
        const ids = backend.data.get(indices.dataId).values as ArrayLike<number>;
        if (
          x.shape.length !== 4 ||
          indices.shape.length !== 1 ||
          !(Number.isInteger(length) && length >= 0 && length <= capacity) ||
          !Array.prototype.every.call(ids, (i: number) => Number.isInteger(i) && i >= 0 && i < batch)
        ) {
          throw new Error(`${FUSED_KERNELS.cacheReorder}: x [${x.shape}], indices [${indices.shape}] and length ${length} do not fit`);
        }
        const outShape = [ids.length, h, capacity, dk];
        if (into && (into.shape.join() !== outShape.join() || into.dtype !== 'float32' || into.dataId === x.dataId)) {
          throw new Error(`${FUSED_KERNELS.cacheReorder}: out [${into.shape}] (${into.dtype}) is not a float32 [${outShape}] apart from x`);
        }
        const src = floatValues(backend, x);
        const rows = ids.length,
          block = capacity * dk,
          filled = length * dk;
        // Each head's block of row r: its first `length` positions copied from row ids[r], the spare room zeroed (as the
        // decoding kernel's growth leaves it). Only the positions in use are read; a gather of the rows read them all.
        // One strided copy a row (its h blocks' filled parts), and one for all the spare room (a zero read with
        // stride 0), not h JavaScript `set` and `fill` calls a row.
        // With `out` (zero from `length` on, the caller's promise), the filled positions are written into it in place
        // and its data is returned: no new buffer, and no zeros written (at G2P's first positions the zeros were
        // most of a reorder's time).
        const stored = into ? backend.data.get(into.dataId).values : null;
        const inPlace = stored instanceof Float32Array;
        const out = inPlace ? stored : buffers.fresh(rows * h * block);
        if (filled > 0) {
          const heads = copyDims([h, filled], [block, 1], [block, 1]);
          for (let r = 0; r < rows; r++) native.copy(src, ids[r]! * h * block, out, r * h * block, heads);
        }
        if (inPlace) {
          backend.incRef(into!.dataId);
          return { dataId: into!.dataId, shape: outShape, dtype: 'float32' };
        }
        if (filled < block && rows > 0) native.copy(zero, 0, out, filled, copyDims([rows * h, block - filled], [0, 0], [block, 1]));
        return backend.makeTensorInfo(outShape, 'float32', out);
      },
    };
  },
};

/**
 * `count` scratch arrays (the decoding kernel's queries, scores and probabilities), grown as needed: `scratch(n,
 * which)` is a view of exactly n floats of array `which`, its contents arbitrary.
 */
function scratchArrays(count: number): (n: number, which: number) => Float32Array {
  const arrays = Array.from({ length: count }, () => new Float32Array(0));
  return (n, which) => {
    if (arrays[which]!.length < n) arrays[which] = new Float32Array(Math.max(n, 2 * arrays[which]!.length));
    return arrays[which]!.subarray(0, n);
  };
}
