/**
 * The extension points of loom. Each is a small interface; plugins implement them and register under a
 * stable name (see `registry.ts`); the trainer receives them through injection tokens (see `tokens.ts`).
 * Nothing here depends on a particular plugin.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { TrainerOptions } from './config';
import type { Rng, RngState } from './random';

/** JSON values: every plugin's options are plain JSON so that configs can be saved, logged and reloaded. */
export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** A tensor shape as layers see it: the leading batch dimension is `null`. */
export type Shape = (number | null)[];

/**
 * A plugin reference in a config: a registered name, or an object `{ type: name, ...options }`.
 * Example: `{ "type": "conv2d", "filters": 32, "kernelSize": 3, "activation": "relu" }`.
 */
export type PluginSpec = string | ({ type: string } & JsonObject);

/** Every plugin instance carries the spec it was built from, so it can be saved and rebuilt. */
export interface Configurable {
  /** The normalised spec: registered name plus every option after defaults were applied. */
  readonly spec: { type: string } & JsonObject;
}

/**
 * Implemented by plugins whose state changes while training (streaming metrics, early stopping, stateful RNNs), so
 * a checkpoint can restore them exactly and a resumed run continues as if it had never stopped. Saved state has one
 * naming across loom: `getState()` returns it as plain data, `setState(state)` puts it back (optimizers, random
 * streams, carried RNN state and tokenizers too; a class's static `fromState` builds a new one from it).
 */
export interface HasState {
  getState(): Json;
  setState(state: Json): void;
}

// ---------------------------------------------------------------- tensors, activations, initializers

/**
 * An elementwise (or last-axis) nonlinearity: relu, softmax, ... Layers take one as an option.
 * `apply` must be differentiable with tfjs's autograd.
 */
export interface Activation extends Configurable {
  apply(x: tf.Tensor): tf.Tensor;
}

/**
 * Draws the initial value of a parameter. `fanIn`/`fanOut` follow Glorot & Bengio (2010): for a kernel of
 * shape [..receptive, in, out] they are receptive·in and receptive·out.
 */
export interface Initializer extends Configurable {
  init(shape: number[], rng: Rng): tf.Tensor;
}

// ---------------------------------------------------------------- layers and models

/** What a parameter is, so optimizers and regularizers can treat kinds differently (e.g. no decay on biases). */
export type ParamRole = 'kernel' | 'bias' | 'norm' | 'embedding' | 'other';

/** A trainable (or frozen) tensor owned by a layer. `name` is unique in the model: `<layer>/<weight>`. */
export interface Parameter {
  readonly name: string;
  readonly variable: tf.Variable;
  readonly role: ParamRole;
  trainable: boolean;
  /** Penalty added to the loss for this parameter (e.g. L2), if any. */
  regularizer?: Regularizer;
  /**
   * A 0/1 mask of the variable's shape (pruning): where it is 0 the weight stays exactly 0. Set with `setMask`
   * (core/masks.ts); the trainer re-applies it after every optimizer step, saveModel stores it and loadModel
   * puts it back. Owned by the parameter (disposed with the layer).
   */
  mask?: tf.Tensor;
  /** Its values are integers in [−128, 127] (a quantized layer's int8 weights): saveModel stores them as int8 bytes. */
  int8?: boolean;
}

/**
 * Passed to every forward call: whether we are training (dropout on) and the stream for random masks.
 * Sequence models also pass masks along it, as Keras propagates `mask`: the layer that knows where padding is
 * (an embedding with `maskZero`, or a composite model) sets `mask`; attention and pooling layers read it.
 */
export interface ForwardContext {
  readonly training: boolean;
  readonly rng: Rng;
  /** Padding mask of the sequence now flowing through the model: [batch, time], 1 for real positions, 0 for padding. */
  mask?: tf.Tensor;
  /** Encoder output that decoder layers attend to ([batch, srcTime, d]), with its own padding mask. */
  memory?: tf.Tensor;
  memoryMask?: tf.Tensor;
}

/**
 * A layer: built once for an input shape (creating its parameters), then applied to batches.
 * Layers own their parameters (like PyTorch modules) and report them via `parameters()`.
 */
