/** The fused LoomAdam step (core/kernels.ts): one pass over a tensor instead of a dozen elementwise kernels. */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, size, type Info, type KernelFamily } from './kernel';

export const adamFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.adam]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { param, grad, m, v } = args.inputs as Record<string, Info>;
      const at = args.attrs as Record<string, number>;
      const n = size(param!.shape);
      const out = [buffers.fresh(n), buffers.fresh(n), buffers.fresh(n)] as const;
      const arr = (t: Info) => floatValues(backend, t);
      native.adam(arr(param!), arr(grad!), arr(m!), arr(v!), out[0], out[1], out[2], at.lr!, at.beta1!, at.beta2!, at.epsilon!, at.c1!, at.c2!);
      return out.map((o) => backend.makeTensorInfo(param!.shape, 'float32', o));
    },
  }),
};
