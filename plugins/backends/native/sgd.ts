/** The fused LoomSGD step (core/kernels.ts): one pass over a tensor instead of two to six elementwise kernels. */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, size, type Info, type KernelFamily } from './kernel';

export const sgdFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.sgd]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { param, grad, momentum } = args.inputs as Record<string, Info | undefined>;
      const at = args.attrs as Record<string, number>;
      const n = size(param!.shape);
      const p2 = buffers.fresh(n);
      const b2 = momentum ? buffers.fresh(n) : null;
      const arr = (t: Info) => floatValues(backend, t);
      native.sgd(arr(param!), arr(grad!), momentum ? arr(momentum) : null, p2, b2, at.lr!, at.decay!, at.momentum!, at.nesterov === 1);
      return [p2, ...(b2 ? [b2] : [])].map((o) => backend.makeTensorInfo(param!.shape, 'float32', o));
    },
  }),
};
