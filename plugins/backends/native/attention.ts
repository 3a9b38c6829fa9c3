/** The fused LoomAttention and LoomAttentionGrad (core/ops/attention.ts's `selfAttention` and its gradient) on the addon. */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, size, type Info, type KernelFamily } from './kernel';

export const attentionFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
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
  }),
};
