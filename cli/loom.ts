/**
 * The `loom` command line: `paper <name>` runs a reproduction, `train <file>` the experiment a config file describes,
 * `plugins` lists the registry, `papers` lists papers, `report` writes the reproduction report, `sync` uploads runs
 * spooled while the MLflow server was unreachable.
 * It wires the built-in plugins and papers into a fresh registry; core/ knows nothing of either.
 *
 * {@link run} does one command and returns its exit code: 0 done; 2 bad input (any LoomError: loom's own message,
 * never a stack trace); 1 a command that reports failure (`sync` with runs still pending) or a bug (with its
 * stack). Flags are parsed here rather than by node:util's parseArgs, whose messages are Node's ("Unknown option",
 * "ambiguous" for `--seed -1`) and which has no `--help`: every command takes `--help`, an unknown flag gets a
 * did-you-mean, and every number is checked with its flag named. cli/bin.mjs calls `run` and exits only after
 * stdout has drained.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  ConfigError,
  createRegistry,
  editDistance,
  finalEpochLogs,
  InterruptedError,
  type JsonObject,
  LoomError,
  mergeConfig,
  PLUGIN_KINDS,
  type PluginKind,
  type PluginRegistry,
} from '../core';
import { findLatestCheckpoint, formatComparison, loadPlugins, registerPaperPlugins, type Paper, type PaperResult } from '../runtime';
import { parseExperimentConfig } from '../core/config';
import { formatMetric, readConfigFile, runExperiment } from '../runtime';
import { papers } from '../papers';
import { registerBuiltins } from '../plugins';
import { syncStore } from '../plugins/trackers/mlflow-rest';
import { pluginDocs } from './plugin-docs';
import { QUANTIZE_COMMAND, quantizeCommand } from './quantize';
import { readStore, recordOf, recordPath, writeRecord, type StoredRun } from './records';
import { buildReport } from './report';

/** Where a command writes: the console in the executable, buffers in tests that call {@link run} in process. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

const consoleIO: CliIO = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** A flag: `value` names its argument (a flag without one is a switch); `help` ends with its default. */
export interface Flag {
  value?: string;
  multiple?: boolean;
  help: string;
}

export interface Command {
  name: string;
  args: string;
  summary: string;
  flags: Record<string, Flag>;
}

/** The preset a paper runs when `--preset` is not given. */
export function defaultPreset(paper: Paper): string {
  return 'smoke' in paper.presets ? 'smoke' : Object.keys(paper.presets)[0]!;
}

const HELP: Flag = { help: 'print this help and exit' };

/**
 * The flags the papers declare for their modes (runtime/paper.ts `PaperMode`), for `loom paper`'s flag table: a flag
 * several papers declare is listed once, with each paper's help. Which apply is checked once the paper is known.
 */
function paperModeFlags(): Record<string, Flag> {
  const byFlag = new Map<string, { value: string; helps: string[]; mode: boolean }>();
  const add = (name: string, value: string, help: string, mode: boolean) => {
    const f = byFlag.get(name) ?? { value, helps: [], mode };
    if (f.value !== value) f.value = 'INPUT'; // papers name the input differently (a word, a prompt)
    f.helps.push(help);
    byFlag.set(name, f);
  };
  for (const paper of Object.values(papers)) {
    for (const mode of paper.modes ?? []) {
      add(mode.flag, mode.value, `${paper.name}: ${mode.help}`, true);
      for (const [name, o] of Object.entries(mode.options ?? {})) add(name, o.value, `${paper.name} --${mode.flag}: ${o.help}`, false);
    }
  }
  return Object.fromEntries(
    [...byFlag].map(([name, f]) => [name, { value: f.value, help: `${f.helps.join('; ')}${f.mode ? ' (default: none, train)' : ''}` }]),
  );
}

/** Every flag a paper declares: its modes' flags and their options. */
function flagsOf(paper: Paper): string[] {
  return (paper.modes ?? []).flatMap((m) => [m.flag, ...Object.keys(m.options ?? {})]);
}

/** Flags that `paper` and `train` share: they mean the same for a paper's run and a config file's. */
const BACKEND_FLAG: Flag = {
  value: 'B',
  help: 'force a backend: tfjs-node-gpu, webgpu, tfjs-node, native-cpu or cpu (default: LOOM_BACKEND, else the fastest available)',
};
const PRECISION_FLAG: Flag = {
  value: 'fp32|bf16',
  help: "the matrix products' precision: bf16 rounds their operands to bfloat16 and sums in fp32, weights and optimizer state stay fp32; native-cpu only (the same as --set trainer.precision=bf16) (default: the config's, else fp32)",
};
const TRACKING_URI_FLAG: Flag = {
  value: 'URI',
  help: 'an http(s) MLflow tracking server, a file: URI or a directory for the local store (default: MLFLOW_TRACKING_URI, else ./mlruns)',
};
const VERBOSE_FLAG: Flag = { help: 'also print the list of native kernels the backend replaced (also LOOM_VERBOSE=1) (default: off)' };

