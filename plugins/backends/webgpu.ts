import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, markAsyncReads } from '../../core';
import { registerWebGpuKernels, WEBGPU_KERNELS } from './webgpu-kernels';

/**
 * tfjs's WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) on Dawn's Node binding (the `webgpu` package, whose
 * linux-x64, macOS and Windows binaries ship in the package: nothing is downloaded at install). It runs on any
 * Vulkan, Metal or D3D12 GPU. Both packages are optional dependencies: where either is missing, or Dawn finds no
 * adapter (Debian 12's Mesa 22.3 offers none; Mesa 25 from bookworm-backports offers llvmpipe), the backend says why.
 *
 * Automatic selection takes it on a hardware adapter only (after tfjs-node-gpu, before tfjs-node); a software
 * adapter (llvmpipe, `architecture: "software"`) is used only when asked for (`--backend webgpu`): it is how the
 * tests exercise the GPU kernels on a machine without a GPU, and much slower than native-cpu.
 *
 * WebGPU reads are asynchronous: `dataSync()` of a tensor whose values live on the GPU is unsupported in Node
 * (tfjs's synchronous path draws through an OffscreenCanvas), so loom reads training values with `await data()`
 * and this backend's `readSync` says so when something reads synchronously (CONTRIBUTING, "Native kernels and backends").
 */

/** What Dawn reports about the adapter, and the versions, recorded as run tags. */
export interface WebGpuAdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  software: boolean;
  /** The `webgpu` package's version: the Dawn build its binaries come from. */
  dawn: string;
  tfjs: string;
}

interface GpuAdapterLike {
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean };
  requestDevice(descriptor?: object): Promise<{ lost: Promise<unknown> }>;
  features: Set<string>;
  limits: Record<string, number>;
}

/** `gpu`: Dawn's instance, which lives as long as a reference to it does (the `webgpu` README, "Lifetime"). */
type Probe = { ok: true; facts: WebGpuAdapterFacts; adapter: GpuAdapterLike; gpu: object } | { ok: false; reason: string };

const requireHere = createRequire(import.meta.url);
const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

