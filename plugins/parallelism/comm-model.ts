/**
 * The communication model of docs/parallelism.md ("Scale on paper"): bytes each rank puts on the wire per optimizer
 * step, per kind of group, and the step time that follows on a cluster of given link bandwidths. The collectives
 * are counted with the bandwidth-optimal algorithms (Thakur, Rabenseifner & Gropp 2005, "Optimization of Collective
 * Communication Operations in MPICH"; Patarasuk & Yuan 2009 for the ring): a ring all-reduce of B bytes over N ranks
 * sends 2(N−1)/N·B per rank; a reduce-scatter (recursive halving or ring) and an all-gather (ring or recursive
 * doubling) send (N−1)/N·B each, B being the whole buffer. mpi.test.ts checks these numbers against the bytes Open
 * MPI's monitoring component counts on every rank (with those algorithms selected), for data-parallel, ZeRO-1 and
 * pipeline traffic.
 */

/** A ring all-reduce of `bytes` over `n` ranks: what each rank sends (reduce-scatter, then all-gather). */
export function allReduceBytes(n: number, bytes: number): number {
  return n <= 1 ? 0 : (2 * (n - 1) * bytes) / n;
}

/** A reduce-scatter of a `bytes` buffer (n blocks) over `n` ranks: what each rank sends. */
export function reduceScatterBytes(n: number, bytes: number): number {
  return n <= 1 ? 0 : ((n - 1) * bytes) / n;
}

/** An all-gather into a `bytes` buffer (n blocks) over `n` ranks: what each rank sends. */
export function allGatherBytes(n: number, bytes: number): number {
  return n <= 1 ? 0 : ((n - 1) * bytes) / n;
}

/** GPipe's idle fraction of a step with p stages and m micro-batches (Huang et al. 2019, §2.2): (p − 1)/(m + p − 1). */
export function bubbleFraction(p: number, m: number): number {
  return (p - 1) / (m + p - 1);
}

/** Bytes of the header a pipeline transfer sends before each activation (pipeline.ts: 8 float32). */
export const PIPELINE_HEADER_BYTES = 32;

/**
 * Data-parallel gradient traffic of one rank per step, as loom sends it: the gradients of `params` float32 values
 * plus the loss in one all-reduce (data-parallel.ts), or with ZeRO-1 a reduce-scatter of n blocks of ⌈params/n⌉ + 1
 * (the loss rides in each block) and an all-gather of n blocks of ⌈params/n⌉ (zero.ts).
 */
export function dataParallelStepBytes(n: number, params: number, zero: 0 | 1 = 0): number {
  if (zero === 0) return allReduceBytes(n, 4 * (params + 1));
  const s = Math.ceil(params / n);
  return reduceScatterBytes(n, 4 * n * (s + 1)) + allGatherBytes(n, 4 * n * s);
}

/**
 * Pipeline traffic one stage sends per step (pipeline.ts, GPipe): forward, each of the m micro-batches' output
 * activation to the next stage (`outFloats` per example at this stage's end); backward, the gradient of each
 * micro-batch's input to the previous stage (`inFloats` per example), each with its header; plus the step's loss, one
 * float all-reduced over the stages (by recursive doubling, as Open MPI reduces fewer elements than ranks).
 */
export function pipelineStepBytes(o: { stage: number; stages: number; batch: number; microBatches: number; inFloats: number; outFloats: number }): number {
  if (o.stages <= 1) return 0;
  const m = Math.min(o.microBatches, o.batch);
  let bytes = 0;
  if (o.stage < o.stages - 1) bytes += m * PIPELINE_HEADER_BYTES + 4 * o.batch * o.outFloats;
  if (o.stage > 0) bytes += m * PIPELINE_HEADER_BYTES + 4 * o.batch * o.inFloats;
  // The loss: one float all-reduced over the stages; under N ranks Open MPI sends it by recursive doubling.
  return bytes + 4 * Math.ceil(Math.log2(o.stages));
}

/**
 * Tensor-parallel traffic of one Transformer block per step (Megatron-LM, Shoeybi et al. 2019, §3): two all-reduces
 * of the b×s×h activations forward (after attention and after the MLP) and two backward, each a ring all-reduce
 * over the t ranks of the group.
 */