export const COMMANDS: Record<string, Command> = {
  paper: {
    name: 'paper',
    args: '<name> [flags]',
    summary: 'train and test one paper reproduction, and print measured vs published numbers',
    flags: {
      preset: { value: 'P', help: 'which preset of the paper to run (default: smoke)' },
      seed: { value: 'N', help: "random seed, a non-negative integer (default: the preset's seed; `loom paper <name> --help` shows it)" },
      backend: BACKEND_FLAG,
      parallelism: {
        value: 'S',
        help: "a parallelism strategy, e.g. mpi-data-parallel under mpirun (docs/parallelism.md) (default: the preset's, single-process)",
      },
      json: { value: 'FILE', help: 'also write a summary of the run as JSON to FILE (default: none)' },
      'tracking-uri': TRACKING_URI_FLAG,
      resume: {
        value: 'latest|DIR',
        help: 'continue an interrupted run (the same MLflow run) from its newest checkpoint under ./checkpoints ("latest") or from a checkpoint directory; give the same preset, seed and --set values (default: a new run)',
      },
      set: {
        value: 'FIELD=VALUE',
        multiple: true,
        help: "override one field of the preset's config by its dotted path, repeatable; VALUE is read as JSON when it parses, else as a string: --set trainer.epochs=1 --set optimizer.lr=3e-4 (default: none)",
      },
      verbose: VERBOSE_FLAG,
      'max-steps': {
        value: 'N',
        help: "stop after N optimizer steps, then test as at the end: replays the start of a recorded run (the same as --set trainer.maxSteps=N) (default: the preset's epochs)",
      },
      precision: PRECISION_FLAG,
      record: {
        help: 'after the run, write its record (papers/<name>/results/<preset>-seed<N>.json in this checkout of loom, or in the current directory where loom is an installed package, or under LOOM_RECORDS_ROOT: summary, config, commit, machine, every logged value) from the local store (default: off)',
      },
      ...paperModeFlags(),
      help: HELP,
    },
  },
  train: {
    name: 'train',
    args: '<config.yaml|json> [flags]',
    summary: "train and test the experiment a config file describes (the schema of the papers' presets; `extends` names a file beside it)",
    flags: {
      seed: { value: 'N', help: "random seed, a non-negative integer (default: the config's seed, else 0)" },
      backend: BACKEND_FLAG,
      json: { value: 'FILE', help: 'also write a summary of the run (history, test metrics, MLflow run) as JSON to FILE (default: none)' },
      'tracking-uri': TRACKING_URI_FLAG,
      resume: {
        value: 'latest|DIR',
        help: 'continue an interrupted run from its newest checkpoint under ./checkpoints ("latest") or a checkpoint directory (default: a new run)',
      },
      set: {
        value: 'FIELD=VALUE',
        multiple: true,
        help: 'override one field of the config by its dotted path, repeatable; VALUE is read as JSON when it parses, else as a string (default: none)',
      },
      'max-steps': { value: 'N', help: "stop after N optimizer steps, then test (the same as --set trainer.maxSteps=N) (default: the config's epochs)" },
      precision: PRECISION_FLAG,
      verbose: VERBOSE_FLAG,
      help: HELP,
    },
  },
  papers: { name: 'papers', args: '', summary: 'list the papers and their presets', flags: { help: HELP } },
  quantize: QUANTIZE_COMMAND,
  plugins: {
    name: 'plugins',
    args: '[flags]',
    summary: 'list every registered plugin',
    flags: {
      json: { help: "print the list as JSON, with each plugin's options schema (default: a table)" },
      kind: { value: 'K', help: `list one kind only: ${PLUGIN_KINDS.join(', ')} (default: all)` },
      markdown: { value: 'FILE', help: 'write the plugin reference (docs/plugins.md) to FILE instead (default: none)' },
      help: HELP,
    },
  },
  record: {
    name: 'record',
    args: '[flags]',
    summary: 'write the record of a finished paper run (papers/<name>/results/<preset>-seed<N>.json) from a local store',
    flags: {
      store: { value: 'DIR', help: 'the MLflow file store holding the run (default: the local store MLFLOW_TRACKING_URI names, else ./mlruns)' },
      run: {
        value: 'ID',
        multiple: true,
        help: 'the MLflow run id, repeatable (default: the newest finished paper run; with --unfinished, the newest paper run)',
      },
      unfinished: {
        help: "also record a run that has not finished (stopped, failed or still running) as <preset>-seed<N>.unfinished.json, with its status and last step: the metric history so far, committed while a long run is not done; the finished run's record replaces it (default: finished runs only)",
      },
      out: {
        value: 'DIR',
        help: 'the checkout whose papers/<name>/results/ receives the record (default: this checkout of loom, or the current directory where loom is an installed package)',
      },
      help: HELP,
    },
  },
  report: {
    name: 'report',
    args: '[flags]',
    summary: 'write reports/report.{md,html}: every paper run beside the published numbers',
    flags: {
      store: { value: 'DIR', help: 'the MLflow file store to read (default: the local store MLFLOW_TRACKING_URI names, else ./mlruns)' },
      out: { value: 'DIR', help: 'where to write report.md and report.html (default: reports)' },
      records: {
        value: 'DIR',
        help: "also read the committed run records under DIR/papers/*/results/ (default: this checkout of loom, or the current directory where loom is an installed package; 'none' to skip)",
      },
      help: HELP,
    },
  },
  sync: {
    name: 'sync',
    args: '[flags]',
    summary: 'upload the runs spooled while the MLflow server was unreachable',
    flags: {
      'tracking-uri': {
        value: 'URL',
        help: "the http(s) tracking server for runs created offline (default: MLFLOW_TRACKING_URI when it is http(s), else each run's recorded server)",
      },
      dir: { value: 'DIR', help: 'the local store holding the spooled runs (default: mlruns)' },
      help: HELP,
    },
  },
  help: { name: 'help', args: '[command]', summary: 'print this help, or the help of one command', flags: { help: HELP } },
};