function packageVersion(name: string): string {
  try {
    return (requireHere(`${name}/package.json`) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** The probe, once per process: it holds Dawn's instance for the process. */
let probed: Promise<Probe> | null = null;

const NO_ADAPTER =
  'Dawn finds no WebGPU adapter (no Vulkan driver: install a GPU driver, or Mesa >= 25 for the software llvmpipe adapter, e.g. mesa-vulkan-drivers from bookworm-backports)';

/**
 * Loads both packages and asks Dawn for a high-performance adapter, once per process. Installs Dawn's WebGPU
 * globals (`GPUBufferUsage`, ...), which tfjs's backend reads, on the first call, not at import.
 */
function probe(): Promise<Probe> {
  probed ??= (async (): Promise<Probe> => {
    let webgpu: { create(flags: string[]): { requestAdapter(o?: object): Promise<GpuAdapterLike | null> }; globals: object };
    try {
      webgpu = await import(/* @vite-ignore */ 'webgpu' as string);
    } catch (e) {
      return { ok: false, reason: `the optional package webgpu (Dawn's Node binding) is not installed or does not load here (${firstLine(e)})` };
    }
    Object.assign(globalThis, webgpu.globals);
    try {
      await import(/* @vite-ignore */ '@tensorflow/tfjs-backend-webgpu' as string);
    } catch (e) {
      return { ok: false, reason: `the optional package @tensorflow/tfjs-backend-webgpu is not installed (${firstLine(e)})` };
    }
    let adapter: GpuAdapterLike | null;
    let gpu: ReturnType<typeof webgpu.create>;
    try {
      gpu = webgpu.create([]);
      // tfjs's backend checks navigator.gpu; set after importing it, so its own registration (which asks
      // navigator.gpu for an adapter at first use) does not happen and the adapter probed here is used.
      const nav = (globalThis as { navigator?: object }).navigator;
      if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
      else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    } catch (e) {
      return { ok: false, reason: `Dawn could not start (${firstLine(e)})` };
    }
    if (!adapter) return { ok: false, reason: NO_ADAPTER };
    const i = adapter.info;
    const facts: WebGpuAdapterFacts = {
      vendor: i.vendor || '?',
      architecture: i.architecture || '?',
      device: i.device || '?',
      description: i.description || '?',
      software: i.architecture === 'software' || i.isFallbackAdapter === true,
      dawn: packageVersion('webgpu'),
      tfjs: packageVersion('@tensorflow/tfjs-backend-webgpu'),
    };
    return { ok: true, facts, adapter, gpu };
  })();
  return probed;
}

/** Adapter facts a child process reports: `webgpu.create([]).requestAdapter(...)` and its info, as JSON. */
const CHILD_PROBE = `
const { create } = await import(process.argv[1]);
const a = await create([]).requestAdapter({ powerPreference: 'high-performance' });
const i = a && a.info;
process.stdout.write(JSON.stringify(i && { vendor: i.vendor, architecture: i.architecture, description: i.description, fallback: i.isFallbackAdapter }));
`;

let peeked: { ok: true; software: boolean; label: string } | { ok: false; reason: string } | null = null;

/**
 * What automatic selection asks: is there a hardware adapter? Asked in a child process, because Dawn writes
 * warnings about llvmpipe's limits to the process's stderr when it enumerates adapters, and a run that ends up on a
 * CPU backend should print nothing of the kind. ~0.7 s, once per process, only where both packages are installed.
 */
function peek(): NonNullable<typeof peeked> {
  if (peeked) return peeked;
  // A process loom starts (a CLI test's run, an MPI rank) inherits its parent's answer instead of asking again.
  const inherited = process.env.LOOM_WEBGPU_PEEK;
  if (inherited) return (peeked = JSON.parse(inherited) as NonNullable<typeof peeked>);
  peeked = peekInChild();
  process.env.LOOM_WEBGPU_PEEK = JSON.stringify(peeked);
  return peeked;
}

function peekInChild(): NonNullable<typeof peeked> {
  let entry: string;
  try {
    entry = pathToFileURL(requireHere.resolve('webgpu')).href;
    requireHere.resolve('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    return { ok: false, reason: `the optional packages webgpu and @tensorflow/tfjs-backend-webgpu are not both installed (${firstLine(e)})` };
  }
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD_PROBE, entry], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0 || r.error) {
    const why = r.error?.message ?? r.stderr.split('\n').find((l) => /Error/.test(l)) ?? `exit status ${r.status}`;
    return { ok: false, reason: `Dawn's adapter probe failed (${why})` };
  }
  const info = JSON.parse(r.stdout || 'null') as { vendor: string; architecture: string; description: string; fallback?: boolean } | null;
  if (!info) return { ok: false, reason: NO_ADAPTER };
  return {
    ok: true,
    software: info.architecture === 'software' || info.fallback === true,
    label: `${info.vendor} "${info.description}"`,
  };
}

/** The adapter Dawn offers here, or why there is none (for the tests' skip reasons and the bundle script). */
export async function webGpuAdapter(): Promise<{ ok: true; facts: WebGpuAdapterFacts } | { ok: false; reason: string }> {
  const p = await probe();
  return p.ok ? { ok: true, facts: p.facts } : p;
}

/** One line naming the adapter and the versions: `mesa software adapter "llvmpipe: ..." (Dawn from webgpu 0.6.2)`. */
export function describeAdapter(f: WebGpuAdapterFacts): string {
  return `tfjs-backend-webgpu ${f.tfjs} on the ${f.vendor} ${f.architecture} adapter "${f.description}" (Dawn from webgpu ${f.dawn})`;
}

let registered = false;

/**
 * Registers tfjs's `webgpu` backend on the adapter probed here (tfjs's own registration asks `navigator.gpu`,
 * which Node does not have), asking for the adapter's limits as tfjs's own factory does.
 */
async function registerOnce(adapter: GpuAdapterLike): Promise<void> {
  if (registered) return;
  registered = true;
  const { WebGPUBackend } = (await import(/* @vite-ignore */ '@tensorflow/tfjs-backend-webgpu' as string)) as {
    WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend;
  };
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      // Not asked for by tfjs's own factory, which leaves the default of 8: AddN binds one buffer per input.
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  // Dawn reports a kernel it rejects (a pipeline over the device's limits) as an uncaptured error, prints it, and
  // drops the work: the results are then garbage. The first such error fails the next read instead.
  let rejected: string | null = null;
  (device as unknown as { onuncapturederror: (e: { error: { message: string } }) => void }).onuncapturederror = (e) => {
    rejected ??= e.error.message;
  };
  const failIfRejected = () => {
    if (rejected === null) return;
    const message = rejected;
    rejected = null;
    throw new Error(`webgpu: the GPU rejected a kernel, so results computed since are wrong: ${firstLine(message)}`);
  };
  const backend = new WebGPUBackend(device, adapter.info) as tf.KernelBackend & { read(dataId: object): Promise<tf.backend_util.BackendValues> };
  const read = backend.read.bind(backend);
  backend.read = async (dataId: object) => {
    const values = await read(dataId);
    failIfRejected();
    return values;
  };
  // tfjs's synchronous read goes through an OffscreenCanvas, which Node lacks: say what to do instead.
  (backend as unknown as { hasReadSyncWarned: boolean }).hasReadSyncWarned = true; // its advice is ours, below, as an error
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: object) => {
    try {
      return readSync(dataId);
    } catch (e) {
      throw new Error(
        `webgpu: a synchronous read (dataSync/arraySync) of a tensor on the GPU is not supported in Node; read it with await tensor.data() (${firstLine(e)})`,
      );
    }
  };
  markAsyncReads(backend); // readToHost fetches before synchronous reads while this backend is active
  tf.registerBackend('webgpu', () => backend, 0);
  chunkAddN(Math.max(2, (l.maxStorageBuffersPerShaderStage ?? 8) - 1));
  registerWebGpuKernels();
}

/**
 * tfjs-backend-webgpu 4.22's AddN binds every input as a storage buffer in one program, so a sum of more inputs than
 * the device's maxStorageBuffersPerShaderStage allows (minus the output) is rejected: clipGradients' global norm over
 * a GPT's parameters sums ~20. AddN is replaced by sums of at most `perProgram` inputs at a time, in order.
 */
function chunkAddN(perProgram: number): void {
  const original = tf.getKernel('AddN', 'webgpu');
  if (!original) return;
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({
    ...original,
    kernelFunc: ({ inputs, backend, attrs }) => {
      let parts = inputs as unknown as tf.TensorInfo[];
      const temporary: tf.TensorInfo[] = [];
      while (parts.length > perProgram) {
        const next: tf.TensorInfo[] = [];
        for (let i = 0; i < parts.length; i += perProgram) {
          const chunk = parts.slice(i, i + perProgram);
          if (chunk.length === 1) next.push(chunk[0]!);
          else {
            const sum = original.kernelFunc({ inputs: chunk as never, backend, attrs }) as tf.TensorInfo;
            temporary.push(sum);
            next.push(sum);
          }
        }
        parts = next;
      }
      const out = original.kernelFunc({ inputs: parts as never, backend, attrs });
      for (const t of temporary) (backend as tf.KernelBackend).disposeData(t.dataId);
      return out;
    },
  });
}

export default definePlugin({
  kind: 'backend',
  name: 'webgpu',
  description: "tfjs-backend-webgpu on Dawn's Node binding (the webgpu package): any Vulkan, Metal or D3D12 GPU; a software adapter only when asked for",
  schema: z.object({}),
  properties: [
    "where Dawn finds an adapter: every layer, activation, loss, optimizer, model and augmentation computes the outputs and gradients tfjs's cpu backend computes (float32 tolerance stated)",
    "GPU memory (numBytesInGPU) and the tensor count stay flat across training steps; a short run logs the cpu run's losses",
    "loom's fused kernels in WGSL (Adam, softmax, layer norm, self-attention, with their gradients) equal float64 references on random shapes, in fewer dispatches per training step (counted)",
  ],
  create: () => ({
    priority: 95,
    async available(requested?: boolean) {
      if (!requested) {
        const q = peek();
        if (!q.ok) return q;
        if (q.software) return { ok: false, reason: `only a software adapter (${q.label}): used only when asked for, with --backend webgpu` };
      }
      const p = await probe();
      return p.ok ? { ok: true } : p;
    },
    async activate() {
      const p = await probe();
      if (!p.ok) throw new Error(`webgpu: ${p.reason}`);
      await registerOnce(p.adapter);
      tf.env().set('PROD', true);
      await tf.setBackend('webgpu');
      await tf.ready();
      const f = p.facts;
      return {
        'backend.kernels': `${describeAdapter(f)}; loom's WGSL kernels: ${Object.keys(WEBGPU_KERNELS).join(', ')}`,
        'backend.adapter': `${f.vendor} ${f.architecture} ${f.description}`,
        'backend.dawn': `webgpu ${f.dawn}`,
      };
    },
  }),
});
