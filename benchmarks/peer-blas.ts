/**
 * The Python peers at their best: which BLAS numpy and PyTorch run, and on which OpenBLAS kernel core.
 *
 * Debian's OpenBLAS 0.3.21 picks its kernels by CPUID; on a CPU it does not know it falls back to a generic core
 * (on an Intel Xeon of family 6 model 207 it ran "Prescott" at ~40 GFLOP/s where SkylakeX does ~232), and where
 * apt resolved libblas.so.3 to netlib's reference BLAS the peers run ~50x slower still. A ratio against such a
 * peer says nothing about loom. So before the peers run, {@link peerBlas} probes the BLAS (benchmarks/peers/
 * blas_probe.py: the library, its core, a product of small integers checked exactly, its speed) under the
 * default core and under each OpenBLAS core this CPU's SIMD level can run, and the peers then run with the
 * fastest core that computed the product correctly (`OPENBLAS_CORETYPE`). The reference BLAS, or no correct core
 * with AVX2 kernels on a host that has AVX2, is a handicap: the peers report it instead of a number.
 *
 * numpy's peers (sgemm) get the core fastest at numpy's sgemm; PyTorch's peers the correct vector core fastest at
 * PyTorch's own products (the probe's `torch_gflops`: a batch-1 Linear and a batch's), when torch is installed.
 * One choice for both was the cause of PyTorch's inference peers moving by up to 2x between two quiet benchmark
 * runs (HISTORY.md, runs E and F): sgemm 512 ranked the cores within its noise (Cooperlake in run E, Haswell in
 * run F), and on Haswell's core, which lacks OpenBLAS's small-matrix kernels, PyTorch's GPT generation at batch 1
 * ran 125 tokens/s against 206 on Cooperlake's, its MNIST CNN at batch 1 5,678 inferences/s against 10,779.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuFlags } from '../runtime/environment';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

/** What blas_probe.py prints. */
export interface BlasProbe {
  blas: string;
  library: string;
  core: string | null;
  version: string | null;
  threads: number | null;
  correct: boolean;
  gflops: number;
  /** The OPENBLAS_CORETYPE it ran under (null: OpenBLAS's own choice). */
  coretype: string | null;
  /** PyTorch's products through this core at 1 thread (blas_probe.py's torch_gflops); null or absent without torch. */
  torch_gflops?: number | null;
}

/** The BLAS setting the peers run with, and what to say about it in each row. */
export interface PeerBlas {
  /** OPENBLAS_CORETYPE for the peers, or undefined for OpenBLAS's own choice. */
  coretype?: string;
  /** One line for a row's detail: library, version, core, threads, and why this core. */
  detail: string;
  /** Why no ratio may be reported against these peers (set only when they are handicapped). */
  handicap?: string;
  /** The PyTorch peers' setting where it differs in kind: chosen by PyTorch's own products (absent without torch). */
  torch?: { coretype?: string; detail: string };
}

/** OpenBLAS cores (0.3.21's names) with AVX2 or AVX-512 kernels; any other core on an AVX2 host is a fallback. */
export const VECTOR_CORES = ['Haswell', 'Zen', 'SkylakeX', 'Cooperlake', 'SapphireRapids', 'Excavator'];

/**
 * The instruction set a benchmark run compares at: `avx2` where `LOOM_SIMD=avx2` caps loom's kernels (then every peer
 * is capped at AVX2 too: OpenBLAS's AVX2 cores only, PyTorch's ATen kernels and oneDNN at AVX2), so that an AVX-512
 * host also measures both sides' AVX2 code; otherwise undefined, each side at the host's best.
 */
export function simdCap(env: NodeJS.ProcessEnv = process.env): 'avx2' | undefined {
  return env.LOOM_SIMD === 'avx2' ? 'avx2' : undefined;
}

/** The cores among {@link VECTOR_CORES} whose kernels are AVX-512. */
export const AVX512_CORES = ['SkylakeX', 'Cooperlake', 'SapphireRapids'];

