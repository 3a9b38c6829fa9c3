/**
 * The LSTM cell's fused kernels (core/kernels.ts): a time step's ~16 elementwise kernels forward and ~25 backward,
 * each a trip through tfjs's engine with its own output tensor, as one native call each, with the same roundings.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, type Info, type KernelFamily } from './kernel';

const float32 = (name: string, ts: Record<string, Info | undefined>) => {
  for (const [k, t] of Object.entries(ts)) if (t && t.dtype !== 'float32') throw new Error(`${name}: ${k} is ${t.dtype}, not float32`);
};

export const lstmFamily: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.lstmCell]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { zx, hu, c } = args.inputs as Record<string, Info>;
      const { t } = args.attrs as { t: number };
      float32(FUSED_KERNELS.lstmCell, { zx, hu, c });
      const [batch, time, w] = zx!.shape as [number, number, number];
      const u = w / 4;
      if (zx!.shape.length !== 3 || !Number.isInteger(u) || hu!.shape.join() !== `${batch},${w}` || c!.shape.join() !== `${batch},${u}`)
        throw new Error(
          `${FUSED_KERNELS.lstmCell}: zx [${zx!.shape}], hu [${hu!.shape}] and c [${c!.shape}] do not fit [batch, time, 4u], [batch, 4u], [batch, u]`,
        );
      const [h, c2, gates] = [buffers.fresh(batch * u), buffers.fresh(batch * u), buffers.fresh(batch * w)];
      native.lstmCell(floatValues(backend, zx!), floatValues(backend, hu!), floatValues(backend, c!), h, c2, gates, batch, u, time, t);
      return [
        backend.makeTensorInfo([batch, u], 'float32', h),
        backend.makeTensorInfo([batch, u], 'float32', c2),
        backend.makeTensorInfo([batch, w], 'float32', gates),
      ];
    },
    [FUSED_KERNELS.lstmCellGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dh, dy, gates, cs, dc } = args.inputs as Record<string, Info | undefined>;
      const { t, dyAt } = args.attrs as { t: number; dyAt: 'sequence' | 'last' | 'none' };
      float32(FUSED_KERNELS.lstmCellGrad, { dh, dy, gates, cs, dc });
      const [time, batch, w] = gates!.shape as [number, number, number];
      const u = w / 4;
      const want = { dh: [batch, u], dc: [batch, u], cs: [time + 1, batch, u] };
      const dyShape = dyAt === 'sequence' ? [batch, time, u] : dyAt === 'last' ? [batch, u] : null;
      const bad =
        gates!.shape.length !== 3 ||
        !Number.isInteger(u) ||
        Object.entries(want).some(([k, s]) => (args.inputs as Record<string, Info>)[k]!.shape.join() !== s.join()) ||
        (dyShape ? dy?.shape.join() !== dyShape.join() : false);
      if (bad)
        throw new Error(
          `${FUSED_KERNELS.lstmCellGrad}: dh [${dh!.shape}], dy [${dy?.shape ?? ''}], gates [${gates!.shape}], cs [${cs!.shape}] and dc [${dc!.shape}] do not fit gates [time, batch, 4u]`,
        );
      const [dz, dcOut] = [buffers.fresh(batch * w), buffers.fresh(batch * u)];
      const none = new Float32Array(0);
      native.lstmCellGrad(
        floatValues(backend, dh!),
        dyShape ? floatValues(backend, dy!) : none,
        dyAt === 'sequence' ? time : dyAt === 'last' ? 1 : 0,
        dyAt === 'sequence' ? t : 0,
        floatValues(backend, gates!),
        floatValues(backend, cs!),
        floatValues(backend, dc!),
        dz,
        dcOut,
        batch,
        u,
        time,
        t,
      );
      return [backend.makeTensorInfo([batch, w], 'float32', dz), backend.makeTensorInfo([batch, u], 'float32', dcOut)];
    },
  }),
};
