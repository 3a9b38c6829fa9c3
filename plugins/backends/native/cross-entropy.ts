/**
 * The fused LoomCrossEntropy and LoomCrossEntropyGrad (softmax cross-entropy with label smoothing, which the
 * sparse-categorical-crossentropy loss runs) on the addon.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, rowsOf, size, type Info, type KernelFamily } from './kernel';

export const crossEntropyFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.crossEntropy]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits, labels } = args.inputs as { logits: Info; labels: Info };
      const [rows, cols] = rowsOf(logits);
      if (logits.shape.length !== 2 || labels.dtype !== 'int32' || size(labels.shape) !== rows) {
        throw new Error(`${FUSED_KERNELS.crossEntropy}: logits [${logits.shape}] and int32 labels [${labels.shape}] (${labels.dtype}) do not fit`);
      }
      const out = buffers.fresh(rows);
      native.crossEntropy(
        floatValues(backend, logits),
        backend.data.get(labels.dataId).values as Int32Array,
        out,
        rows,
        cols,
        (args.attrs as { labelSmoothing: number }).labelSmoothing,
      );
      return backend.makeTensorInfo([rows], 'float32', out);
    },
    [FUSED_KERNELS.crossEntropyGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits, labels, scale } = args.inputs as { logits: Info; labels: Info; scale: Info };
      const [rows, cols] = rowsOf(logits);
      if (logits.shape.length !== 2 || labels.dtype !== 'int32' || size(labels.shape) !== rows || size(scale.shape) !== rows) {
        throw new Error(`${FUSED_KERNELS.crossEntropyGrad}: logits [${logits.shape}], int32 labels [${labels.shape}] and scale [${scale.shape}] do not fit`);
      }
      const out = buffers.fresh(rows * cols);
      native.crossEntropyGrad(
        floatValues(backend, logits),
        backend.data.get(labels.dataId).values as Int32Array,
        floatValues(backend, scale),
        out,
        rows,
        cols,
        (args.attrs as { labelSmoothing: number }).labelSmoothing,
      );
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
  }),
};