export interface Layer extends Configurable, Partial<HasState> {
  /** Instance name, unique within a model (e.g. `conv2d_1`). */
  readonly name: string;
  /** Creates parameters for `inputShape` and returns the output shape. Throws ShapeError if the input does not fit. */
  build(inputShape: Shape, rng: Rng): Shape;
  /** Forward pass. Inside tfjs tidy/grad scopes: may create intermediate tensors freely. */
  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor;
  parameters(): Parameter[];
  /** Non-trainable state saved with the weights (e.g. BatchNorm running statistics). */
  buffers?(): Parameter[];
  /**
   * This layer and `next` (the layer after it in a Sequential) applied as one op, where the pair has one that is
   * faster and gives the same values (a convolution followed by max pooling: `plugins/layers/conv2d.ts`); null to
   * apply them one by one.
   */
  applyWithNext?(next: Layer, x: tf.Tensor, ctx: ForwardContext): tf.Tensor | null;
  /** A max pooling's window, when its windows tile its input (stride = window, 'valid'); null otherwise. */
  maxPoolWindow?(): [number, number] | null;
  /**
   * Forgets state carried between batches (stateful recurrent layers, as language models train with truncated
   * BPTT). The trainer calls it at the start of every epoch and of every evaluation.
   */
  resetStates?(): void;
  /**
   * The tensors it carries between batches now (a stateful RNN's h and c; none when it carries nothing): what
   * `readToHost` fetches before `getState` reads them on a backend that reads asynchronously. A composite forwards
   * to its parts.
   */
  carriedTensors?(): tf.Tensor[];
  dispose(): void;
}

/**
 * A model: what the trainer fits, saves and checkpoints. A Sequential (a list of layer specs) and the registered
 * models (kind `model`: named parts and a free-form forward, core/module.ts) implement it; `build(inputShape, rng)`
 * with the model's own `inputShape` draws its initial weights. Its state (`getState`) is what its layers carry between
 * batches (a stateful RNN's), by layer name.
 */
export interface Model extends Omit<Layer, keyof HasState>, HasState {
  /** The shape of one batch of inputs, batch dimension `null` (e.g. [null, 28, 28, 1]). */
  readonly inputShape: Shape;
  readonly outputShape: Shape;
  buffers(): Parameter[];
  resetStates(): void;
  /** What its layers carry between batches now (found by walking its parts: this model's only, never another's). */
  carriedTensors(): tf.Tensor[];
  /** Parameters, then buffers: everything saved with the weights, in a fixed order. */
  weights(): Parameter[];
  countParams(): number;
  summary(): string;
}

// ---------------------------------------------------------------- losses, regularizers, metrics

/**
 * Mean loss over the batch as a scalar. `yTrue` holds labels or targets, `yPred` the model's raw output, `x` the
 * batch's inputs: the trainer passes them for a loss that needs them (knowledge distillation runs its teacher on
 * them); other losses ignore it.
 */
export interface Loss extends Configurable {
  compute(yTrue: tf.Tensor, yPred: tf.Tensor, x?: tf.Tensor): tf.Scalar;
  /** Releases tensors the loss holds (a distillation teacher's weights); called when the run is released. */
  dispose?(): void;
  /**
   * Optional: the first target value this loss cannot take (e.g. a class label outside the model's output range),
   * as its index in `targets` and the reason, or null. Runs check every split with it before training.
   */
  checkTargets?(targets: Float32Array | Int32Array, outputShape: readonly (number | null)[]): { index: number; reason: string } | null;
}

/** A penalty on one parameter added to the training loss (L1, L2, ...). */
export interface Regularizer extends Configurable {
  penalty(w: tf.Tensor): tf.Scalar;
}

/** A streaming metric: reset per epoch/evaluation, updated per batch, read at the end. */
export interface Metric extends Configurable, Partial<HasState> {
  /** Key under which the value is logged, e.g. `accuracy`. */
  readonly key: string;
  reset(): void;
  /** Adds one batch; may be async, reading its counts with `await data()` (a GPU backend reads asynchronously). */
  update(yTrue: tf.Tensor, yPred: tf.Tensor): void | Promise<void>;
  result(): number;
}

// ---------------------------------------------------------------- optimisation

/** A serialisable optimizer state: hyper-parameters, step count and per-parameter slot tensors. */
export interface OptimizerState {
  step: number;
  hyper: JsonObject;
  /** slots[paramName][slotName] -> values (e.g. Adam's m and v). */
  slots: Record<string, Record<string, { shape: number[]; values: Float32Array }>>;
}

/**
 * Updates parameters from their gradients. Holds per-parameter state (moments, ...) keyed by parameter name.
 * The learning rate can be changed between steps (by a schedule).
 */