/** `text` cut at spaces into lines of at most `width` characters (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

function commandHelp(cmd: Command): string {
  const names = Object.entries(cmd.flags).map(([n, f]) => `${n === 'help' ? '-h, ' : ''}--${n}${f.value ? ` ${f.value}` : ''}`);
  const width = Math.max(...names.map((n) => n.length));
  const lines = Object.values(cmd.flags).map((f, i) => `  ${names[i]!.padEnd(width)}  ${wrap(f.help, 110 - width - 4).join(`\n${' '.repeat(width + 4)}`)}`);
  return [`usage: loom ${cmd.name}${cmd.args ? ` ${cmd.args}` : ''}`, '', cmd.summary, '', 'flags:', ...lines].join('\n');
}

/** `loom paper <name> --help`: the command's flags, then the paper's presets (default one, seeds) and its modes. */
export function paperHelp(paper: Paper): string {
  const def = defaultPreset(paper);
  const presets = Object.keys(paper.presets).map((p) => `  ${p}${p === def ? ' (default)' : ''}: ${paper.presetNotes[p] ?? ''}`);
  const seeds = [...new Set(Object.values(paper.presets).map((p) => String(p.seed ?? 0)))].join(', ');
  return [
    commandHelp(COMMANDS.paper!).replace('<name>', paper.name),
    '',
    `${paper.name}: ${paper.title}`,
    `presets (default: ${def}; seed ${seeds}):`,
    ...presets,
    ...(paper.modes?.length
      ? [
          'modes other than training (their flags):',
          ...paper.modes.flatMap((m) => [
            `  --${m.flag} ${m.value}: ${m.help}`,
            ...Object.entries(m.options ?? {}).map(([n, o]) => `    --${n} ${o.value}: ${o.help}`),
          ]),
        ]
      : ['modes other than training: none (this paper only trains)']),
  ].join('\n');
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'usage: loom <command> [flags]     (loom <command> --help for its flags and defaults)',
    '',
    ...Object.values(COMMANDS).map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `papers: ${Object.keys(papers).join(', ')}`,
    '',
    'every command: --plugin <module> (repeatable) loads a plugin module, a path or a package name, besides the installed',
    'plugin packages (those whose package.json has a "loom" field or named loom-plugin-*), which are found by themselves',
  ].join('\n');
}

/** The `--plugin` modules of the command being run (a global flag, taken out of argv by {@link takePluginFlags}). */
let pluginModules: string[] = [];

/** Splits the global `--plugin <module>` / `--plugin=<module>` flags (before any `--`) from the rest of `argv`. */
function takePluginFlags(argv: string[]): { rest: string[]; plugins: string[] } {
  const rest: string[] = [];
  const plugins: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '--plugin' || a.startsWith('--plugin=')) {
      const value = a === '--plugin' ? argv[++i] : a.slice('--plugin='.length);
      if (!value || value.startsWith('--')) throw new ConfigError('--plugin', 'expects a module: a path or a package name');
      plugins.push(value);
    } else rest.push(a);
  }
  return { rest, plugins };
}

/**
 * Loads the modules a config's `plugins: [...]` names into `registry` (before the config is validated, so that its
 * plugin specs can name them); a `plugins` that is not a list of strings is left for the schema to report.
 */
export async function loadConfigPlugins(registry: PluginRegistry, config: JsonObject): Promise<void> {
  const plugins = config.plugins;
  if (Array.isArray(plugins) && plugins.every((p) => typeof p === 'string')) await loadPlugins(registry, plugins, { discover: false });
}

/** A fresh registry: the built-ins, the installed plugin packages of the working directory and the `--plugin` modules. */
async function cliRegistry(): Promise<PluginRegistry> {
  const registry = registerBuiltins(createRegistry());
  await loadPlugins(registry, pluginModules);
  return registry;
}

/**
 * ` (did you mean X?)` for the name in `names` closest to `given`: the only one it is a prefix of, else the nearest
 * within a third of the longer length (at least 1 edit); '' when none is close.
 */
export function didYouMean(given: string, names: string[], prefix = ''): string {
  const prefixed = names.filter((n) => given.length >= 2 && n.startsWith(given));
  const scored = names.map((n) => ({ n, d: editDistance(given.toLowerCase(), n.toLowerCase()) })).sort((a, b) => a.d - b.d);
  const best =
    prefixed.length === 1
      ? prefixed[0]
      : scored[0] && scored[0].d <= Math.max(1, Math.floor(Math.max(given.length, scored[0].n.length) / 3))
        ? scored[0].n
        : undefined;
  return best === undefined ? '' : ` (did you mean ${prefix}${best}?)`;
}

type FlagValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Reads `args` against a command's flags: `--name VALUE`, `--name=VALUE`, switches, `-h`, and `--` before
 * positionals that start with a dash. A flag's value is the next argument even when it starts with one dash
 * (`--seed -1` reaches the seed's check), but not when it is another `--flag` (then the value is missing).
 */
function parseFlags(cmd: Command, args: string[]): { values: FlagValues; positionals: string[] } {
  const values: FlagValues = {};
  const positionals: string[] = [];
  const unknown = (flag: string) => {
    const names = Object.keys(cmd.flags);
    return new ConfigError(
      flag,
      `unknown flag of \`loom ${cmd.name}\`${didYouMean(flag.replace(/^-+/, ''), names, '--')}; \`loom ${cmd.name} --help\` lists its flags`,
    );
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a === '-h') {
      values.help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      if (a.startsWith('-') && a.length > 1) throw unknown(a);
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    const flag = cmd.flags[name];
    if (!flag) throw unknown(`--${name}`);
    if (!flag.value) {
      if (eq >= 0) throw new ConfigError(`--${name}`, `takes no value, got "${a.slice(eq + 1)}"`);
      values[name] = true;
      continue;
    }
    const value = eq >= 0 ? a.slice(eq + 1) : args[i + 1];
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new ConfigError(`--${name}`, `expects a value: --${name} ${flag.value}`);
    if (eq < 0) i++;
    if (flag.multiple) values[name] = [...((values[name] as string[] | undefined) ?? []), value];
    else if (values[name] !== undefined) throw new ConfigError(`--${name}`, `given twice ("${values[name]}" and "${value}")`);
    else values[name] = value;
  }
  return { values, positionals };
}

const str = (v: FlagValues[string]) => (typeof v === 'string' ? v : undefined);

/** A flag that sets a trainer field (`--max-steps`, `--precision`) merged into the --set overrides' trainer object. */
function setTrainerField(overrides: Record<string, unknown>, flag: string, field: Record<string, unknown>): void {
  const trainer = overrides.trainer;
  if (trainer !== undefined && (typeof trainer !== 'object' || trainer === null || Array.isArray(trainer)))
    throw new ConfigError(flag, 'conflicts with a --set that gives trainer a value');
  overrides.trainer = { ...((trainer as Record<string, unknown> | undefined) ?? {}), ...field };
}

/** `--precision`: fp32, bf16 or absent; anything else is a ConfigError naming the flag. */
function precisionFlag(v: FlagValues[string]): 'fp32' | 'bf16' | undefined {
  if (v === undefined) return undefined;
  if (v === 'fp32' || v === 'bf16') return v;
  throw new ConfigError('--precision', `must be fp32 or bf16, got "${String(v)}"`);
}

/** An integer flag of at least `min` (0 or 1), or undefined when absent; a bad value names the flag. */
export function integerFlag(name: string, v: string | undefined, min: 0 | 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^[+-]?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`--${name}`, `expected a ${min === 0 ? 'non-negative' : 'positive'} integer, got "${v}"`);
  }
  return n;
}

/** A finite number flag of at least `min` (a plain decimal, with an exponent if need be). */
export function numberFlag(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v.trim()) || !Number.isFinite(n) || n < min) {
    throw new ConfigError(`--${name}`, `expected a number${min === -Infinity ? '' : ` >= ${min}`}, got "${v}"`);
  }
  return n;
}

/** Where runs are tracked: an http(s) server, or a local MLflow file store (a directory). */
export type TrackingTarget = { kind: 'server'; uri: string } | { kind: 'store'; dir: string };

/**
 * A tracking URI read as MLflow reads MLFLOW_TRACKING_URI: http(s) is a tracking server; a `file:` URI is the
 * local file store at its (absolute) path; a string without a scheme is a path to the local store, relative to the
 * working directory (MLflow does the same, so `not-a-uri` is the directory ./not-a-uri, which `mlflow ui
 * --backend-store-uri not-a-uri` reads; the run says where it logged). Anything else is rejected with `source`
 * (the variable or flag) named: another scheme (ftp:, s3:, sqlite:, databricks: MLflow's database and Databricks
 * stores are not loom's), `localhost:5000` (whose scheme is "localhost": a forgotten http://), a malformed URL, a
 * file: URI with a host or a relative path, and a scheme-less string holding "://" (an invalid scheme, not a path).
 */
export function parseTrackingUri(value: string, source: string): TrackingTarget {
  const forms = 'an http(s) URL of a tracking server (http://localhost:5000), a file: URI (file:///home/me/mlruns) or a directory path (./mlruns)';
  if (value.trim() === '') throw new ConfigError(source, `is empty; expected ${forms}`);
  const windowsDrive = process.platform === 'win32' && /^[A-Za-z]:[\\/]/.test(value);
  const scheme = windowsDrive ? undefined : /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (value.includes('://')) throw new ConfigError(source, `"${value}" is neither a URI with a valid scheme nor a plain path; expected ${forms}`);
    return { kind: 'store', dir: path.resolve(value) };
  }
  if (scheme === 'http' || scheme === 'https') {
    if (/^https?:\/\/[^\s/]+/i.test(value) && URL.canParse(value)) return { kind: 'server', uri: value };
    throw new ConfigError(source, `expected an http(s) URL such as http://localhost:5000, got "${value}"`);
  }
  if (scheme === 'file') {
    if (!/^file:\//i.test(value))
      throw new ConfigError(
        source,
        `a file: URI takes an absolute path, such as file:///home/me/mlruns, got "${value}" (give a relative directory as a plain path)`,
      );
    try {
      return { kind: 'store', dir: fileURLToPath(value) };
    } catch (e) {
      throw new ConfigError(
        source,
        `"${value}" is not a local file: URI (${e instanceof Error ? e.message : String(e)}); expected e.g. file:///home/me/mlruns`,
      );
    }
  }
  const hint = /^[\w.-]+:\d+(\/|$)/.test(value) ? ` Did you mean http://${value}?` : '';
  throw new ConfigError(source, `unsupported tracking URI "${value}": expected ${forms}.${hint}`);
}

