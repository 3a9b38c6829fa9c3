/**
 * The reproduction report (`loom report`, `npm run report`): reads the runs in a local MLflow file store (the papers'
 * and those of `loom train`) and the committed run records (`papers/<name>/results/*.json`, see records.ts), and
 * writes `report.md` and `report.html` with, per paper and preset (and variant), or per experiment and config file,
 * the measured numbers beside the published ones (a config file's run has none): the mean and standard
 * deviation over seeds with each seed's value, the scale, the environment (backend, CPU, versions, commits, wall
 * time), and one plot of every seed's learning curves (vega-lite, SVG). A rerun of the same seed at the same
 * commit is shown once (the newest). A few-shot grid's runs (tagged `few_shot.size`) are grouped per labelled-subset
 * size too, and each preset's grid gets its curves of test scores against labelled examples (log scale).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeMachine, examplesCurvesSvg, formatMetric, machineTags, meanStd, vegaLiteSvg, type Paper, type PaperClaim } from '../runtime';
import { readStore, type StoredRun } from '../core/mlflow-store';
import { autoMode } from '../plugins/callbacks/monitor';
import { lastStep, readRecords, resumedSteps } from './records';

/**
 * The epoch whose weights a run ended with where early stopping's `restoreBest` put them back: the tag
 * `loom.restored_epoch`; for a run from before that tag (2026-12-02) whose config has early stopping with
 * `restoreBest`, the epoch the callback kept, found by replaying its rule over the logged monitored metric (an epoch
 * is the best when it beats the best before it by more than `minDelta`, lower in `min` mode, higher in `max`), marked
 * `inferred`. Undefined when neither says.
 */
export function restoredEpochOf(r: StoredRun, config?: unknown): { epoch: number; inferred: boolean } | undefined {
  const tagged = Number(r.tags['loom.restored_epoch']);
  if (r.tags['loom.restored_epoch'] !== undefined && Number.isInteger(tagged) && tagged > 0) return { epoch: tagged, inferred: false };
  const callbacks = (config as { callbacks?: unknown } | null | undefined)?.callbacks;
  const es = (Array.isArray(callbacks) ? callbacks : []).find(
    (c): c is { monitor?: string; mode?: string; minDelta?: number; restoreBest?: boolean } =>
      (c as { type?: unknown } | null)?.type === 'early-stopping' && (c as { restoreBest?: unknown }).restoreBest === true,
  );
  if (!es) return undefined;
  const series = r.metrics[es.monitor ?? 'val_loss'];
  if (!series) return undefined;
  const max = es.mode === 'max' || (es.mode !== 'min' && autoMode(es.monitor ?? 'val_loss') === 'max'); // 'auto' or left out: Keras's rule
  const delta = es.minDelta ?? 0;
  // Each epoch's value: the one logged at the step that ended it (a resumed run may have logged an epoch twice).
  const byEpoch = new Map<number, number>();
  for (const [step, epoch] of r.metrics.epoch ?? []) {
    const at = series.findLast(([s]) => s === step);
    if (at) byEpoch.set(epoch, at[1]);
  }
  let best = max ? -Infinity : Infinity;
  let bestEpoch: number | undefined;
  for (const [epoch, v] of [...byEpoch].sort((a, b) => a[0] - b[0])) {
    if (max ? v > best + delta : v < best - delta) [best, bestEpoch] = [v, epoch];
  }
  return bestEpoch === undefined ? undefined : { epoch: bestEpoch, inferred: true };
}

/**
 * A run's final value of a metric: the last one logged, except that a validation metric (`val_*`) of a run that
 * ended with an earlier epoch's weights ({@link restoredEpochOf}: early stopping's `restoreBest`; `config` lets it
 * find that epoch for runs from before it was tagged) is that epoch's, the one that describes the model tested.
 */
