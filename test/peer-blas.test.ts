/**
 * The benchmark's choice of the peers' BLAS core: the fastest correct core (for numpy's sgemm, and for PyTorch's own
 * products), and never a ratio against a handicapped peer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type BlasProbe, candidateCores, chooseBlas, otherCapabilities, peerEnv, simdCap, VECTOR_CORES } from '../benchmarks/peer-blas';

const probe = (over: Partial<BlasProbe>): BlasProbe => ({
  blas: 'openblas',
  library: '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so',
  core: 'Haswell',
  version: '0.3.21',
  threads: 2,
  correct: true,
  gflops: 100,
  coretype: null,
  ...over,
});

describe('candidateCores', () => {
  it('tries the AVX-512 cores only where the CPU has AVX-512 (Cooperlake only with avx512_bf16), AVX2 cores where it has AVX2', () => {
    expect(candidateCores(new Set(['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16']))).toEqual({
      simd: 'avx512',
      cores: ['SkylakeX', 'Cooperlake', 'Haswell', 'Zen'],
    });
    expect(candidateCores(new Set(['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl'])).cores).not.toContain('Cooperlake');
    expect(candidateCores(new Set(['avx2', 'fma']))).toEqual({ simd: 'avx2', cores: ['Haswell', 'Zen'] });
    expect(candidateCores(new Set(['sse2']))).toEqual({ simd: 'other', cores: [] });
  });

  it('under an AVX2 cap (LOOM_SIMD=avx2) treats an AVX-512 host as an AVX2 one', () => {
    const avx512 = new Set(['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16']);
    expect(candidateCores(avx512, 'avx2')).toEqual({ simd: 'avx2', cores: ['Haswell', 'Zen'] });
    expect(simdCap({ LOOM_SIMD: 'avx2' })).toBe('avx2');
    expect(simdCap({ LOOM_SIMD: 'scalar' })).toBeUndefined();
    expect(simdCap({})).toBeUndefined();
  });
});

describe("PyTorch's instruction-set settings", () => {
  it('tries the other ATen level on an AVX-512 host only, whichever torch chose', () => {
    expect(otherCapabilities('avx512', 'AVX2')).toEqual(['avx512']);
    expect(otherCapabilities('avx512', 'AVX512')).toEqual(['avx2']);
    expect(otherCapabilities('avx512', 'DEFAULT')).toEqual(['avx2', 'avx512']);
    expect(otherCapabilities('avx2', 'AVX2')).toEqual([]);
    expect(otherCapabilities('avx512', null)).toEqual([]);
  });

  it("never passes this environment's core or ISA settings on to a peer, sets the ones asked for, and caps both ATen and oneDNN under LOOM_SIMD=avx2", () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { OPENBLAS_CORETYPE: 'Prescott', ATEN_CPU_CAPABILITY: 'default', ONEDNN_MAX_CPU_ISA: 'SSE41', DNNL_MAX_CPU_ISA: 'SSE41' });
      delete process.env.LOOM_SIMD;
      const plain = peerEnv();
      for (const k of ['OPENBLAS_CORETYPE', 'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA']) expect(plain[k]).toBeUndefined();
      expect(peerEnv('Zen', 'avx512')).toMatchObject({ OPENBLAS_CORETYPE: 'Zen', ATEN_CPU_CAPABILITY: 'avx512' });
      process.env.LOOM_SIMD = 'avx2';
      // The cap wins over a level asked for: an AVX2 comparison never runs a peer's AVX-512 code.
      expect(peerEnv('Haswell', 'avx512')).toMatchObject({
        OPENBLAS_CORETYPE: 'Haswell',
        ATEN_CPU_CAPABILITY: 'avx2',
        ONEDNN_MAX_CPU_ISA: 'AVX2',
        DNNL_MAX_CPU_ISA: 'AVX2',
      });
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});

describe('chooseBlas', () => {
  it('runs the peers on the fastest core that computed correctly and ran the core it was asked for', () => {
    const cores = ['SkylakeX', 'Cooperlake', 'Haswell', 'Zen'];
    fc.assert(
      fc.property(
        fc.record({ own: fc.double({ min: 1, max: 500, noNaN: true }), ownCore: fc.constantFrom('Prescott', 'Haswell', 'Cooperlake') }),
        fc.array(fc.record({ gflops: fc.double({ min: 1, max: 500, noNaN: true }), correct: fc.boolean(), honoured: fc.boolean() }), {
          minLength: 4,
          maxLength: 4,
        }),
        ({ own, ownCore }, runs) => {
          const base = probe({ core: ownCore, gflops: own });
          const tried = runs.map((r, i) => probe({ coretype: cores[i]!, core: r.honoured ? cores[i]! : ownCore, gflops: r.gflops, correct: r.correct }));
          const choice = chooseBlas(base, tried, 'avx512');
          const usable = [base, ...tried].filter((p) => p.correct && (p.coretype === null || p.core === p.coretype));
          const best = usable.reduce((a, b) => (b.gflops > a.gflops ? b : a));
          if (!VECTOR_CORES.includes(best.core!)) {
            expect(choice.handicap).toMatch(/generic core Prescott/);
            return;
          }
          expect(choice.handicap).toBeUndefined();
          expect(choice.coretype).toBe(best.coretype ?? undefined);
          expect(choice.detail).toContain(`core ${best.core}`);
        },
      ),
    );
  });

  it('says when OpenBLAS chose a generic fallback core, and names every core it tried with its speed', () => {
    const own = probe({ core: 'Prescott', gflops: 40 });
    const tried = [probe({ coretype: 'SkylakeX', core: 'SkylakeX', gflops: 232 }), probe({ coretype: 'Haswell', core: 'Haswell', gflops: 104 })];
    const choice = chooseBlas(own, tried, 'avx512');
    expect(choice.coretype).toBe('SkylakeX');
    expect(choice.detail).toMatch(
      /its own choice Prescott is a generic fallback; tried Prescott \(own choice\) 40 GFLOP\/s, SkylakeX 232 GFLOP\/s, Haswell 104/,
    );
  });

  it('never chooses a core that computed a wrong product, however fast', () => {
    const choice = chooseBlas(
      probe({ core: 'Haswell', gflops: 100 }),
      [probe({ coretype: 'SkylakeX', core: 'SkylakeX', gflops: 900, correct: false })],
      'avx512',
    );
    expect(choice.coretype).toBeUndefined();
    expect(choice.detail).toMatch(/core Haswell \(its own choice; tried .*SkylakeX WRONG RESULT/);
  });

  it("gives PyTorch's peers the correct vector core fastest at PyTorch's products, numpy's the one fastest at sgemm", () => {
    const own = probe({ core: 'Cooperlake', gflops: 150, torch_gflops: 50 });
    const tried = [
      probe({ coretype: 'Haswell', core: 'Haswell', gflops: 190, torch_gflops: 23 }),
      probe({ coretype: 'Zen', core: 'Zen', gflops: 160, torch_gflops: 60 }),
      probe({ coretype: 'SkylakeX', core: 'SkylakeX', gflops: 140, torch_gflops: 900, correct: false }),
    ];
    const choice = chooseBlas(own, tried, 'avx512');
    expect(choice.coretype).toBe('Haswell');
    expect(choice.torch?.coretype).toBe('Zen');
    expect(choice.torch?.detail).toMatch(
      /core Zen \(OPENBLAS_CORETYPE; its own choice Cooperlake; chosen by PyTorch's .*Cooperlake \(own choice\) 50\.0, Haswell 23\.0, Zen 60\.0\)/,
    );
    // OpenBLAS's own core when it is the fastest for PyTorch: no OPENBLAS_CORETYPE.
    const ownBest = chooseBlas(own, tried.slice(0, 1), 'avx512');
    expect(ownBest.torch).toEqual({ detail: expect.stringContaining('core Cooperlake (its own choice;') });
    // No torch (no torch_gflops): PyTorch's peers, if any, take numpy's choice.
    expect(chooseBlas(probe({ core: 'Cooperlake' }), [probe({ coretype: 'Haswell', core: 'Haswell', gflops: 190 })], 'avx512').torch).toBeUndefined();
  });

  it("under an AVX2 cap never keeps OpenBLAS's own AVX-512 core, however fast", () => {
    const own = probe({ core: 'SkylakeX', gflops: 230 });
    const tried = [probe({ coretype: 'Haswell', core: 'Haswell', gflops: 100 }), probe({ coretype: 'Zen', core: 'Zen', gflops: 120 })];
    expect(chooseBlas(own, tried, 'avx2', 'avx2').coretype).toBe('Zen');
    expect(chooseBlas(own, tried, 'avx512').coretype).toBeUndefined();
  });

  it('reports the reference BLAS, or only generic cores on a vector CPU, as a handicap instead of a peer to compare with', () => {
    expect(chooseBlas(probe({ blas: 'reference', core: null, library: '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0' }), [], 'avx2').handicap).toMatch(
      /reference BLAS .*libopenblas0-pthread/,
    );
    const generic = chooseBlas(probe({ core: 'Prescott' }), [probe({ coretype: 'Haswell', core: 'Haswell', correct: false })], 'avx2');
    expect(generic.handicap).toMatch(/generic core Prescott on this avx2 CPU/);
    // On a CPU without AVX2 the generic core is the best there is: no handicap.
    expect(chooseBlas(probe({ core: 'Prescott' }), [], 'other').handicap).toBeUndefined();
  });
});