/** `--tracking-uri`, else MLFLOW_TRACKING_URI (empty counts as unset, as in MLflow), else undefined (./mlruns). */
function trackingTarget(flag: string | undefined): (TrackingTarget & { source: string }) | undefined {
  if (flag !== undefined) return { ...parseTrackingUri(flag, '--tracking-uri'), source: '--tracking-uri' };
  const env = process.env.MLFLOW_TRACKING_URI;
  return env ? { ...parseTrackingUri(env, 'MLFLOW_TRACKING_URI'), source: 'MLFLOW_TRACKING_URI' } : undefined;
}

/**
 * `--set a.b.c=VALUE` flags as one nested object to deep-merge over the preset (Hydra-style overrides). VALUE is
 * JSON when it parses (numbers, booleans, null, arrays, objects), else a plain string.
 */
export function parseOverrides(flags: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const keys = eq > 0 ? flag.slice(0, eq).split('.') : [];
    if (eq <= 0 || keys.some((k) => !/^[A-Za-z0-9_-]+$/.test(k))) {
      throw new ConfigError('--set', `expected FIELD=VALUE with a dotted field path such as trainer.epochs=1, got "${flag}"`);
    }
    const text = flag.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // not JSON: a string such as an optimizer's name
    }
    let node = out;
    for (const k of keys.slice(0, -1)) {
      const next = node[k];
      if (next !== undefined && (typeof next !== 'object' || next === null || Array.isArray(next)))
        throw new ConfigError('--set', `"${flag}" sets inside ${k}, which another --set gave a value`);
      node = (node[k] ??= {}) as Record<string, unknown>;
    }
    node[keys.at(-1)!] = value;
  }
  return out;
}

async function paperCommand(values: FlagValues, positionals: string[], io: CliIO): Promise<number> {
  const name = positionals[0];
  const paper = name === undefined ? undefined : papers[name];
  if (name !== undefined && !paper)
    throw new ConfigError('paper', `unknown paper "${name}"${didYouMean(name, Object.keys(papers))}; papers: ${Object.keys(papers).join(', ')}`);
  if (values.help) {
    io.out(
      paper ? paperHelp(paper) : `${commandHelp(COMMANDS.paper!)}\n\npapers: ${Object.keys(papers).join(', ')} (loom paper <name> --help for its presets)`,
    );
    return 0;
  }
  if (!paper) throw new ConfigError('paper', `name a paper: ${Object.keys(papers).join(', ')}`);
  if (positionals.length > 1) throw new ConfigError('paper', `expects one paper name, got also "${positionals.slice(1).join(' ')}"`);
  const preset = str(values.preset) ?? defaultPreset(paper);
  if (!paper.presets[preset])
    throw new ConfigError(
      '--preset',
      `paper "${paper.name}" has no preset "${preset}"${didYouMean(preset, Object.keys(paper.presets))}; presets: ${Object.keys(paper.presets).join(', ')}`,
    );
  const seed = integerFlag('seed', str(values.seed), 0);
  const registry = registerPaperPlugins(await cliRegistry(), paper);
  if ((await runPaperMode(paper, values, { registry, preset, seed }, io)) === 'ran') return 0;
  const overrides = parseOverrides((values.set as string[] | undefined) ?? []);
  if (values.parallelism !== undefined) overrides.parallelism = str(values.parallelism);
  const maxSteps = integerFlag('max-steps', str(values['max-steps']), 1);
  if (maxSteps !== undefined) setTrainerField(overrides, '--max-steps', { maxSteps });
  const precision = precisionFlag(values.precision);
  if (precision !== undefined) setTrainerField(overrides, '--precision', { precision });
  await loadConfigPlugins(registry, mergeConfig(paper.presets[preset]!, overrides as JsonObject));
  const tracking = trackingTarget(str(values['tracking-uri']));
  let resume = str(values.resume);
  if (resume === 'latest') {
    const experiment = String(paper.presets[preset]!.experiment ?? name);
    resume = findLatestCheckpoint(experiment) ?? undefined;
    if (!resume) throw new ConfigError('--resume', `no checkpoint of experiment "${experiment}" under ./checkpoints to resume`);
  }
  if (tracking?.kind === 'store') io.out(`loom: tracking to the local MLflow store ${tracking.dir} (${tracking.source})`);
  const trackingUri = tracking === undefined ? undefined : tracking.kind === 'server' ? tracking.uri : pathToFileURL(tracking.dir).href;
  const backend = str(values.backend) ?? (process.env.LOOM_BACKEND || undefined);
  if (values.record && tracking?.kind === 'server')
    throw new ConfigError(
      '--record',
      'reads the run from the local MLflow store; it cannot with a tracking server (record later with `loom record --store DIR`)',
    );
  const started = Date.now();
  const store = tracking?.kind === 'store' ? tracking.dir : path.resolve('mlruns');
  /**
   * Records every run of this paper that this command created or resumed (one per variant for some papers) and that
   * ended after it started: the finished ones, and with `stopped` the ones a signal stopped, as unfinished records.
   */
  const recordMine = (stopped: boolean) => {
    const mine = readStore(store).filter(
      (r) => r.tags.paper === paper.name && (r.status === 'FINISHED' || (stopped && r.status === 'KILLED')) && (r.end ?? 0) >= started,
    );
    for (const r of mine) io.out(`loom: recorded ${writeRunRecord(r, REPO, r.status === 'KILLED')}`);
  };
  let result: PaperResult;
  try {
    result = await paper.run({ registry, preset, seed, backend, trackingUri, resume, overrides });
  } catch (e) {
    // Stopped by a signal: --record keeps what the stopped run logged so far, as an unfinished record that the record
    // of a resume that finishes replaces (and records the runs this command finished before it, as usual).
    if (values.record && e instanceof InterruptedError) recordMine(true);
    throw e;
  }
  io.out(`\n${formatComparison(result)}`);
  const json = str(values.json);
  if (json) fs.writeFileSync(json, `${JSON.stringify(summary(result), null, 2)}\n`);
  if (values.record) recordMine(false);
  return 0;
}

