/** Facts about where a run happens, recorded as tags so a reproduction says what it ran on. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';

/** The commit of loom's own checkout (not of the directory a run happens to start in), `+dirty` when modified. */
export function gitCommit(cwd = path.dirname(fileURLToPath(import.meta.url))): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}

/**
 * The commit and GPU as they were when this process first asked: a long run (several variants) keeps reporting
 * the code it actually runs, even if the checkout moves on meanwhile.
 */
let processFacts: { commit: string; gpu: string | null; cpu: string } | undefined;

/** The first GPU's name from nvidia-smi, or null where there is none. */
function gpuModel(): string | null {
  try {
    return (
      execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 3000 })
        .toString()
        .split('\n')[0]!
        .trim() || null
    );
  } catch {
    return null;
  }
}

/**
 * What identifies the CPU beyond its model name (which a VM may cut to "AMD EPYC"): vendor, family, model and
 * stepping from /proc/cpuinfo, and the vector extensions that decide which kernels run, e.g. `AuthenticAMD family 26
 * model 2 stepping 1: avx2 avx512f avx512_vnni avx512_bf16` (AMD Zen 5) or `... amx_bf16 amx_int8` on a Xeon with
 * AMX. `unknown` where /proc/cpuinfo is not there; on AArch64 the implementer and part.
 */
export function cpuIdentity(cpuinfo: string = readCpuinfo()): string {
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim();
  const flags = cpuFlags(cpuinfo);
  const vector = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8', 'asimd', 'sve'].filter((f) => flags.has(f));
  const family = field('cpu family');
  const id =
    family !== undefined
      ? `${field('vendor_id') ?? '?'} family ${family} model ${field('model') ?? '?'} stepping ${field('stepping') ?? '?'}`
      : field('CPU implementer') !== undefined
        ? `implementer ${field('CPU implementer')} part ${field('CPU part') ?? '?'}`
        : 'unknown';
  return vector.length > 0 ? `${id}: ${vector.join(' ')}` : id;
}

/** /proc/cpuinfo's text, empty where there is none. */
function readCpuinfo(): string {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** The CPU's feature flags (x86-64 `flags`, AArch64 `Features`) from /proc/cpuinfo's text; empty where there is none. */
export function cpuFlags(cpuinfo: string = readCpuinfo()): Set<string> {
  const line = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  return new Set(line.trim().split(/\s+/).filter(Boolean));
}

export function environmentTags(): Record<string, string> {
  const cpus = os.cpus();
  processFacts ??= { commit: gitCommit(), gpu: gpuModel(), cpu: cpuIdentity() };
  return {
    'git.commit': processFacts.commit,
    ...(processFacts.gpu ? { 'gpu.model': processFacts.gpu } : {}),
    'node.version': process.version,
    'tfjs.version': tf.version_core,
    host: os.hostname(),
    platform: `${os.platform()}-${os.arch()}`,
    'cpu.model': cpus[0]?.model ?? 'unknown',
    'cpu.count': String(cpus.length),
    'cpu.id': processFacts.cpu,
  };
}
