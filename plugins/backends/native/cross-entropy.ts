/**
 * The fused LoomCrossEntropy and LoomCrossEntropyGrad (softmax cross-entropy with label smoothing, which the
 * sparse-categorical-crossentropy loss runs) on the addon.
 *
 * LoomCrossEntropy remembers its last call: a language model's training step runs it twice on the same logits and
 * labels (the loss, then the perplexity metric), and over a 13,845-word vocabulary each pass is ~5 % of the step. A
 * call with the same logits and labels tensors (the same tfjs data ids: tensors are immutable, and a new tensor
 * never gets a released one's id) and the same smoothing returns a copy of the remembered rows.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, rowsOf, size, type Info, type KernelFamily } from './kernel';

export const crossEntropyFamily: KernelFamily = {
  fused: ({ native, buffers }) => {
    let last: { logits: object; labels: object; smoothing: number; rows: Float32Array } | null = null;
    return {
      [FUSED_KERNELS.crossEntropy]: (args) => {
        const backend = args.backend as MathBackendCPU;
        const { logits, labels } = args.inputs as { logits: Info; labels: Info };
        const [rows, cols] = rowsOf(logits);
        if (logits.shape.length !== 2 || labels.dtype !== 'int32' || size(labels.shape) !== rows) {
          throw new Error(`${FUSED_KERNELS.crossEntropy}: logits [${logits.shape}] and int32 labels [${labels.shape}] (${labels.dtype}) do not fit`);
        }
        const smoothing = (args.attrs as { labelSmoothing: number }).labelSmoothing;
        const out = buffers.fresh(rows);
        if (last && last.logits === logits.dataId && last.labels === labels.dataId && last.smoothing === smoothing && last.rows.length === rows) {
          out.set(last.rows);
        } else {
          native.crossEntropy(floatValues(backend, logits), backend.data.get(labels.dataId).values as Int32Array, out, rows, cols, smoothing);
          last = { logits: logits.dataId, labels: labels.dataId, smoothing, rows: Float32Array.from(out) };
        }
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
    };
  },
};