export interface Optimizer extends Configurable {
  learningRate: number;
  /** Applies one update. `grads` maps parameter name to gradient; the caller disposes the gradients. */
  step(params: readonly Parameter[], grads: Record<string, tf.Tensor>): void;
  /** Step count, slot values and hyper-parameters; loading checks names and shapes. */
  getState(): OptimizerState;
  setState(state: OptimizerState, params: readonly Parameter[]): void;
  dispose(): void;
}

/**
 * Learning rate as a function of the (0-based) optimizer step and epoch. `totalSteps` is how many optimizer steps
 * the trainer's fit will take (epochs × steps per epoch) when it knows: schedules that decay to an end point use it
 * when their config leaves the end out, as Hugging Face's `num_training_steps` is taken from the data loader.
 */
export interface LearningRateSchedule extends Configurable {
  rate(step: number, epoch: number, totalSteps?: number): number;
}

// ---------------------------------------------------------------- data

/**
 * A random, label-preserving transformation of a training batch's inputs (rotation, crop, flip, ...), applied by the
 * trainer to training batches only. It must keep shape and dtype and draw its randomness from `rng` alone, so a run
 * is reproducible from its seed.
 */
export interface Augmentation extends Configurable {
  apply(x: tf.Tensor, rng: Rng): tf.Tensor;
}

/** A batch of inputs and targets. The receiver disposes both. */
export interface Batch {
  x: tf.Tensor;
  y: tf.Tensor;
}

/**
 * An indexable data set held in memory (or cheaply addressable). The trainer picks indices (shuffled with the
 * run's Rng) and asks for a batch, so order, shuffling and resumption stay in one place.
 */
export interface Dataset {
  readonly name: string;
  readonly size: number;
  /** Shape of one example's input and target (no batch dimension). */
  readonly xShape: number[];
  readonly yShape: number[];
  batch(indices: ArrayLike<number>): Batch;
  /** Each example's length (e.g. tokens before padding), for batching by length (`trainer.bucketByLength`). */
  lengths?(): Int32Array;
}

/** A registered source of data sets, e.g. MNIST; builds the named split. */
export interface DataSource extends Configurable {
  /** The splits it offers, e.g. ['train', 'test']. */
  readonly splits: string[];
  load(split: string): Dataset;
}

// ---------------------------------------------------------------- text

/**
 * Maps text to integer ids and back: WordPiece for BERT, byte-level BPE for GPT (`plugins/tokenizers/`). Trained
 * once on a corpus, saved with `getState` and rebuilt from that JSON, so a run never fetches a vocabulary.
 * `decode(encode(text))` gives back `text` up to the implementation's documented normalization.
 */
export interface Tokenizer {
  /** Format name stored in the JSON (`wordpiece`, `byte-bpe`), used to rebuild the right implementation. */
  readonly type: string;
  /** Ids are 0 .. vocabSize − 1. */
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  /** Everything needed to rebuild it (vocabulary, merges, options), as plain JSON with `type`. */
  getState(): { type: string } & JsonObject;
}

// ---------------------------------------------------------------- tracking and callbacks

export type RunStatus = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';

export interface RunInfo {
  runId: string;
  experimentId: string;
  /** Where a user finds the run (a directory or a URL). */
  location: string;
}

/**
 * A data set a run reads, as MLflow records run inputs (`runs/log-inputs`: name, digest, source type and source,
 * schema, profile, and the tag `mlflow.data.context`).
 */
export interface DatasetInfo {
  name: string;
  /** A short hash of the contents: two runs with the same digest read the same data. */
  digest: string;
  sourceType: string;
  /** JSON describing where the data came from (the data source's plugin spec and split). */
  source: string;
  /** MLflow TensorSpec JSON of the inputs and targets. */
  schema?: string;
  /** JSON summary (number of examples, shapes). */
  profile?: string;
  /** What the run used it for: `train`, `validation` or `test`. */
  context: string;
}

/**
 * Experiment tracking in MLflow's model: an experiment holds runs; a run has params (immutable), tags,
 * per-step metrics and artifacts. Logging calls may buffer; `flush` and `endRun` persist everything.
 * `logDataset` is optional: trackers that record run inputs (MLflow's REST API) implement it.
 */
