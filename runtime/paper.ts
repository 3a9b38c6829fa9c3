/**
 * A paper reproduction: presets of an experiment config, the published (or reference) numbers to compare with,
 * and a `run` that trains and returns what it measured. Each paper lives in `papers/<name>/`.
 */
import { mergeConfig, parseExperimentConfig, type ExperimentConfig } from '../core/config';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, DataError } from '../core/errors';
import type { JsonObject } from '../core/interfaces';
import { listRuns, MLFLOW_STATUS, readTag } from '../core/mlflow-store';
import type { PluginDefinition, PluginRegistry } from '../core/registry';
import { finalEpochLogs } from '../core/trainer';
import { runExperiment, type RunResult } from './run';

/** A published or reference number the reproduction is held against. */
export interface ReferenceNumber {
  /** Which measured metric it compares with, e.g. `test_accuracy`. */
  metric: string;
  label: string;
  value: number;
  source: string;
  /** For papers that train several variants (one tracked run each): the variant this number belongs to. */
  variant?: string;
}

/**
 * A claim that ranks runs of the paper on one metric: variants of a preset (Gal & Ghahramani's variational < naive <
 * none in test perplexity) or presets (a distilled student above the same student trained alone). `loom report`
 * checks it against the finished runs, on the mean over seeds, and says whether the measured order is the claimed one.
 */
export interface PaperClaim {
  /** The claim in words, e.g. "variational < naive < none in test perplexity". */
  statement: string;
  source: string;
  /** The measured metric the runs are ranked on, e.g. `test_perplexity`. */
  metric: string;
  better: 'lower' | 'higher';
  /**
   * The runs compared, in the claimed order, best first: each a variant (then the claim is checked within every
   * preset that has run it) or a preset (checked across presets; with a variant too, that variant's runs only).
   */
  order: { label: string; variant?: string; preset?: string }[];
  /**
   * The config fields the compared runs are meant to differ in (dotted paths; a path covers everything under it;
   * required, since runs compared by a claim always differ somewhere):
   * `model` for variants that change the network, `loss` for a distilled student against the same student trained
   * alone. Every other field of their configs must be equal (but the seed, and what does not change the numbers:
   * the experiment's name, trackers, the progress display, logging and checkpoint cadence), or `loom report` names
   * the fields that differ instead of a verdict: runs of two recipes rank the recipes, not the claim.
   */
  varies: string[];
}

export interface PaperRunOptions {
  registry: PluginRegistry;
  preset: string;
  seed?: number;
  backend?: string;
  /** An http(s) MLflow tracking server to log to, or a `file:` URI of the local file store to use instead of ./mlruns. */
  trackingUri?: string;
  /** Fields to override in the preset's config (deep-merged). */
  overrides?: Record<string, unknown>;
  /** Continue an interrupted run from this checkpoint (see RunOptions.resume). */
  resume?: string;
}

export interface PaperResult {
  paper: string;
  preset: string;
  backend: string;
  seed: number;
  /** Final measured metrics (e.g. test_accuracy). */
  metrics: Record<string, number>;
  wallTimeSec: number;
  mlflow: { runId: string; experimentId: string; location: string };
  commit: string;
  /** Measured vs reference, one row per reference number (`metric` prefixed `<variant>/` for variant papers). */
  comparison: { metric: string; label: string; measured: number | null; reference: number; source: string }[];
  /** Plain statements about the outcome, e.g. which ordering of variants was observed, at which scale. */
  notes?: string[];
  /** Plain statement of scale: e.g. "smoke preset: 2,000 of 60,000 training images, 1 epoch". */
  scale: string;
  run?: RunResult;
}

/** A flag a paper adds to `loom paper <name>` for one of its modes. */
export interface PaperFlag {
  /** The value's placeholder in the help, e.g. `T`. */
  value: string;
  help: string;
  /** How the value is read and checked: a number or an integer, at least `min`; else the string as given. */
  type?: 'string' | 'number' | 'integer';
  min?: number;
}

/** What a paper's mode is given when it runs. */
export interface PaperModeContext {
  registry: PluginRegistry;
  preset: string;
  /** `--seed` when given. */
  seed?: number;
  /** The value of the flag that selected the mode (a word, a prompt, a checkpoint folder). */
  input: string;
  /** The mode's own option flags that were given, read as their {@link PaperFlag.type} says. */
  options: Record<string, string | number>;
  /** `--json FILE` when given (only for a mode with `json: true`). */
  json?: string;
  /**
   * `--tracking-uri` (else MLFLOW_TRACKING_URI) as a URI: where the runs a mode trains log to, and, through
   * {@link localStore}, the store in which a mode looks for the preset's trained runs.
   */
  trackingUri?: string;
  /** Prints one line of the mode's output. */
  out(line: string): void;
}