export function tensorBlockStepBytes(t: number, batch: number, seq: number, hidden: number, bytesPerValue = 4): number {
  return 4 * allReduceBytes(t, batch * seq * hidden * bytesPerValue);
}

/** A Transformer's shape, as far as the model needs it (from a paper's preset). */
export interface TransformerShape {
  name: string;
  /** Trainable parameters. */
  params: number;
  layers: number;
  hidden: number;
  seq: number;
  /** Sequences per optimizer step, over all data-parallel replicas. */
  globalBatch: number;
}

/** The cluster the estimates assume: nodes × GPUs, link bandwidths (bytes/s, one direction) and per-GPU speed. */
export interface Cluster {
  nodes: number;
  gpusPerNode: number;
  /** Within a node (NVLink). */
  intraBytesPerSec: number;
  /** Between nodes, per GPU (InfiniBand: one HCA per GPU). */
  interBytesPerSec: number;
  /** Sustained training FLOP/s per GPU (a fraction of the peak). */
  flopsPerSec: number;
}

/** One layout's estimate for one optimizer step. */
export interface StepEstimate {
  layout: string;
  /** Bytes one rank sends per step, by group. */
  dataBytes: number;
  pipelineBytes: number;
  tensorBytes: number;
  computeSec: number;
  bubble: number;
  /** Communication time if nothing overlaps with compute, and the step time (compute / (1 − bubble) + the part of communication not hidden). */
  commSec: number;
  stepSec: number;
  /** The step time with no overlap at all: loom's own step, which all-reduces after the backward pass and blocks. */
  stepSecNoOverlap: number;
  /** Bytes of Adam's moments (m and v, float32) per rank: the stage's share of the parameters, ÷ D with ZeRO-1. */
  momentBytes: number;
}

/**
 * Step time of `model` on `c` with data × pipeline × tensor = c.nodes·c.gpusPerNode ranks (Megatron order: tensor
 * groups inside a node, then data, pipeline across nodes). Compute: 6·params·tokens FLOPs per step (forward 2,
 * backward 4; Kaplan et al. 2020, §2.1) spread over all GPUs. A group whose ranks all sit in one node talks over
 * NVLink, otherwise over InfiniBand (the slowest link of a ring sets its pace). Data-parallel traffic of each
 * stage's gradients (fp32, 4 bytes) overlaps with the backward pass except for the last layer's bucket (`overlap`
 * of it hidden, as PyTorch DDP's buckets do); tensor all-reduces are on the critical path (each waits for the layer
 * before); pipeline transfers overlap with the other micro-batches' compute but for one micro-batch's share (1/m).
 */
export function estimateStep(model: TransformerShape, c: Cluster, d: number, p: number, t: number, m: number, zero: 0 | 1 = 0, overlap = 0.8): StepEstimate {
  const world = c.nodes * c.gpusPerNode;
  if (d * p * t !== world) throw new Error(`layout ${d}x${p}x${t} is not ${world} ranks`);
  const tokens = model.globalBatch * model.seq;
  const computeSec = (6 * model.params * tokens) / (world * c.flopsPerSec);
  const perStage = model.params / (p * t);
  const dataBytes = dataParallelStepBytes(d, perStage, zero);
  const microBatch = model.globalBatch / d / m;
  const act = microBatch * model.seq * model.hidden * 4;
  const pipelineBytes = p > 1 ? 2 * m * act : 0; // a middle stage: forward out, backward in
  const blocksPerStage = model.layers / p;
  const tensorBytes = t > 1 ? blocksPerStage * m * tensorBlockStepBytes(t, microBatch, model.seq, model.hidden) : 0;
  // Ranks of a tensor group are consecutive: inside a node while t ≤ gpusPerNode. A data group's ranks are t apart:
  // inside a node while t·d ≤ gpusPerNode. Pipeline neighbours are t·d apart: inside a node while t·d·p ≤ gpusPerNode.
  const bw = (span: number) => (span <= c.gpusPerNode ? c.intraBytesPerSec : c.interBytesPerSec);
  const tensorSec = tensorBytes / bw(t);
  const dataSec = dataBytes / bw(t * d);
  const pipeSec = pipelineBytes / bw(t * d * p);
  const bubble = bubbleFraction(p, m);
  const commSec = tensorSec + dataSec + pipeSec;
  const exposed = tensorSec + (1 - overlap) * dataSec + (p > 1 ? pipeSec / m : 0);
  return {
    layout: `${d}x${p}x${t}`,
    dataBytes,
    pipelineBytes,
    tensorBytes,
    computeSec,
    bubble,
    commSec,
    stepSec: computeSec / (1 - bubble) + exposed,
    stepSecNoOverlap: computeSec / (1 - bubble) + commSec,
    momentBytes: (8 * perStage) / (zero === 1 ? d : 1),
  };
}