export function finalValue(r: StoredRun, key: string, config?: unknown): number | undefined {
  const series = r.metrics[key];
  const restored = key.startsWith('val_') ? restoredEpochOf(r, config)?.epoch : undefined;
  if (series && restored !== undefined) {
    const step = r.metrics.epoch?.findLast(([, e]) => e === restored)?.[0];
    const at = step === undefined ? undefined : series.findLast(([s]) => s === step);
    if (at) return at[1];
  }
  return series?.at(-1)?.[1];
}
const fmt = (v: number | undefined, metric: string) => (v === undefined ? 'n/a' : formatMetric(v, metric));

/** Learning curves as an SVG: one panel for loss-like metrics, one for the others, a line per seed and metric. */
async function curves(title: string, runs: StoredRun[]): Promise<string | null> {
  const skip = new Set(['epoch', 'lr', 'wall_time_s', 'process_wall_time_s', 'skipped_batches']);
  const values = runs.flatMap((r) =>
    Object.entries(r.metrics)
      .filter(([k, pts]) => !skip.has(k) && !k.startsWith('test_') && pts.length > 1)
      .flatMap(([k, pts]) =>
        pts.map(([step, value]) => ({
          metric: k,
          seed: `seed ${r.tags.seed ?? '?'}`,
          step,
          value,
          panel: /loss|perplexity/.test(k) ? 'loss' : 'other metrics',
        })),
      ),
  );
  if (values.length === 0) return null;
  const svg = await vegaLiteSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `${title}: learning curves`,
    data: { values },
    facet: { row: { field: 'panel', type: 'nominal', title: null } },
    spec: {
      width: 520,
      height: 200,
      mark: { type: 'line', point: false },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'metric', type: 'nominal' },
        strokeDash: { field: 'seed', type: 'nominal' },
        detail: { field: 'seed', type: 'nominal' },
      },
    },
    resolve: { scale: { y: 'independent' } },
  } as never);
  return svg;
}

/** "mean ± std (n seeds: v1, v2, ...)" in the metric's own format; a single run shows its value. */
function aggregate(runs: StoredRun[], metric: string, configOf?: (r: StoredRun) => unknown): string {
  const vals = runs
    .map((r) => ({ seed: r.tags.seed ?? '?', v: finalValue(r, metric, configOf?.(r)) }))
    .filter((x): x is { seed: string; v: number } => x.v !== undefined);
  if (vals.length === 0) return 'n/a';
  if (vals.length === 1) return fmt(vals[0]!.v, metric);
  const { mean, std } = meanStd(vals.map((x) => x.v));
  return `${fmt(mean, metric)} ± ${fmt(std, metric)} (${vals.length} seeds: ${vals.map((x) => `${x.seed}: ${fmt(x.v, metric)}`).join(', ')})`;
}

/**
 * "epoch 4 of 7 (early stopping's restoreBest)" for a run that early stopping's `restoreBest` ended with its best
 * epoch's weights ("epoch 39 of 39, the last" where that was the last), saying when the epoch was inferred
 * ({@link restoredEpochOf}); with `seeded`, prefixed by the run's seed. Null when there is none.
 */
export function restoredText(r: StoredRun, config: unknown, seeded: boolean): string | null {
  const restored = restoredEpochOf(r, config);
  if (!restored) return null;
  const epochs = r.metrics.epoch?.reduce((m, [, e]) => Math.max(m, e), 0);
  const how = restored.inferred
    ? "early stopping's restoreBest; inferred from the logged metric it monitored: the run predates the tag loom.restored_epoch"
    : "early stopping's restoreBest";
  const of = epochs ? ` of ${epochs}${epochs === restored.epoch ? ', the last' : ''}` : '';
  return `${seeded ? `seed ${r.tags.seed ?? '?'}: ` : ''}epoch ${restored.epoch}${of} (${how})`;
}

/** One point of a few-shot learning curve: a variant's test score at one subset size, over seeds. */
interface SubsetPoint {
  variant: string;
  size: string;
  examples: number;
  metric: 'accuracy' | 'f1';
  mean: number;
  std: number;
  n: number;
}