/**
 * `loom train <file>`: the experiment a YAML or JSON config file describes (runtime/config-file.ts), with `--set`,
 * `--seed` and `--max-steps` over it, validated as a preset is (a bad field is named, exit code 2), tracked,
 * checkpointed and resumable as a paper run is; prints the last epoch's and the test metrics.
 */
async function trainCommand(values: FlagValues, positionals: string[], io: CliIO): Promise<number> {
  const file = positionals[0];
  if (file === undefined) throw new ConfigError('train', 'name a config file: loom train <config.yaml|json> (loom train --help)');
  if (positionals.length > 1) throw new ConfigError('train', `expects one config file, got also "${positionals.slice(1).join(' ')}"`);
  const overrides = parseOverrides((values.set as string[] | undefined) ?? []) as JsonObject;
  const maxSteps = integerFlag('max-steps', str(values['max-steps']), 1);
  const seed = integerFlag('seed', str(values.seed), 0);
  let raw = mergeConfig(readConfigFile(file), overrides);
  if (maxSteps !== undefined) raw = mergeConfig(raw, { trainer: { maxSteps } });
  const precision = precisionFlag(values.precision);
  if (precision !== undefined) raw = mergeConfig(raw, { trainer: { precision } });
  if (seed !== undefined) raw = { ...raw, seed };
  const config = parseExperimentConfig(raw);
  const registry = await cliRegistry();
  await loadConfigPlugins(registry, raw);
  const tracking = trackingTarget(str(values['tracking-uri']));
  let resume = str(values.resume);
  if (resume === 'latest') {
    resume = findLatestCheckpoint(config.experiment, 'checkpoints', runNameOf(file, config.seed)) ?? undefined;
    if (!resume) throw new ConfigError('--resume', `no checkpoint of experiment "${config.experiment}" (${file}) under ./checkpoints to resume`);
  }
  if (tracking?.kind === 'store') io.out(`loom: tracking to the local MLflow store ${tracking.dir} (${tracking.source})`);
  const result = await runExperiment({
    registry,
    config,
    backend: str(values.backend) ?? (process.env.LOOM_BACKEND || undefined),
    trackingUri: tracking === undefined ? undefined : tracking.kind === 'server' ? tracking.uri : pathToFileURL(tracking.dir).href,
    runName: runNameOf(file, config.seed),
    // The report lists the run under its experiment, as a group named after the file (see cli/report.ts).
    tags: { 'loom.config': path.resolve(file), experiment: config.experiment, preset: path.basename(file) },
    resume,
    log: (line) => io.out(line),
  });
  const metrics: Record<string, number> = { ...finalEpochLogs(result.history, result.restoredEpoch) };
  for (const [k, v] of Object.entries(result.test ?? {})) metrics[`test_${k}`] = v;
  io.out(`\n${config.experiment} (${path.basename(file)}, seed ${config.seed}, backend ${result.backend}): MLflow run ${result.run.runId}`);
  for (const [k, v] of Object.entries(metrics)) io.out(`  ${k.padEnd(20)} ${formatMetric(v, k)}`);
  const json = str(values.json);
  if (json) {
    const out = { config: path.resolve(file), experiment: config.experiment, seed: config.seed, backend: result.backend, metrics, history: result.history };
    fs.writeFileSync(
      json,
      `${JSON.stringify({ ...out, wallTimeSec: result.wallTimeSec, mlflowRunId: result.run.runId, mlflowRunDir: result.run.location }, null, 2)}\n`,
    );
  }
  return 0;
}

/** The tracked run name of `loom train <file>`: the file's name and the seed (so `--resume latest` finds its own runs). */
function runNameOf(file: string, seed: number): string {
  return `${path.basename(file).replace(/\.(ya?ml|json)$/i, '')}-seed${seed}`;
}

/**
 * Runs the paper's mode whose flag was given (runtime/paper.ts `PaperMode`), or returns 'train' when none was. Flags
 * of other papers, two modes at once, a mode's option without its mode and training flags with a mode are user
 * errors naming the flag.
 */