/**
 * The papers' models at their published sizes (the shapes loom's presets scale down), for docs/parallelism.md.
 * Parameters: 12·L·d² per Transformer block with d_ff = 4d (16·L·d² for a decoder block with cross-attention),
 * plus token and position embeddings.
 */
export const PAPER_MODELS: readonly TransformerShape[] = [
  // Radford et al. 2018: 12 blocks, d 768, context 512, BPE vocabulary 40,478, batches of 64 sequences: 117M.
  { name: 'GPT (Radford et al. 2018)', params: 117e6, layers: 12, hidden: 768, seq: 512, globalBatch: 64 },
  // Devlin et al. 2018, BERT-base: 12 blocks, d 768, 512 tokens, 256 sequences per batch: 110M.
  { name: 'BERT-base (Devlin et al. 2018)', params: 110e6, layers: 12, hidden: 768, seq: 512, globalBatch: 256 },
  // Vaswani et al. 2017, base: 6 + 6 blocks, d 512, ~25,000 tokens per batch (1,000 sentences of ~25 tokens): 65M.
  { name: 'Transformer base (Vaswani et al. 2017)', params: 65e6, layers: 12, hidden: 512, seq: 25, globalBatch: 1000 },
];

/**
 * 8 nodes × 8 GPUs (A100-class): NVLink/NVSwitch 300 GB/s per GPU and direction inside a node, InfiniBand HDR
 * 200 Gb/s = 25 GB/s per GPU between nodes, 100 TFLOP/s sustained per GPU (about a third of an A100's bf16 peak).
 */
export const CLUSTER_8X8: Cluster = { nodes: 8, gpusPerNode: 8, intraBytesPerSec: 300e9, interBytesPerSec: 25e9, flopsPerSec: 100e12 };

/** The layouts the document works out: data × pipeline × tensor (micro-batches), ZeRO stage. */
export const LAYOUTS: readonly { d: number; p: number; t: number; m: number; zero: 0 | 1 }[] = [
  { d: 64, p: 1, t: 1, m: 1, zero: 0 },
  { d: 64, p: 1, t: 1, m: 1, zero: 1 },
  { d: 8, p: 1, t: 8, m: 1, zero: 0 },
  { d: 16, p: 4, t: 1, m: 4, zero: 0 },
  { d: 4, p: 2, t: 8, m: 4, zero: 0 },
];

/** The markdown table of docs/parallelism.md ("Scale on paper"), from {@link estimateStep} (a test keeps them equal). */
export function scaleTable(models: readonly TransformerShape[] = PAPER_MODELS, c: Cluster = CLUSTER_8X8): string {
  const mb = (b: number) => (b / 1e6).toFixed(b < 1e7 ? 2 : 0);
  const ms = (s: number) => (s * 1e3).toFixed(1);
  const rows = [
    '| model | D×P×T (m) | MB sent/rank/step: data, pipeline, tensor | Adam moments MB/rank | compute ms | bubble | comm ms | step ms: overlapped, none | efficiency |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const model of models)
    for (const l of LAYOUTS) {
      const e = estimateStep(model, c, l.d, l.p, l.t, l.m, l.zero);
      const layout = `${l.d}×${l.p}×${l.t}${l.p > 1 ? ` (${l.m})` : ''}${l.zero ? ' ZeRO-1' : ''}`;
      rows.push(
        `| ${model.name} | ${layout} | ${mb(e.dataBytes)}, ${mb(e.pipelineBytes)}, ${mb(e.tensorBytes)} | ${mb(e.momentBytes)} | ${ms(e.computeSec)} | ${(e.bubble * 100).toFixed(0)} % | ${ms(e.commSec)} | ${ms(e.stepSec)}, ${ms(e.stepSecNoOverlap)} | ${((e.computeSec / e.stepSec) * 100).toFixed(0)} % |`,
      );
    }
  return rows.join('\n');
}
