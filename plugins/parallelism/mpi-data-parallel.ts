import { z } from 'zod';
import { definePlugin, type Communicator } from '../../core';
import { DataParallelStrategy } from './data-parallel';
import { mpiWorld, type MpiAddon } from './mpi';
import { worldOfOne } from './single-process';

/**
 * A {@link Communicator} over one MPI communicator. Every operation blocks until MPI has completed it (the
 * returned promise is already settled), which is what synchronous data-parallel training needs anyway; a rank
 * that dies makes the launcher end the job (see `mpi.ts`), so no rank waits forever.
 */
export class MpiCommunicator implements Communicator {
  /** Set by {@link free}: the addon may give this id to a later split, so this object must not use it again. */
  private freed = false;

  constructor(
    private readonly addon: MpiAddon,
    /** The communicator's id in the addon (0: MPI_COMM_WORLD). */
    readonly comm: number,
    readonly rank: number,
    readonly worldSize: number,
  ) {}

  async allReduce(buffer: Float32Array): Promise<void> {
    this.addon.allReduce(this.handle(), buffer);
  }

  async reduceScatter(send: Float32Array, recv: Float32Array): Promise<void> {
    if (send.length !== recv.length * this.worldSize)
      throw new RangeError(`mpi: reduceScatter: send has ${send.length} elements, not ${this.worldSize} blocks of ${recv.length}`);
    this.addon.reduceScatterBlock(this.handle(), send, recv);
  }

  async allGather(send: Float32Array, recv: Float32Array): Promise<void> {
    if (recv.length !== send.length * this.worldSize)
      throw new RangeError(`mpi: allGather: recv has ${recv.length} elements, not ${this.worldSize} blocks of ${send.length}`);
    this.addon.allGather(this.handle(), send, recv);
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    this.checkRank(root, 'broadcast root');
    this.addon.broadcast(this.handle(), buffer, root);
  }

  async barrier(): Promise<void> {
    this.addon.barrier(this.handle());
  }

  async send(buffer: Float32Array, dest: number, tag: number): Promise<void> {
    this.checkRank(dest, 'send destination');
    this.addon.send(this.handle(), buffer, dest, tag);
  }

  async recv(buffer: Float32Array, source: number, tag: number): Promise<void> {
    this.checkRank(source, 'recv source');
    this.addon.recv(this.handle(), buffer, source, tag);
  }

  async finalize(): Promise<void> {
    this.addon.finalize();
  }

  /**
   * Sub-communicators (MPI_Comm_split): ranks passing the same `color` form one group, ordered by `key`. Collective
   * over this communicator. Hybrid parallelism splits the world into its data, pipeline and tensor groups
   * (hybrid.ts); whoever splits frees the result ({@link free}) when done with it: the binding holds 64 at most.
   */
  split(color: number, key = this.rank): MpiCommunicator {
    const s = this.addon.split(this.handle(), color, key);
    return new MpiCommunicator(this.addon, s.comm, s.rank, s.size);
  }

  /**
   * Releases a communicator `split` made (MPI_Comm_free: collective, so every rank of it frees it, in the same order
   * as the other ranks free theirs); later calls do nothing, and any other use of it throws. The world (0) is not
   * freed: MPI_Finalize ends it.
   */
  free(): void {
    if (this.freed) return;
    if (this.comm === 0) throw new Error('mpi: MPI_COMM_WORLD is not freed (MPI_Finalize ends it)');
    if (!this.addon.free) throw new Error("mpi: loom's MPI binding predates MPI_Comm_free (free); rebuild it with `npm run build:mpi`");
    this.addon.free(this.comm);
    this.freed = true;
  }

  /**
   * The communicator's id in the addon, for a caller that must call the addon synchronously (tensor parallelism's
   * collectives inside the forward pass); throws once it is freed, as the id may name another communicator by then.
   */
  handle(): number {
    if (this.freed) throw new Error(`mpi: communicator ${this.comm} was freed (MPI_Comm_free)`);
    return this.comm;
  }

  private checkRank(r: number, what: string): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.worldSize)
      throw new RangeError(`mpi: ${what} ${r} is not a rank of this communicator (0..${this.worldSize - 1})`);
  }
}

/** MPI_COMM_WORLD when an MPI launcher started this process, else a world of one (named `who` in its errors). */
export function worldCommunicator(who: string): Communicator {
  const w = mpiWorld();
  return w ? new MpiCommunicator(w.addon, 0, w.rank, w.size) : worldOfOne(`${who} (not started by an MPI launcher: a world of one)`);
}

/**
 * Synchronous data parallelism on Open MPI: launched as `mpirun -np N node ...` (or `srun`, or an MPIJob), each
 * rank holds the whole model, starts from rank 0's weights, trains on its own shard of every epoch and averages
 * gradients with one fused MPI_Allreduce per step (data-parallel.ts); only rank 0 logs and writes checkpoints.
 * `trainer.batchSize` is per rank: N ranks step on a global batch N times larger. Started without a launcher it
 * is a world of one and needs no MPI. `{"type": "mpi-data-parallel", "zero": 1}` shards the optimizer state (ZeRO
 * stage 1, zero.ts).
 */
export default definePlugin({
  kind: 'parallelism',
  name: 'mpi-data-parallel',
  description: 'data-parallel training over Open MPI (mpirun/srun/MPIJob); a world of one without a launcher',
  schema: z.object({
    /**
     * ZeRO stage (Rajbhandari et al. 2020): 0 (default) keeps the whole optimizer state on every rank; 1 shards it,
     * each rank keeping the moments of 1/N of the parameters (gradients reduce-scattered, parameters all-gathered).
     */
    zero: z.union([z.literal(0), z.literal(1)]).optional(),
  }),
  properties: [
    'one fused all-reduce of all gradients per step; batchSize is per rank',
    'zero: 1 gives the trajectory of unsharded Adam with 1/N of its moments per rank (mpi.test.ts)',
  ],
  create: (opts) => new DataParallelStrategy(worldCommunicator('mpi-data-parallel'), { zero: opts.zero }),
});