async function runPaperMode(
  paper: Paper,
  values: FlagValues,
  ctx: { registry: PluginRegistry; preset: string; seed?: number },
  io: CliIO,
): Promise<'ran' | 'train'> {
  const own = flagsOf(paper);
  const declared = new Set(Object.values(papers).flatMap(flagsOf));
  for (const name of declared) {
    if (values[name] !== undefined && !own.includes(name)) {
      const which = Object.values(papers)
        .filter((p) => flagsOf(p).includes(name))
        .map((p) => p.name);
      throw new ConfigError(
        `--${name}`,
        `is a flag of paper${which.length > 1 ? 's' : ''} ${which.join(', ')}, not of "${paper.name}"${own.length ? `; its own: ${own.map((f) => `--${f}`).join(', ')}` : ''}`,
      );
    }
  }
  const given = (paper.modes ?? []).filter((m) => values[m.flag] !== undefined);
  if (given.length > 1) throw new ConfigError(`--${given[1]!.flag}`, `cannot be combined with --${given[0]!.flag}`);
  for (const m of paper.modes ?? []) {
    if (given[0] === m) continue;
    for (const o of Object.keys(m.options ?? {}))
      if (values[o] !== undefined && !given[0]?.options?.[o]) throw new ConfigError(`--${o}`, `applies only with --${m.flag}`);
  }
  const mode = given[0];
  if (!mode) return 'train';
  const trainingOnly = ['resume', 'set', 'parallelism', 'max-steps', 'record', ...(mode.json ? [] : ['json'])];
  for (const k of trainingOnly) if (values[k] !== undefined) throw new ConfigError(`--${k}`, `does not apply to --${mode.flag}, which trains nothing`);
  const options: Record<string, string | number> = {};
  for (const [name, o] of Object.entries(mode.options ?? {})) {
    const text = str(values[name]);
    if (text === undefined) continue;
    options[name] =
      o.type === 'integer' ? integerFlag(name, text, o.min === 0 ? 0 : 1)! : o.type === 'number' ? numberFlag(name, text, o.min ?? -Infinity) : text;
  }
  // A mode selects its backend from LOOM_BACKEND (as a run does when --backend is absent): --backend sets it for the
  // command's duration (run() restores it), so `--predict X --backend webgpu` decodes on webgpu.
  const backend = str(values.backend);
  if (backend !== undefined) process.env.LOOM_BACKEND = backend;
  const tracking = trackingTarget(str(values['tracking-uri']));
  const trackingUri = tracking === undefined ? undefined : tracking.kind === 'server' ? tracking.uri : pathToFileURL(tracking.dir).href;
  await mode.run({ ...ctx, input: str(values[mode.flag])!, options, json: str(values.json), trackingUri, out: (line) => io.out(line) });
  return 'ran';
}

/**
 * Where `--record` and `loom record` write papers/<name>/results/, and whose records `loom report` reads:
 * LOOM_RECORDS_ROOT when set (tests point it at a scratch folder); else loom's checkout when the CLI runs from one
 * (`cliDir/..` holds the papers' sources), and the current directory when it runs from an installed package (the
 * build in node_modules/loom/dist is no place for a user's records).
 */
export function recordsRoot(cliDir: string, cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if (env.LOOM_RECORDS_ROOT) return path.resolve(env.LOOM_RECORDS_ROOT);
  const root = path.resolve(cliDir, '..');
  return fs.existsSync(path.join(root, 'papers', 'index.ts')) ? root : cwd;
}

const REPO = recordsRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Writes the record of a finished (or, with `unfinished`, any) paper run under `repo`; returns the file written. */
function writeRunRecord(run: StoredRun, repo: string, unfinished = false): string {
  let record: ReturnType<typeof recordOf>;
  try {
    record = recordOf(run, { unfinished });
  } catch (e) {
    throw new ConfigError('--run', e instanceof Error ? e.message : String(e));
  }
  const file = recordPath(repo, record);
  writeRecord(file, record);
  return path.relative(process.cwd(), file) || file;
}

/**
 * Runs one command line (`argv` without node and the script) and returns its exit code; errors become messages on
 * `io.err` (see the file comment). `--verbose` sets LOOM_VERBOSE for the command's duration (the backend line
 * reads it; so do MPI workers started meanwhile).
 */
