/**
 * Open MPI (or any MPI-3 library) from Node: the thin N-API addon in native/mpi (built with `mpicc`), loaded only
 * when a launcher (`mpirun`, `srun`, the Kubeflow MPI Operator) started this process, so a plain `node` run needs
 * no MPI installed and is a world of one. Loading initialises MPI once per process (MPI_Init_thread,
 * MPI_THREAD_FUNNELED: every call is made from the JavaScript thread) and installs an exit hook: a rank that ends
 * with a non-zero code (an uncaught exception included) before MPI_Finalize calls MPI_Abort, so the launcher ends
 * the whole job with a non-zero status instead of leaving the other ranks blocked in a collective; a rank that ends
 * normally finalizes MPI.
 */
import * as os from 'node:os';
import { loomPath } from '../../core/package-root';

/** A typed array the addon reduces and transfers (MPI_FLOAT, MPI_DOUBLE, MPI_INT). */
export type MpiBuffer = Float32Array | Float64Array | Int32Array;

/** native/mpi/src/mpi.c. Communicators are small integers; 0 is MPI_COMM_WORLD. All calls block. */
export interface MpiAddon {
  init(): { rank: number; size: number; threadLevel: number; library: string };
  allReduce(comm: number, buffer: MpiBuffer): void;
  /** MPI_Reduce_scatter_block, sum: `send` is size blocks of recv.length; rank r receives the sum of block r. */
  reduceScatterBlock(comm: number, send: MpiBuffer, recv: MpiBuffer): void;
  /** MPI_Allgather: `recv` is size blocks of send.length; block r comes from rank r. */
  allGather(comm: number, send: MpiBuffer, recv: MpiBuffer): void;
  broadcast(comm: number, buffer: MpiBuffer, root: number): void;
  barrier(comm: number): void;
  send(comm: number, buffer: MpiBuffer, dest: number, tag: number): void;
  recv(comm: number, buffer: MpiBuffer, source: number, tag: number): void;
  split(comm: number, color: number, key: number): { comm: number; rank: number; size: number };
  /**
   * MPI_Comm_free of a communicator `split` made (collective over its ranks); its id is taken again by a later
   * `split`. Absent from a binding built before it existed (`npm run build:mpi` rebuilds it).
   */
  free?(comm: number): void;
  abort(code: number): void;
  finalize(): void;
  finalized(): boolean;
}

export interface MpiWorld {
  addon: MpiAddon;
  rank: number;
  size: number;
  /** MPI's first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4, ...". */
  library: string;
}

export const MPI_ADDON_PATH = loomPath('native/mpi/build/Release/loom_mpi.node');

/**
 * The environment variable that shows an MPI launcher started this process, or null: `OMPI_COMM_WORLD_SIZE`
 * (Open MPI's mpirun), `PMIX_RANK` (PMIx: Open MPI ≥ 4, `srun --mpi=pmix`), `PMI_RANK` (MPICH's hydra,
 * `srun --mpi=pmi2`), or `SLURM_STEP_NUM_TASKS` > 1 (a Slurm job step of several tasks).
 */
export function mpiLaunchVariable(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const v of ['OMPI_COMM_WORLD_SIZE', 'PMIX_RANK', 'PMI_RANK']) if (env[v] !== undefined) return `${v}=${env[v]}`;
  if (Number(env.SLURM_STEP_NUM_TASKS ?? 1) > 1) return `SLURM_STEP_NUM_TASKS=${env.SLURM_STEP_NUM_TASKS}`;
  return null;
}

/** MPI is one per process, so its state is too (like the native kernels' addon). */
let world: MpiWorld | null | undefined;

/**
 * The MPI world of this process: null when no launcher started it; otherwise the addon, initialised once.
 * Throws, naming the launcher's variable and what to install, when launched but the addon is not built.
 */
export function mpiWorld(): MpiWorld | null {
  if (world !== undefined) return world;
  const launched = mpiLaunchVariable();
  if (!launched) return (world = null);
  const module = { exports: {} as MpiAddon };
  try {
    // RTLD_GLOBAL: Open MPI loads its components with dlopen and they resolve symbols of libmpi globally.
    process.dlopen(module, MPI_ADDON_PATH, os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL);
  } catch (e) {
    throw new Error(
      `mpi: this process was started by an MPI launcher (${launched}) but loom's MPI binding cannot load ` +
        `(${(e as Error).message.split('\n')[0]}); install Open MPI with its headers (apt-get install openmpi-bin libopenmpi-dev) and run \`npm run build:mpi\``,
    );
  }
  const addon = module.exports;
  const info = addon.init();
  // Node prints an uncaught error only after 'exit' listeners ran, and MPI_Abort there ends the process first.
  process.on('uncaughtExceptionMonitor', (err) => {
    process.stderr.write(`loom: rank ${info.rank} of ${info.size} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  });
  process.on('exit', (code) => {
    if (addon.finalized()) return;
    if (code === 0) {
      addon.finalize();
      return;
    }
    process.stderr.write(
      `loom: rank ${info.rank} of ${info.size} is exiting with code ${code}; aborting the MPI job (MPI_Abort) so the other ranks stop too\n`,
    );
    addon.abort(code);
  });
  return (world = { addon, rank: info.rank, size: info.size, library: info.library });
}