/**
 * A way to use a paper other than training it (a prediction, scoring averaged checkpoints), selected on the
 * command line by its flag: the paper declares it, and `loom paper <name>` offers it with its options and help,
 * so a paper adds modes without editing the CLI.
 */
export interface PaperMode {
  /** The flag that selects the mode, e.g. `predict`; its value is the mode's input. */
  flag: string;
  value: string;
  help: string;
  /** Flags that apply only with this mode (e.g. `temperature` with `predict`). */
  options?: Record<string, PaperFlag>;
  /** Whether the mode writes `--json FILE` (else `--json` is refused with it). */
  json?: boolean;
  run(ctx: PaperModeContext): Promise<void>;
}

export interface Paper {
  readonly name: string;
  readonly title: string;
  /** Raw preset configs (validated when run), usually from `loadPresets(<paper>/presets)`. */
  readonly presets: Record<string, JsonObject>;
  /** One line per preset: what it runs and roughly how long it takes here. */
  readonly presetNotes: Record<string, string>;
  readonly references: ReferenceNumber[];
  /** Claims about how its variants or presets rank, checked by `loom report` (see {@link PaperClaim}). */
  readonly claims?: PaperClaim[];
  /** Plugins only this paper uses (a validation callback, its data sets): registered by {@link registerPaperPlugins}. */
  readonly plugins?: PluginDefinition[];
  /** Modes other than training, each selected by its own flag of `loom paper <name>`. */
  readonly modes?: PaperMode[];
  run(opts: PaperRunOptions): Promise<PaperResult>;
}

/** Registers the paper's own plugins into `registry` (those it already has are left as they are); returns it. */
export function registerPaperPlugins(registry: PluginRegistry, paper: Pick<Paper, 'plugins'>): PluginRegistry {
  for (const p of paper.plugins ?? []) if (!registry.has(p.kind, p.name)) registry.register(p);
  return registry;
}

/**
 * The local MLflow file store that runs log to under `trackingUri`: the folder of a `file:` URI, else ./mlruns
 * (the default store, which an http(s) server's runs also keep as their local fallback).
 */
export function localStore(trackingUri: string | undefined): string {
  return trackingUri && /^file:/i.test(trackingUri) ? fileURLToPath(trackingUri) : 'mlruns';
}

/**
 * The artifact directory `artifact` of the newest FINISHED run of `paper` with tag preset = `preset` (and every tag
 * in `tags`, e.g. BERT's `variant`) in the MLflow file store at `root` (where `--predict` finds the trained model).
 */
export function latestRunArtifacts(paper: string, preset: string, artifact: string, root = 'mlruns', tags: Record<string, string> = {}): string {
  const abs = path.resolve(root);
  let best: { dir: string; start: number } | null = null;
  for (const { dir, meta } of listRuns(abs)) {
    if (readTag(dir, 'paper') !== paper || readTag(dir, 'preset') !== preset) continue;
    if (Object.entries(tags).some(([k, v]) => readTag(dir, k) !== v)) continue;
    if (meta.status === MLFLOW_STATUS.FINISHED && (!best || meta.start_time > best.start))
      best = { dir: path.join(dir, 'artifacts', artifact), start: meta.start_time };
  }
  if (!best)
    throw new DataError(
      `no finished ${paper} run of preset "${preset}"${Object.entries(tags)
        .map(([k, v]) => ` (${k} ${v})`)
        .join('')} in ${abs}: train one first with \`npm run paper -- ${paper} --preset ${preset}\``,
    );
  return best.dir;
}

/**
 * A plain-text table of what this run measured and the references it is held against. Per metric, one row says
 * what was measured (labelled as this run's, with its seed); the reference rows under it carry only their own
 * values and sources (the measured value was repeated on every reference row before, as if each had measured it).
 * Every row names its metric (the measured key, e.g. `val_loss`), so a table whose labels describe only the
 * reference (GPT's nanoGPT rows) still says what is compared.
 */
