/** The fused LoomLayerNorm and LoomLayerNormGrad (core/ops/layer-norm.ts's `layerNorm` and its gradient) on the addon. */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, rowsOf, size, type Info, type KernelFamily } from './kernel';

export const layerNormFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.layerNorm]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
      if (size(gamma.shape) !== x.shape.at(-1) || size(beta.shape) !== x.shape.at(-1)) {
        throw new Error(`${FUSED_KERNELS.layerNorm}: gamma [${gamma.shape}] and beta [${beta.shape}] must match the last axis of x [${x.shape}]`);
      }
      const out = buffers.fresh(size(x.shape));
      const { epsilon } = args.attrs as { epsilon: number };
      native.layerNorm(floatValues(backend, x), floatValues(backend, gamma), floatValues(backend, beta), out, ...rowsOf(x), epsilon);
      return backend.makeTensorInfo(x.shape, 'float32', out);
    },
    [FUSED_KERNELS.layerNormGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, x, gamma } = args.inputs as { dy: Info; x: Info; gamma: Info };
      const [rows, cols] = rowsOf(x);
      if (size(gamma.shape) !== cols || size(dy.shape) !== size(x.shape)) {
        throw new Error(`${FUSED_KERNELS.layerNormGrad}: dy [${dy.shape}] and gamma [${gamma.shape}] do not fit x [${x.shape}]`);
      }
      const dx = buffers.fresh(size(x.shape)),
        dgamma = buffers.fresh(cols),
        dbeta = buffers.fresh(cols);
      native.layerNormGrad(
        floatValues(backend, dy),
        floatValues(backend, x),
        floatValues(backend, gamma),
        dx,
        dgamma,
        dbeta,
        rows,
        cols,
        (args.attrs as { epsilon: number }).epsilon,
      );
      const outputs: [number[], Float32Array][] = [
        [x.shape, dx],
        [gamma.shape, dgamma],
        [gamma.shape, dbeta],
      ];
      return outputs.map(([shape, v]) => backend.makeTensorInfo(shape, 'float32', v));
    },
  }),
};
