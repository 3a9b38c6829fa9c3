/**
 * Softmax over the last axis on the addon: tfjs's Softmax kernel (other axes go to the original), and the fused
 * LoomSoftmax and LoomSoftmaxGrad that core/ops/softmax.ts's `softmax` and its gradient run.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, rowsOf, size, values, f32, type Info, type KernelFamily } from './kernel';

export const softmaxFamily: KernelFamily = {
  overrides: ({ native, buffers }) => ({
    Softmax(args) {
      const backend = args.backend as MathBackendCPU;
      const { logits } = args.inputs as { logits: Info };
      const { dim } = (args.attrs ?? {}) as { dim: number };
      const rank = logits.shape.length;
      if (!f32(logits) || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
      const cols = logits.shape[rank - 1]!;
      const out = buffers.fresh(size(logits.shape));
      native.softmax(values(backend, logits), out, size(logits.shape) / cols, cols);
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
  }),
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.softmax]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits } = args.inputs as { logits: Info };
      const out = buffers.fresh(size(logits.shape));
      native.softmax(floatValues(backend, logits), out, ...rowsOf(logits));
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
    [FUSED_KERNELS.softmaxGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, y } = args.inputs as { dy: Info; y: Info };
      if (size(dy.shape) !== size(y.shape)) throw new Error(`${FUSED_KERNELS.softmaxGrad}: dy [${dy.shape}] and y [${y.shape}] differ in size`);
      const out = buffers.fresh(size(y.shape));
      native.softmaxGrad(floatValues(backend, dy), floatValues(backend, y), out, ...rowsOf(y));
      return backend.makeTensorInfo(y.shape, 'float32', out);
    },
  }),
};