export function formatComparison(result: PaperResult): string {
  const rows: string[][] = [];
  const metrics = [...new Set(result.comparison.map((r) => r.metric))];
  for (const metric of metrics) {
    const refs = result.comparison.filter((r) => r.metric === metric);
    const measured = refs[0]!.measured;
    rows.push([`measured by this run (seed ${result.seed})`, metric, measured === null ? 'n/a' : formatMetric(measured, metric), '', '']);
    for (const r of refs) rows.push([`  ${r.label}`, metric, '', formatMetric(r.reference, metric), r.source]);
  }
  const head = ['', 'metric', 'measured', 'reference', 'source'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [
    `${result.paper} (${result.preset}): ${result.scale}`,
    `backend ${result.backend}, seed ${result.seed}, commit ${result.commit.slice(0, 12)}, wall time ${result.wallTimeSec.toFixed(1)} s`,
    line(head),
    ...rows.map(line),
    ...(result.notes ?? []),
    `MLflow run ${result.mlflow.runId} (experiment ${result.mlflow.experimentId}) at ${result.mlflow.location}`,
  ].join('\n');
}

/**
 * What a reader must know when a run did not train the whole recipe its scale line describes: stopped by
 * `trainer.maxSteps` (`--max-steps`), or ended by early stopping before its last epoch; and which epoch's weights
 * were tested when early stopping restored an earlier one than the last (`restoredEpoch`, 1-based).
 */
export function cutShortNotes(config: ExperimentConfig, epochsRun: number, restoredEpoch: number | null = null): string[] {
  const planned = config.trainer.epochs;
  const cap = config.trainer.maxSteps;
  const restored = restoredEpoch !== null && restoredEpoch < epochsRun ? [`the model tested is epoch ${restoredEpoch}'s, restored by early stopping`] : [];
  if (cap !== undefined && epochsRun < planned)
    return [
      `CUT SHORT: trainer.maxSteps = ${cap} (--max-steps) stopped training after ${cap} optimizer steps, in epoch ${epochsRun} of ${planned}: not the recipe above`,
      ...restored,
    ];
  if (cap !== undefined)
    return [`trainer.maxSteps = ${cap} (--max-steps) capped training at ${cap} optimizer steps: the last epoch may be partial`, ...restored];
  if (epochsRun < planned) return [`training ended after ${epochsRun} of ${planned} epochs (early stopping)`, ...restored];
  return restored;
}

/**
 * A metric as people read it: rates (accuracy, word and phoneme error rates) in percent, perplexity to 0.1 (0.01
 * below 10), anything else to 4 decimals. A rate is a metric with a whole `_`- or `/`-separated part `accuracy`,
 * `wer` or `per` (`test_accuracy`, `variational/test_wer_beam`, `test_per_beam`); matching substrings instead
 * printed `test_perplexity` 3.9989 as "399.89 %".
 */
export function formatMetric(v: number, metric: string): string {
  const parts = metric.split(/[_/]/);
  if (parts.some((p) => p === 'accuracy' || p === 'wer' || p === 'per')) return `${(v * 100).toFixed(2)} %`;
  if (parts.includes('perplexity')) return v.toFixed(v < 10 ? 2 : 1);
  return v.toFixed(4);
}

/**
 * A paper whose run is one config-driven experiment (train, then evaluate on the test split): the preset config,
 * seed and backend go to {@link runExperiment}; the test metrics are compared with `references`.
 */
export function experimentPaper(def: Omit<Paper, 'run'> & { scale(config: ExperimentConfig): string }): Paper {
  return {
    ...def,
    async run(opts: PaperRunOptions): Promise<PaperResult> {
      const base = def.presets[opts.preset];
      if (!base) throw new ConfigError('--preset', `paper "${def.name}" has no preset "${opts.preset}"; presets: ${Object.keys(def.presets).join(', ')}`);
      let raw = mergeConfig(base, (opts.overrides ?? {}) as JsonObject);
      if (opts.seed !== undefined) raw = { ...raw, seed: opts.seed };
      const config = parseExperimentConfig(raw);
      const run = await runExperiment({
        registry: opts.registry,
        config,
        backend: opts.backend,
        trackingUri: opts.trackingUri,
        runName: `${def.name}-${opts.preset}-seed${config.seed}`,
        tags: { preset: opts.preset, paper: def.name, scale: def.scale(config) },
        resume: opts.resume,
      });
      const metrics: Record<string, number> = {};
      for (const [k, v] of Object.entries(finalEpochLogs(run.history, run.restoredEpoch))) metrics[k] = v;
      for (const [k, v] of Object.entries(run.test ?? {})) metrics[`test_${k}`] = v;
      return {
        paper: def.name,
        preset: opts.preset,
        backend: run.backend,
        seed: config.seed,
        metrics,
        wallTimeSec: run.wallTimeSec,
        mlflow: run.run,
        commit: run.tags['git.commit'] ?? 'unknown',
        comparison: def.references.map((r) => ({
          metric: r.metric,
          label: r.label,
          measured: metrics[r.metric] ?? null,
          reference: r.value,
          source: r.source,
        })),
        scale: def.scale(config),
        notes: cutShortNotes(config, run.history.length, run.restoredEpoch),
        run,
      };
    },
  };
}