export interface Tracker extends Configurable {
  /**
   * Starts a run, or with `resume` reopens an existing one (status back to RUNNING) to continue it from a checkpoint
   * taken at `resume.step`: values logged after that step by the interrupted process are discarded where the
   * store allows, so a resumed run holds each metric once.
   */
  startRun(opts: {
    experiment: string;
    runName: string;
    tags?: Record<string, string>;
    resume?: { runId: string; experimentId: string; step: number };
  }): Promise<RunInfo>;
  logParams(params: Record<string, string | number | boolean>): void;
  logMetrics(metrics: Record<string, number>, step: number, timestamp?: number): void;
  setTags(tags: Record<string, string>): void;
  /** Copies a local file into the run's artifacts under `artifactPath` (a relative path). */
  logArtifact(localPath: string, artifactPath?: string): Promise<void>;
  /** Records a data set the run reads (optional; sync-return like the other logging calls). */
  logDataset?(dataset: DatasetInfo): void;
  flush(): Promise<void>;
  endRun(status: Exclude<RunStatus, 'RUNNING'>, reason?: string): Promise<void>;
}

/** What callbacks see and may change while training. */
export interface TrainingState {
  readonly model: Model;
  readonly optimizer: Optimizer;
  epoch: number;
  /** Global optimizer step (batches seen so far in this run). */
  step: number;
  readonly epochs: number;
  readonly stepsPerEpoch: number;
  /** Set to true to stop after the current batch (early stopping). */
  stopTraining: boolean;
  /**
   * The 1-based epoch whose weights a callback put back when training ended (early stopping's `restoreBest`), or
   * null: the model is the last epoch's. What the run reports as its final epoch metrics (validation among them) are
   * that epoch's, since they describe the model that is tested and saved.
   */
  restoredEpoch: number | null;
  /**
   * False on every rank but 0 of a multi-process run: callbacks that write files or print do so only where it is
   * true. Callbacks that decide something (early stopping) run on every rank and must decide the same everywhere.
   */
  readonly isGlobalZero: boolean;
}

export type Logs = Record<string, number>;

/**
 * Hooks into the training loop. All hooks are optional (a plain object or class with no-op defaults);
 * async hooks are awaited. Inspired by Keras callbacks and Lightning's Callback.
 */
export interface Callback extends Configurable, Partial<HasState> {
  onTrainBegin?(state: TrainingState): void | Promise<void>;
  onEpochBegin?(state: TrainingState): void | Promise<void>;
  onBatchEnd?(state: TrainingState, logs: Logs): void | Promise<void>;
  /**
   * After an epoch's validation and before its metrics are logged, a callback may add epoch metrics to `logs`
   * (a task score that needs decoding, such as a G2P model's validation word error rate); they are logged with the
   * others and every callback's onEpochEnd sees them (early stopping can monitor them).
   */
  onEpochMetrics?(state: TrainingState, logs: Logs): void | Promise<void>;
  onEpochEnd?(state: TrainingState, logs: Logs): void | Promise<void>;
  onTrainEnd?(state: TrainingState, logs: Logs): void | Promise<void>;
}

// ---------------------------------------------------------------- execution

/**
 * How ranks talk: collectives and point-to-point transfers over one group of processes (an MPI communicator, or a
 * world of one). A {@link Strategy} uses one; it decides nothing about training itself.
 */
export interface Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** Element-wise sum across ranks, in place. */
  allReduce(buffer: Float32Array): Promise<void>;
  /**
   * Reduce-scatter (sum): `send` holds worldSize equal blocks of `recv.length` elements; rank r receives in `recv`
   * the element-wise sum over ranks of block r (MPI_Reduce_scatter_block). Half of a ring all-reduce: ZeRO's
   * gradient reduction (Rajbhandari et al. 2020, §7.2).
   */
  reduceScatter(send: Float32Array, recv: Float32Array): Promise<void>;
  /** All-gather: `recv` holds worldSize blocks of `send.length` elements, block r being rank r's `send` (MPI_Allgather). */
  allGather(send: Float32Array, recv: Float32Array): Promise<void>;
  /** Overwrites `buffer` on every rank with rank `root`'s contents. */
  broadcast(buffer: Float32Array, root: number): Promise<void>;
  barrier(): Promise<void>;
  /** Point-to-point transfer (pipeline stages). */
  send(buffer: Float32Array, dest: number, tag: number): Promise<void>;
  recv(buffer: Float32Array, source: number, tag: number): Promise<void>;
  finalize(): Promise<void>;
}