export async function run(argv: string[], io: CliIO = consoleIO): Promise<number> {
  const verboseBefore = process.env.LOOM_VERBOSE;
  const backendBefore = process.env.LOOM_BACKEND;
  try {
    const taken = takePluginFlags(argv);
    pluginModules = taken.plugins;
    const [name, ...rest] = taken.rest;
    if (name === undefined || name === '--help' || name === '-h') {
      io.out(mainHelp());
      return 0;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw new ConfigError('command', `unknown command "${name}"${didYouMean(name, Object.keys(COMMANDS))}\n${mainHelp()}`);
    const { values, positionals } = parseFlags(cmd, rest);
    if (values.verbose) process.env.LOOM_VERBOSE = '1';
    if (cmd.name === 'paper') return await paperCommand(values, positionals, io);
    if (cmd.name === 'train' && !values.help) return await trainCommand(values, positionals, io);
    if (cmd.name === 'quantize' && !values.help) {
      if (positionals.length > 1) throw new ConfigError('quantize', `expects one model directory, got also "${positionals.slice(1).join(' ')}"`);
      const flags = {
        out: str(values.out),
        mode: str(values.mode),
        data: str(values.data),
        split: str(values.split),
        calibrationSamples: integerFlag('calibration-samples', str(values['calibration-samples']), 1),
        minDepth: integerFlag('min-depth', str(values['min-depth']), 0),
        seed: integerFlag('seed', str(values.seed), 0),
        backend: str(values.backend),
      };
      return await quantizeCommand(await cliRegistry(), positionals[0], flags, io);
    }
    if (values.help) {
      io.out(commandHelp(cmd));
      return 0;
    }
    if (cmd.name === 'help') {
      const of = positionals[0];
      if (of === undefined) io.out(mainHelp());
      else if (COMMANDS[of])
        io.out(of === 'paper' && positionals[1] && papers[positionals[1]] ? paperHelp(papers[positionals[1]]!) : commandHelp(COMMANDS[of]!));
      else throw new ConfigError('help', `unknown command "${of}"${didYouMean(of, Object.keys(COMMANDS))}`);
      return 0;
    }
    if (positionals.length > 0) throw new ConfigError(cmd.name, `takes no arguments, got "${positionals.join(' ')}" (loom ${cmd.name} --help)`);
    switch (cmd.name) {
      case 'papers':
        for (const p of Object.values(papers)) {
          io.out(`${p.name}: ${p.title}`);
          for (const [preset, note] of Object.entries(p.presetNotes)) io.out(`  --preset ${preset}${preset === defaultPreset(p) ? ' (default)' : ''}: ${note}`);
        }
        return 0;
      case 'plugins': {
        const registry = await cliRegistry();
        const markdown = str(values.markdown);
        if (markdown) {
          fs.mkdirSync(path.dirname(markdown), { recursive: true });
          fs.writeFileSync(markdown, pluginDocs(registry));
          io.out(`loom: wrote ${markdown}`);
          return 0;
        }
        const kind = str(values.kind) as PluginKind | undefined;
        if (kind && !PLUGIN_KINDS.includes(kind))
          throw new ConfigError('--kind', `unknown kind "${kind}"${didYouMean(kind, [...PLUGIN_KINDS])}; kinds: ${PLUGIN_KINDS.join(', ')}`);
        const list = registry.list(kind);
        if (values.json) io.out(JSON.stringify(list, null, 2));
        else io.out(list.map((p) => `${p.kind.padEnd(12)} ${p.name.padEnd(34)} ${p.description}`).join('\n'));
        return 0;
      }
      case 'report': {
        const tracking = str(values.store) === undefined ? trackingTarget(undefined) : undefined;
        const store = path.resolve(str(values.store) ?? (tracking?.kind === 'store' ? tracking.dir : 'mlruns'));
        // A fresh clone has no ./mlruns but has the committed records: only a store that was named (--store, or
        // MLFLOW_TRACKING_URI) must exist.
        if ((str(values.store) !== undefined || tracking?.kind === 'store') && !fs.existsSync(store))
          throw new ConfigError('--store', `no MLflow store at ${store}`);
        const records = str(values.records) === 'none' ? undefined : path.resolve(str(values.records) ?? REPO);
        const r = await buildReport({ store, out: path.resolve(str(values.out) ?? 'reports'), papers, records });
        io.out(`loom: report of ${r.runs} paper run(s): ${r.markdown} and ${r.html}`);
        return 0;
      }
      case 'record': {
        const tracking = str(values.store) === undefined ? trackingTarget(undefined) : undefined;
        const store = path.resolve(str(values.store) ?? (tracking?.kind === 'store' ? tracking.dir : 'mlruns'));
        if (!fs.existsSync(store)) throw new ConfigError('--store', `no MLflow store at ${store}`);
        const runs = readStore(store);
        const ids = (values.run as string[] | undefined) ?? [];
        const chosen = ids.length
          ? ids.map(
              (id) =>
                runs.find((r) => r.runId === id) ??
                (() => {
                  throw new ConfigError('--run', `no run ${id} in ${store}`);
                })(),
            )
          : runs.filter((r) => r.tags.paper && (values.unfinished || r.status === 'FINISHED')).slice(0, 1);
        if (chosen.length === 0) throw new ConfigError('--store', `no ${values.unfinished ? '' : 'finished '}paper run in ${store}`);
        for (const r of chosen) io.out(`loom: recorded ${writeRunRecord(r, path.resolve(str(values.out) ?? REPO), Boolean(values.unfinished))}`);
        return 0;
      }
      case 'sync': {
        // The server to upload to: a local store (file: or a path) in MLFLOW_TRACKING_URI names none, so it is
        // ignored here; given as --tracking-uri it is an error, as is anything MLflow would not accept.
        const flag = str(values['tracking-uri']);
        const server = (uri: string) => /^https?:/i.test(uri) && parseTrackingUri(uri, '--tracking-uri').kind === 'server';
        if (flag !== undefined && !server(flag))
          throw new ConfigError(
            '--tracking-uri',
            `loom sync uploads to a tracking server: expected an http(s) URL such as http://localhost:5000, got "${flag}"`,
          );
        const tracking = trackingTarget(flag);
        const results = await syncStore({ dir: str(values.dir) ?? 'mlruns', trackingUri: tracking?.kind === 'server' ? tracking.uri : undefined, log: io.out });
        const count = (o: string) => results.filter((r) => r.outcome === o).length;
        io.out(
          `loom sync: ${count('synced')} uploaded, ${count('pending')} still pending, ${count('skipped')} skipped, ${count('up-to-date')} already up to date`,
        );
        return count('pending') > 0 ? 1 : 0;
      }
    }
    throw new Error(`command ${cmd.name} has no implementation`);
  } catch (err) {
    if (err instanceof LoomError) {
      io.err(`loom: ${err.message}`);
      return err instanceof InterruptedError ? err.exitCode : 2; // 130 / 143: stopped by SIGINT / SIGTERM
    }
    io.err(`loom: internal error (a bug; please report it with this trace):\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  } finally {
    if (verboseBefore === undefined) delete process.env.LOOM_VERBOSE;
    else process.env.LOOM_VERBOSE = verboseBefore;
    if (backendBefore === undefined) delete process.env.LOOM_BACKEND;
    else process.env.LOOM_BACKEND = backendBefore;
  }
}

/** The machine-readable summary written by `--json`. */
export function summary(r: PaperResult) {
  return {
    paper: r.paper,
    preset: r.preset,
    backend: r.backend,
    seed: r.seed,
    metrics: r.metrics,
    wallTimeSec: r.wallTimeSec,
    mlflowRunId: r.mlflow.runId,
    mlflowExperimentId: r.mlflow.experimentId,
    mlflowRunDir: r.mlflow.location,
    commit: r.commit,
    scale: r.scale,
    comparison: r.comparison,
  };
}