/** The host's SIMD level and the OpenBLAS cores worth trying on it (those whose instructions it has; AVX2 ones under `cap`). */
export function candidateCores(flags: Set<string>, cap?: 'avx2'): { simd: 'avx512' | 'avx2' | 'other'; cores: string[] } {
  if (!cap && flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl'))
    return { simd: 'avx512', cores: ['SkylakeX', ...(flags.has('avx512_bf16') ? ['Cooperlake'] : []), 'Haswell', 'Zen'] };
  if (flags.has('avx2') && flags.has('fma')) return { simd: 'avx2', cores: ['Haswell', 'Zen'] };
  return { simd: 'other', cores: [] };
}

/**
 * The choice, from the probe under OpenBLAS's own core (`own`) and the probes under each candidate core: the
 * fastest among those that computed correctly and ran the core they were asked for (a core the library does not
 * have falls back silently, so the probe reports what ran).
 */
export function chooseBlas(own: BlasProbe, tried: BlasProbe[], simd: 'avx512' | 'avx2' | 'other', cap?: 'avx2'): PeerBlas {
  const name = `${own.blas === 'openblas' ? 'OpenBLAS' : own.blas} ${own.version ?? ''}`.trim();
  if (own.blas === 'reference')
    return {
      detail: `reference BLAS (${own.library})`,
      handicap: `numpy/PyTorch run netlib's reference BLAS (${own.library}), tens of times slower than OpenBLAS: apt-get install libopenblas0-pthread`,
    };
  if (own.blas !== 'openblas') return { detail: `${name} (${own.library})` };
  // Under an AVX2 cap, OpenBLAS's own choice is usable only where it is an AVX2 core (not SkylakeX on an Intel host).
  const allowed = (p: BlasProbe) => !cap || !AVX512_CORES.includes(p.core ?? '');
  const usable = [own, ...tried].filter((p) => p.correct && p.blas === 'openblas' && (p.coretype === null || p.core === p.coretype) && allowed(p));
  const fastest = usable.reduce<BlasProbe | null>((a, b) => (a === null || b.gflops > a.gflops ? b : a), null);
  const measured = [own, ...tried]
    .map((p) => `${p.coretype ?? `${p.core} (own choice)`} ${p.correct ? `${p.gflops.toFixed(0)} GFLOP/s` : 'WRONG RESULT'}`)
    .join(', ');
  const threads = `OpenBLAS threads=${own.threads ?? '?'}`;
  const vectorHost = simd !== 'other';
  if (!fastest || (vectorHost && !VECTOR_CORES.includes(fastest.core ?? '')))
    return {
      detail: `${name} core ${own.core}, ${threads}`,
      handicap: `OpenBLAS runs its generic core ${own.core} on this ${simd} CPU and no core with ${simd} kernels computed correctly (${measured})`,
    };
  const fallback = !VECTOR_CORES.includes(own.core ?? '') && vectorHost;
  const torch = torchChoice(own, usable, vectorHost, name, threads);
  if (fastest === own) return { detail: `${name} core ${own.core} (its own choice; tried ${measured}), ${threads}`, ...torch };
  return {
    coretype: fastest.coretype!,
    detail: `${name} core ${fastest.core} (OPENBLAS_CORETYPE; its own choice ${own.core}${fallback ? ' is a generic fallback' : ''}; tried ${measured}), ${threads}`,
    ...torch,
  };
}

/** The PyTorch peers' core: the usable (vector, on a vector host) core fastest at PyTorch's products, if measured. */
function torchChoice(own: BlasProbe, usable: BlasProbe[], vectorHost: boolean, name: string, threads: string): Pick<PeerBlas, 'torch'> {
  const measured = usable.filter((p) => typeof p.torch_gflops === 'number' && (!vectorHost || VECTOR_CORES.includes(p.core ?? '')));
  if (measured.length === 0) return {};
  const fastest = measured.reduce((a, b) => (b.torch_gflops! > a.torch_gflops! ? b : a));
  const tried = measured.map((p) => `${p.coretype ?? `${p.core} (own choice)`} ${p.torch_gflops!.toFixed(1)}`).join(', ');
  const how = fastest === own ? 'its own choice' : `OPENBLAS_CORETYPE; its own choice ${own.core}`;
  return {
    torch: {
      ...(fastest === own ? {} : { coretype: fastest.coretype! }),
      detail: `${name} core ${fastest.core} (${how}; chosen by PyTorch's 1-thread Linear 1x384->1152 and 128x5408->64, GFLOP/s geometric mean: ${tried}), ${threads}`,
    },
  };
}

/**
 * Debian's python3 and the environment the peers run in: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and the instruction-set
 * settings of PyTorch's ATen (ATEN_CPU_CAPABILITY) and oneDNN (ONEDNN_MAX_CPU_ISA, DNNL_MAX_CPU_ISA) are not taken
 * from this environment; `coretype` and `capability` set the first and the ATen one; under {@link simdCap} `avx2`
 * ATen and oneDNN are capped at AVX2.
 */
export const PYTHON = '/usr/bin/python3';
export function peerEnv(coretype?: string, capability?: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA']) delete env[k];
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  if (simdCap() === 'avx2') Object.assign(env, { ATEN_CPU_CAPABILITY: 'avx2', ONEDNN_MAX_CPU_ISA: 'AVX2', DNNL_MAX_CPU_ISA: 'AVX2' });
  else if (capability) env.ATEN_CPU_CAPABILITY = capability;
  return env;
}

/**
 * The ATen vector-kernel levels (ATEN_CPU_CAPABILITY) worth trying for PyTorch's peers besides torch's own choice
 * (`own`, as `torch.__config__.show()` names it): on an AVX-512 host, the other of AVX2 and AVX-512. Debian's torch
 * 1.13 has both compiled in and runs AVX2 on the AMD Zen 5 host of HISTORY.md's run I although AVX-512 is there;
 * which is faster depends on the model (elementwise maps, reductions, softmax and layer norm run on them; the matrix
 * products run on OpenBLAS and the convolutions on oneDNN, which picks its own level). None under a cap or on an
 * AVX2 host, or when torch's choice could not be read.
 */
export function otherCapabilities(simd: 'avx512' | 'avx2' | 'other', own: string | null): string[] {
  if (simd !== 'avx512' || own === null) return [];
  return ['avx2', 'avx512'].filter((c) => c !== own.toLowerCase());
}

let ownCapability: string | null | undefined;

/** torch's own ATen capability here (e.g. `AVX2`), null where torch is missing; asked once per benchmark run. */
export function torchOwnCapability(): string | null {
  if (ownCapability !== undefined) return ownCapability;
  const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__config__.show())'], { env: peerEnv(), encoding: 'utf8', timeout: 60_000 });
  ownCapability = r.status === 0 ? (/CPU capability usage: (\w+)/.exec(r.stdout)?.[1] ?? null) : null;
  return ownCapability;
}

function probe(coretype?: string): BlasProbe | null {
  const r = spawnSync(PYTHON, [path.join(BENCH_DIR, 'peers', 'blas_probe.py'), '512', '0.5'], { env: peerEnv(coretype), encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as BlasProbe;
}

let chosen: PeerBlas | undefined;

/** The peers' BLAS setting, probed once per benchmark run (a few seconds). */
export function peerBlas(): PeerBlas {
  if (chosen) return chosen;
  const own = fs.existsSync(PYTHON) ? probe() : null;
  if (!own) return (chosen = { detail: 'BLAS not probed (python3 with numpy missing)' });
  const { simd, cores } = candidateCores(cpuFlags(), simdCap());
  const tried = own.blas === 'openblas' ? cores.map((c) => probe(c) ?? { ...own, coretype: c, correct: false, gflops: 0 }) : [];
  chosen = chooseBlas(own, tried, simd, simdCap());
  return chosen;
}