/** Loss and gradients (by parameter name) of one optimizer step, and the parameters they belong to. */
export interface StepGradients {
  loss: number;
  params: Parameter[];
  /** Owned by the caller, which disposes them after the optimizer step. */
  grads: Record<string, tf.Tensor>;
  /**
   * Present when `grads` are only this rank's part of the step's gradient (ZeRO-1's shard): given the squared L2 norm
   * of this part, returns the whole gradient's (summed with the other ranks' parts: collective, and called on every
   * rank at every step that clips by norm). The trainer's `clipNorm` then scales by the norm of the whole gradient
   * (Pascanu et al. 2013, Algorithm 1), and clipping happens once, in the trainer. Absent: `grads` are the whole
   * gradient.
   */
  globalSquaredNorm?: (local: number) => Promise<number>;
}

/** The part of the trainer a {@link Strategy} may use (Lightning's Strategy holds the LightningModule and Trainer). */
export interface StrategyHost {
  readonly model: Model;
  readonly loss: Loss;
  readonly options: TrainerOptions;
  /**
   * The optimizer the trainer steps with the strategy's gradients: a strategy that shards its state (ZeRO) reads and
   * sets its state, never steps it.
   */
  readonly optimizer: Optimizer;
  /** Stream for dropout masks: a strategy that runs the forward pass itself draws from it. */
  readonly forwardRng: Rng;
  /**
   * The single-process step: loss and gradients of the model's trainable parameters on the micro-batches, averaged by
   * their sizes (gradient accumulation); updates the training metrics and throws on a non-finite loss or gradient.
   */
  localGradients(batches: Batch[], state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients>;
  /** Adds one batch's targets and predictions to the training metrics (for a strategy that computes the outputs itself). */
  updateMetrics(yTrue: tf.Tensor, yPred: tf.Tensor): Promise<void>;
}

/**
 * How a model is trained across processes (after Lightning's Strategy): it owns setup (start every rank from the
 * same weights), the data each rank visits, how a step's gradients are computed and reduced, and making the model
 * whole again before it is evaluated or saved. The trainer calls only these hooks and knows no parallel algorithm:
 * single-process, MPI data parallelism and GPipe pipeline stages are plugins of kind `parallelism`, chosen by a
 * config's `"parallelism"`.
 */
export interface Strategy extends Configurable {
  readonly rank: number;
  readonly worldSize: number;
  /** Whether this rank logs to the trackers, writes checkpoints and saves the model (one rank does). */
  readonly isGlobalZero: boolean;
  /** Before training (after a checkpoint is restored): check the options and start every rank from the same weights. */
  setup(host: StrategyHost): Promise<void>;
  /** Examples this rank visits per epoch of `size` examples: the same on every rank, so all take as many steps. */
  shardSize(size: number): number;
  /** This rank's part of an epoch's visiting order. */
  shard(order: Int32Array): Int32Array;
  /** One step's loss and gradients on `batches` (micro-batches of one step), reduced across ranks as the algorithm needs. */
  gradients(batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients>;
  /** Makes this rank's model whole (every weight current) before it is evaluated, checkpointed or saved. */
  synchronize(host: StrategyHost): Promise<void>;
  /** After training (its model is whole again). */
  teardown(host: StrategyHost): Promise<void>;
  /**
   * Releases what the strategy holds for its whole life, beyond one `fit` (the MPI sub-communicators of its groups):
   * once, when its run ends (`disposeRun`), on every rank alike, as freeing a communicator is collective.
   */
  dispose?(): void;
}

/**
 * A tfjs backend with the kernels loom adds to it. `priority` orders automatic selection (higher first);
 * `available` reports whether it can run here, with a reason when not; `requested` is true when the user named it
 * (`--backend`, LOOM_BACKEND), for a backend offered only when asked for (webgpu on a software adapter).
 */
export interface Backend extends Configurable {
  readonly priority: number;
  available(requested?: boolean): Promise<{ ok: boolean; reason?: string }>;
  /** Makes this the active tfjs backend. Returns facts to record as run tags (e.g. kernels replaced). */
  activate(): Promise<Record<string, string>>;
  /**
   * Sets the precision of the matrix products from now on (`trainer.precision`; a run sets it after activating the
   * backend and puts fp32 back when it ends). Returns tags to record (`backend.precision`). A backend without it
   * computes in fp32 only, and a run asking it for bf16 is refused.
   */
  setPrecision?(precision: 'fp32' | 'bf16'): Record<string, string>;
}

/** Serialisable state of the random streams of a run, for checkpoints. */
export type RandomState = Record<string, RngState>;
