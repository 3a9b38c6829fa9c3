/**
 * bf16 products against fp32 on the same host (issue 20, item 3: "measured: step time against fp32 on an AMX host"):
 * training samples/s of the seed's MNIST CNN at batch 128 and forward+backward tokens/s of a Transformer encoder
 * layer (256/4/1024, t64, b32), each with the backend's products in bf16 (`trainer.precision: bf16`, the best path
 * here: amx, avx512_bf16 or portable) and in fp32, in alternation in one process (three rounds, medians). The ratio
 * is bf16's rate over fp32's: above 1 where bf16 products are faster. The portable path rounds both operands into
 * copies before the fp32 kernel, so it is slower than fp32 by construction; it exists for the numerics, and its row
 * says so.
 */
import type { Backend, PluginRegistry } from '../core';
import { entry, measure, median, type Benchmark, type PeerResult } from './harness';
import { mnistTrainStep } from './mnist-cnn';
import { oursRunner } from './sequence-models';

/** bf16's and fp32's rates of `rate`, alternating (bf16 first in even rounds, fp32 first in odd ones). */
async function alternate(backend: Backend, rate: () => Promise<number>, rounds = 3) {
  const set = (p: 'fp32' | 'bf16') => backend.setPrecision!(p)['backend.precision']!;
  const bf16: number[] = [];
  const fp32: number[] = [];
  let path = '';
  try {
    for (let r = 0; r < rounds; r++)
      for (const p of r % 2 === 0 ? (['bf16', 'fp32'] as const) : (['fp32', 'bf16'] as const)) {
        const name = set(p);
        if (p === 'bf16') path = name;
        (p === 'bf16' ? bf16 : fp32).push(await rate());
      }
  } finally {
    set('fp32');
  }
  return { bf16: median(bf16), fp32: median(fp32), path };
}

export function precision(registry: PluginRegistry, backend: Backend, backendName: string): Benchmark {
  return {
    name: 'precision',
    description: 'bf16 products against fp32 on this host: MNIST CNN training b128, Transformer encoder layer fwd+bwd',
    async run() {
      if (!backend.setPrecision) throw new Error(`precision: the ${backendName} backend has no bf16 products (native-cpu has)`);
      const rows = [];
      const note = (path: string) =>
        path === 'bf16 (portable)' ? `${path}: operands rounded into copies, then the fp32 kernel (for the numerics; no bf16 arithmetic on this CPU)` : path;
      const fp32Peer = (value: number, what: string): PeerResult => ({
        peer: 'loom fp32',
        value,
        unit: what,
        detail: `the same loop, trainer.precision fp32, on ${backendName}`,
      });

      const mnist = await mnistTrainStep(registry, 128);
      const m = await alternate(backend, () => measure(mnist.step, 128, { seconds: 3, repeats: 1 }));
      mnist.dispose();
      rows.push(entry('mnist-cnn train b128 bf16', 'samples/s', m.bf16, `loom on ${backendName}, ${note(m.path)}`, [fp32Peer(m.fp32, 'samples/s')]));

      const enc = oursRunner(registry, { inputShape: [64, 256], layers: [{ type: 'transformer-encoder', numHeads: 4, ff: 1024, dropout: 0 }] }, 32);
      const e = await alternate(backend, enc.rate);
      enc.dispose();
      rows.push(
        entry('transformer encoder 256/4/1024 t64 b32 fwd+bwd bf16', 'tokens/s', e.bf16, `loom transformer-encoder plugin on ${backendName}, ${note(e.path)}`, [
          fp32Peer(e.fp32, 'tokens/s'),
        ]),
      );
      return rows;
    },
  };
}