/**
 * A few-shot grid's learning curves from its runs (tagged `few_shot.size`, and `few_shot.examples` with the subset's
 * example count; a numeric size stands for itself where that tag is missing): per preset, each variant's final
 * test accuracy and F1 at each size, mean ± sample standard deviation over seeds, as a table and a plot against the
 * labelled examples on a log scale.
 */
async function subsetCurves(runs: StoredRun[]): Promise<{ preset: string; table: string[]; svg: string | null }[]> {
  const byPreset = new Map<string, StoredRun[]>();
  for (const r of runs.filter((r) => r.tags['few_shot.size'] !== undefined && r.status === 'FINISHED')) {
    const preset = r.tags.preset ?? '?';
    byPreset.set(preset, [...(byPreset.get(preset) ?? []), r]);
  }
  const out: { preset: string; table: string[]; svg: string | null }[] = [];
  for (const [preset, grid] of byPreset) {
    const cells = new Map<string, StoredRun[]>();
    for (const r of grid) {
      const key = `${r.tags.variant ?? '?'}|${r.tags['few_shot.size']}`;
      cells.set(key, [...(cells.get(key) ?? []), r]);
    }
    const points: SubsetPoint[] = [];
    for (const [key, cell] of cells) {
      const [variant, size] = key.split('|') as [string, string];
      const group = dedupe(cell);
      const examples = Number(group[0]!.tags['few_shot.examples'] ?? size);
      for (const metric of ['accuracy', 'f1'] as const) {
        const vals = group.map((r) => finalValue(r, `test_${metric}`)).filter((v): v is number => v !== undefined);
        if (vals.length) points.push({ variant, size, examples, metric, ...meanStd(vals), n: vals.length });
      }
    }
    const variants = [...new Set(points.map((p) => p.variant))].sort();
    const sizes = [...new Set(points.map((p) => p.size))].sort((a, b) => {
      const [x, y] = [points.find((p) => p.size === a)!.examples, points.find((p) => p.size === b)!.examples];
      return (Number.isFinite(x) ? x : Infinity) - (Number.isFinite(y) ? y : Infinity);
    });
    const pct = (v: number) => `${(v * 100).toFixed(2)} %`;
    const cell = (variant: string, size: string, metric: SubsetPoint['metric']) => {
      const p = points.find((q) => q.variant === variant && q.size === size && q.metric === metric);
      return p ? `${pct(p.mean)} ± ${pct(p.std)} (${p.n})` : 'n/a';
    };
    const table = [
      `| labelled examples | ${variants.flatMap((v) => [`${v}: accuracy`, `${v}: F1`]).join(' | ')} |`,
      `| --- |${variants.map(() => ' --- | --- |').join('')}`,
      ...sizes.map((size) => {
        const examples = points.find((p) => p.size === size)!.examples;
        const label = size === String(examples) ? size : `${size} (${Number.isFinite(examples) ? examples : 'count not recorded'})`;
        return `| ${label} | ${variants.flatMap((v) => [cell(v, size, 'accuracy'), cell(v, size, 'f1')]).join(' | ')} |`;
      }),
    ];
    const plotted = points.filter((p) => Number.isFinite(p.examples) && p.examples > 0);
    const svg = plotted.length ? await examplesCurvesSvg(`${preset}: test scores against labelled examples (mean ± 1 s.d. over seeds)`, plotted) : null;
    out.push({ preset, table, svg });
  }
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface ReportOptions {
  /** The MLflow file store to read (default ./mlruns). */
  store: string;
  /** Where to write report.md, report.html and the SVGs. */
  out: string;
  papers: Record<string, Paper>;
  /** A checkout whose `papers/*\/results/*.json` records are read too (default: none). */
  records?: string;
}

/**
 * Store runs and records' runs, each run once; and each run's config (a store run's `artifacts/config.json`, a
 * record's `config`; null where not recorded).
 */
function allRuns(opts: ReportOptions): { runs: StoredRun[]; configOf: (r: StoredRun) => unknown } {
  const byId = new Map<string, StoredRun>();
  const recordConfigs = new Map<string, unknown>();
  for (const r of readStore(opts.store)) if (r.tags.paper || r.tags['loom.config']) byId.set(r.runId, r);
  // A record of a run still in the store adds nothing; of two records of one run (one kept from before the run
  // was resumed to train further), the later one counts.
  for (const rec of opts.records ? readRecords(opts.records) : []) {
    const have = byId.get(rec.run.runId);
    if (!have || (!have.dir && (rec.run.end ?? 0) > (have.end ?? 0))) {
      byId.set(rec.run.runId, rec.run);
      recordConfigs.set(rec.run.runId, rec.config);
    }
  }
  const read = new Map<string, unknown>();
  const configOf = (r: StoredRun): unknown => {
    if (!r.dir) return recordConfigs.get(r.runId) ?? null;
    const file = path.join(r.dir, 'artifacts', 'config.json');
    if (!read.has(file)) read.set(file, fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null);
    return read.get(file);
  };
  return { runs: [...byId.values()].sort((a, b) => b.start - a.start), configOf };
}

/** Newest first; a rerun (same seed, same commit, same status) of a run already kept is left out. */
function dedupe(runs: StoredRun[]): StoredRun[] {
  const seen = new Set<string>();
  return runs.filter((r) => {
    const key = `${r.tags.seed}|${r.tags['git.commit']}|${r.status}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The section a run belongs to: its paper, or for a run of `loom train <file>` (tagged `loom.config`) its experiment,
 * under which each config file is one group (its `preset` tag is the file's name).
 */
function reportGroup(r: StoredRun): string {
  return r.tags.paper ?? `experiment ${r.tags.experiment ?? '?'}`;
}

const uniq = (xs: (string | undefined)[]) => [...new Set(xs.map((x) => x ?? '?'))].join(', ');

/**
 * The first process's value, then each resume's (tags `loom.resumed.<step>.<what>`) where it differs from the one
 * before, with its step.
 */
function changesAtResumes(r: StoredRun, first: string, what: string): { first: string; later: string[] } {
  let current = first;
  const later: string[] = [];
  const resumes = Object.entries(r.tags)
    .flatMap(([k, v]) => {
      const m = /^loom\.resumed\.(\d+)\.(.+)$/.exec(k);
      return m && m[2] === what ? [[Number(m[1]), v] as const] : [];
    })
    .sort((a, b) => a[0] - b[0]);
  for (const [step, value] of resumes) if (value !== current) later.push(`${(current = value)} from step ${step}`);
  return { first, later };
}

/** A run's commit, and each later commit a resume ran it from: "abc1234 (def5678 from step 14190)". */
export function commitsOf(r: StoredRun): string {
  const { first, later } = changesAtResumes(r, r.tags['git.commit'] ?? '?', 'commit');
  return later.length ? `${first} (${later.join(', ')})` : first;
}

/**
 * A run's wall time as the report shows it: `wall_time_s`, and for a resumed run what it covers. Runs resumed since
 * checkpoints carry the time (2026-12-02) sum every process's; earlier ones (no `loom.wall_time` tag, or one saying
 * so) give the last process's time only.
 */
export function wallTimeOf(r: StoredRun): string | null {
  const w = r.metrics.wall_time_s?.at(-1)?.[1];
  if (w === undefined) return null;
  const steps = [...new Set(resumedSteps(r.tags))];
  if (steps.length === 0) return `${w.toFixed(1)} s`;
  const note = r.tags['loom.wall_time'];
  const summed = note !== undefined && !note.startsWith('the last process only');
  return summed
    ? `${w.toFixed(1)} s (summed over ${steps.length + 1} processes; resumed from step${steps.length > 1 ? 's' : ''} ${steps.join(', ')})`
    : `${w.toFixed(1)} s (the last process only, resumed from step ${steps.at(-1)}; the earlier processes' time was not recorded)`;
}

/** One row of a paper's claims table: a claim checked on one preset (or across presets). */
export interface ClaimCheck {
  statement: string;
  source: string;
  /** The preset the variants were compared in, or the presets compared. */
  where: string;
  /** What was measured, best first: "none 106.85 < naive 124.15 < variational 143.22 (1 seed each)". */
  measured: string;
  verdict: 'reproduced' | 'not reproduced' | 'not all measured' | 'recipes differ';
  /**
   * Where the compared runs' configs differ outside the claim's `varies` (verdict "recipes differ"), one line per
   * field: "optimizer.lr: 35 (none), 1 (naive, variational)"; and the runs whose config was not recorded.
   */
  recipe?: string[];
}

/** Config fields that do not change a run's numbers, left out of the recipe a claim's runs must share. */
const NOT_RECIPE = ['seed', 'experiment', 'trackers', 'trainer.logEvery', 'trainer.checkpoint'];

/** A config as dotted paths to JSON-encoded leaves, without the progress display's callback. */
function recipeLeaves(config: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (v: unknown, at: string) => {
    // An empty array or object adds no leaf: against a filled one, the filled one's leaves read "absent" here.
    if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, at ? `${at}.${k}` : k);
    else out.set(at, JSON.stringify(v));
  };
  const c = { ...(config as Record<string, unknown>) };
  const isProgress = (cb: unknown) => cb === 'progress' || (cb as { type?: unknown } | null)?.type === 'progress';
  if (Array.isArray(c.callbacks)) c.callbacks = c.callbacks.filter((cb) => !isProgress(cb));
  walk(c, '');
  return out;
}

/**
 * The fields in which the configs of runs compared by a claim differ, outside `varies` and {@link NOT_RECIPE}: one
 * line per field, its values with the labels of the runs that had each. A field some configs lack reads "absent"
 * there: a callback or an optional setting one run had and another did not is a difference (so is a field the
 * config schema gained after a run: the report cannot tell which default that run had).
 */
export function recipeDifferences(runs: readonly { label: string; config: unknown }[], varies: readonly string[]): string[] {
  const skip = [...NOT_RECIPE, ...varies];
  const covered = (p: string) => skip.some((s) => p === s || p.startsWith(`${s}.`));
  const leaves = runs.map((r) => ({ label: r.label, leaves: recipeLeaves(r.config) }));
  const paths = [...new Set(leaves.flatMap((l) => [...l.leaves.keys()]))].filter((p) => !covered(p)).sort();
  const out: string[] = [];
  for (const p of paths) {
    const byValue = new Map<string, Set<string>>();
    for (const l of leaves) {
      const v = l.leaves.get(p) ?? 'absent';
      byValue.set(v, (byValue.get(v) ?? new Set()).add(l.label));
    }
    if (byValue.size > 1) out.push(`${p}: ${[...byValue].map(([v, labels]) => `${v} (${[...labels].join(', ')})`).join(', ')}`);
  }
  return out;
}

/**
 * Checks a paper's claims against its finished runs: per claim, in every preset that has run at least two of the
 * claimed variants (or once, across the claimed presets, when any of them has run), the mean over seeds of each
 * claimed run (a seed's newest run only: runs come newest first), ranked best first. "reproduced" when every claimed
 * run was measured and the measured order is the claimed one; a tie between neighbours is not the claimed order.
 * Given `configOf` (a run's config, null where not recorded), the runs ranked must also share their recipe but for
 * the claim's `varies`: where they do not, the verdict is "recipes differ" and `recipe` names the fields.
 */
export function checkClaims(claims: readonly PaperClaim[], runs: readonly StoredRun[], configOf?: (r: StoredRun) => unknown): ClaimCheck[] {
  const finished = runs.filter((r) => r.status === 'FINISHED');
  const out: ClaimCheck[] = [];
  for (const claim of claims) {
    const byPreset = claim.order.every((o) => o.preset !== undefined);
    const scopes = byPreset ? [null] : [...new Set(finished.map((r) => r.tags.preset ?? '?'))].sort();
    for (const scope of scopes) {
      const measured = claim.order.map((o) => {
        const mine = finished.filter(
          (r) =>
            (o.preset === undefined || r.tags.preset === o.preset) &&
            (scope === null || r.tags.preset === scope) &&
            (o.variant === undefined || r.tags.variant === o.variant),
        );
        const scored = [...new Map(mine.map((r) => [r.tags.seed, r] as const).reverse()).values()]
          .map((r) => ({ r, v: finalValue(r, claim.metric, configOf?.(r)) }))
          .filter((x): x is { r: StoredRun; v: number } => x.v !== undefined && Number.isFinite(x.v));
        const vals = scored.map((x) => x.v);
        return { label: o.label, runs: scored.map((x) => x.r), n: vals.length, mean: vals.length ? meanStd(vals).mean : undefined };
      });
      const have = measured.filter((m): m is typeof m & { mean: number } => m.mean !== undefined);
      if (have.length < (scope === null ? 1 : 2)) continue; // across presets, a claim half measured is shown as such
      const sign = claim.better === 'lower' ? 1 : -1;
      const ranked = [...have].sort((a, b) => sign * (a.mean - b.mean));
      const strict = ranked.every((m, i) => i === 0 || sign * (m.mean - ranked[i - 1]!.mean) > 0);
      const seeds = [...new Set(have.map((m) => m.n))];
      const missing = measured.filter((m) => m.mean === undefined).map((m) => m.label);
      // The runs ranked must share their recipe but for what the claim varies (when their configs can be read).
      const compared = measured.flatMap((m) => m.runs.map((r) => ({ label: m.label, seed: r.tags.seed ?? '?', config: configOf?.(r) })));
      const recorded = compared.filter((c) => typeof c.config === 'object' && c.config !== null);
      const unrecorded = compared.filter((c) => !recorded.includes(c)).map((c) => `${c.label} seed ${c.seed}`);
      const differ = configOf ? recipeDifferences(recorded, claim.varies) : [];
      const recipe = [...differ, ...(configOf && unrecorded.length ? [`config not recorded, recipe not checked: ${unrecorded.join(', ')}`] : [])];
      out.push({
        statement: claim.statement,
        source: claim.source,
        where: scope === null ? claim.order.map((o) => o.preset).join(', ') : scope,
        measured: `${ranked.map((m) => `${m.label} ${fmt(m.mean, claim.metric)}`).join(` ${claim.better === 'lower' ? '<' : '>'} `)} (${
          seeds.length === 1
            ? `${seeds[0]} seed${seeds[0] === 1 ? '' : 's'}${have.length > 1 ? ' each' : ''}`
            : have.map((m) => `${m.label}: ${m.n} seeds`).join(', ')
        }${missing.length ? `; not measured: ${missing.join(', ')}` : ''})`,
        verdict: differ.length
          ? 'recipes differ'
          : missing.length
            ? 'not all measured'
            : strict && ranked.every((m, i) => m.label === have[i]!.label)
              ? 'reproduced'
              : 'not reproduced',
        ...(recipe.length ? { recipe } : {}),
      });
    }
  }
  return out;
}

/**
 * A run's machine: its first process's (the run's tags), then each resume's where it differs, with its step (tags
 * `loom.resumed.<step>.machine`, since 2026-12-02): "X (Y from step 14190)".
 */
export function machinesOf(r: StoredRun): string {
  const { first, later } = machineChanges(r);
  return later.length ? `${first} (then ${later.join(', then ')})` : first;
}

/** The run's machine and each resume's that differs from the one before ({@link changesAtResumes}). */
function machineChanges(r: StoredRun): { first: string; later: string[] } {
  return changesAtResumes(r, describeMachine(machineTags(r.tags)), 'machine');
}

/** Builds the report; returns the paths written. */
export async function buildReport(opts: ReportOptions): Promise<{ markdown: string; html: string; runs: number }> {
  const { runs, configOf } = allRuns(opts);
  fs.mkdirSync(opts.out, { recursive: true });
  const from = `the MLflow store \`${opts.store}\`${opts.records ? ' and the committed run records (papers/*/results/)' : ''}`;
  const md: string[] = ['# Reproduction report', '', `Generated ${new Date().toISOString()} from ${from} by \`loom report\`.`, ''];
  const html: string[] = [
    '<!doctype html><meta charset="utf-8"><title>loom reproduction report</title>',
    '<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>',
    '<h1>Reproduction report</h1>',
    `<p>Generated ${new Date().toISOString()} from ${esc(from)}.</p>`,
  ];
  if (runs.length === 0) md.push('No paper runs in this store yet: run `npm run paper -- <name> --preset <preset>` (or `loom train <config file>`).');
  const byPaper = new Map<string, StoredRun[]>();
  for (const r of runs) byPaper.set(reportGroup(r), [...(byPaper.get(reportGroup(r)) ?? []), r]);
  for (const [name, paperRuns] of byPaper) {
    const paper = opts.papers[name];
    md.push(`## ${paper?.title ?? name}`, '');
    html.push(`<h2>${esc(paper?.title ?? name)}</h2>`);
    const checks = checkClaims(paper?.claims ?? [], paperRuns, configOf);
    if (checks.length) {
      const rows = checks.map((c) => [
        c.statement,
        c.where,
        c.measured,
        `**${c.verdict}**${c.recipe ? `: ${c.recipe.join('; ').replace(/\|/g, '\\|')}` : ''}`,
        c.source,
      ]);
      md.push('### Claims', '', '| claim | preset(s) | measured, best first (mean over seeds) | verdict | source |', '| --- | --- | --- | --- | --- |');
      md.push(...rows.map((row) => `| ${row.join(' | ')} |`), '');
      html.push(
        `<h3>Claims</h3><table><tr><th>claim</th><th>preset(s)</th><th>measured, best first (mean over seeds)</th><th>verdict</th><th>source</th></tr>${rows
          .map((row) => `<tr>${row.map((c) => `<td>${esc(c.replace(/\*\*/g, ''))}</td>`).join('')}</tr>`)
          .join('')}</table>`,
      );
    }
    const groups = new Map<string, StoredRun[]>();
    for (const r of paperRuns) {
      const subset = r.tags['few_shot.size'] === undefined ? '' : ` / ${r.tags['few_shot.size']} labelled`;
      const key = `${r.tags.preset ?? '?'}${r.tags.variant ? ` / ${r.tags.variant}` : ''}${subset}${r.status === 'FINISHED' ? '' : ` (${r.status})`}`;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (const [key, all] of groups) {
      const group = dedupe(all);
      const t0 = group[0]!.tags;
      const walls = group.map(wallTimeOf).filter((w): w is string => w !== null);
      const env = [
        ['status', uniq(group.map((r) => r.status))],
        ['runs', `${group.length}${all.length > group.length ? ` (${all.length - group.length} rerun(s) of the same seed and commit not shown)` : ''}`],
        ['seeds', uniq(group.map((r) => r.tags.seed))],
        ['scale', uniq(group.map((r) => r.tags.scale ?? 'not recorded'))],
        ['backend', uniq(group.map((r) => `${r.tags.backend ?? '?'} (${(r.tags['backend.kernels'] ?? r.tags['tfjs.backend'] ?? '').split(':')[0]})`))],
        [
          'hardware',
          uniq(
            group.map(
              (r) =>
                `${r.tags['cpu.model'] ?? '?'}${r.tags['cpu.id'] ? ` (${r.tags['cpu.id']})` : ''} × ${r.tags['cpu.count'] ?? '?'}${r.tags['gpu.model'] ? `, GPU ${r.tags['gpu.model']}` : ''}`,
            ),
          ),
        ],
        // Where a resume ran on another machine or thread count (the bits then differ from an uninterrupted run's).
        ...(group.some((r) => machineChanges(r).later.length > 0) ? [['machines', uniq(group.map(machinesOf))]] : []),
        ['versions', uniq(group.map((r) => `node ${r.tags['node.version'] ?? '?'}, tfjs ${r.tags['tfjs.version'] ?? '?'}`))],
        // The epoch whose weights were tested, where early stopping kept its best (val_* are that epoch's).
        ...(group.some((r) => restoredEpochOf(r, configOf(r)))
          ? [
              [
                'restored epoch',
                group
                  .map((r) => restoredText(r, configOf(r), group.length > 1))
                  .filter((t) => t !== null)
                  .join(', '),
              ],
            ]
          : []),
        ['commit', uniq(group.map(commitsOf))],
        ['wall time', walls.length === 0 ? 'n/a' : walls.join(', ')],
        ['MLflow run', group.map((r) => r.runId).join(', ')],
        // A run that has not finished (from the store, or an unfinished record): how far it got and why it ended.
        ...(group.some((r) => r.status !== 'FINISHED')
          ? [
              ['last step', group.map((r) => String(lastStep(r))).join(', ')],
              // A run still going keeps the status reason of the process that stopped before its resume: not how it ended.
              ['ended', uniq(group.map((r) => (r.status === 'RUNNING' ? 'still running' : (r.tags['loom.status_reason'] ?? 'not recorded'))))],
            ]
          : []),
      ];
      const refs = (paper?.references ?? []).filter((ref) => !ref.variant || ref.variant === t0.variant);
      const rows = refs.map((ref) => [ref.label, aggregate(group, ref.metric, configOf), fmt(ref.value, ref.metric), ref.source]);
      const measuredOnly = [...new Set(group.flatMap((r) => Object.keys(r.metrics)))]
        .filter((k) => k.startsWith('test_') && !refs.some((ref) => ref.metric === k))
        .sort();
      for (const k of measuredOnly) rows.push([k, aggregate(group, k, configOf), '', '']);
      const title = `${name} ${key}`;
      const svg = await curves(title, group);
      const svgFile = `${name}-${key.replace(/[^A-Za-z0-9_-]+/g, '-')}-${group[0]!.runId.slice(0, 8)}.svg`;
      if (svg) fs.writeFileSync(path.join(opts.out, svgFile), svg);
      md.push(
        `### ${key}`,
        '',
        ...env.map(([k, v]) => `- ${k}: ${v}`),
        '',
        '| | measured | published / reference | source |',
        '| --- | --- | --- | --- |',
        ...rows.map((row) => `| ${row.join(' | ')} |`),
        '',
      );
      if (svg) md.push(`![learning curves](${svgFile})`, '');
      html.push(`<h3>${esc(key)}</h3><ul>${env.map(([k, v]) => `<li>${esc(k!)}: ${esc(v!)}</li>`).join('')}</ul>`);
      html.push(
        `<table><tr><th></th><th>measured</th><th>published / reference</th><th>source</th></tr>${rows.map((row) => `<tr>${row.map((c) => `<td>${esc(c!)}</td>`).join('')}</tr>`).join('')}</table>`,
      );
      if (svg) html.push(svg);
    }
    for (const { preset, table, svg } of await subsetCurves(paperRuns)) {
      const title = `${preset}: learning curves over labelled examples`;
      const svgFile = `${name}-${preset.replace(/[^A-Za-z0-9_-]+/g, '-')}-labelled-examples.svg`;
      if (svg) fs.writeFileSync(path.join(opts.out, svgFile), svg);
      md.push(`### ${title}`, '', 'Final test scores, mean ± sample standard deviation over seeds (number of seeds):', '', ...table, '');
      if (svg) md.push(`![${title}](${svgFile})`, '');
      html.push(`<h3>${esc(title)}</h3><pre>${esc(table.join('\n'))}</pre>`);
      if (svg) html.push(svg);
    }
  }
  const markdown = path.join(opts.out, 'report.md');
  const page = path.join(opts.out, 'report.html');
  fs.writeFileSync(markdown, `${md.join('\n')}\n`);
  fs.writeFileSync(page, `${html.join('\n')}\n`);
  return { markdown, html: page, runs: runs.length };
}
