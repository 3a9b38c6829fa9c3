/**
 * The plugin registry: every extension (layer, optimizer, tracker, ...) registers a kind, a stable name, a zod
 * options schema and a factory. Configs name plugins (`{ "type": "adam", "lr": 0.001 }`) and the registry builds
 * them, rejecting unknown names (listing the known ones) and bad options (naming the field, the value and what was
 * expected). There is no global registry: create one per program or test with {@link createRegistry}.
 */
import { z } from 'zod';
import { ConfigError } from './errors';
import type {
  Activation,
  Augmentation,
  Backend,
  Callback,
  Configurable,
  DataSource,
  Initializer,
  JsonObject,
  Layer,
  LearningRateSchedule,
  Loss,
  Metric,
  Model,
  Optimizer,
  Strategy,
  PluginSpec,
  Regularizer,
  Tracker,
} from './interfaces';

/** Instance type for each plugin kind. */
export interface PluginKinds {
  layer: Layer;
  /** A model built from registered layers with its own forward pass (GPT, BERT): see core/module.ts. */
  model: Model;
  activation: Activation;
  loss: Loss;
  optimizer: Optimizer;
  regularizer: Regularizer;
  initializer: Initializer;
  schedule: LearningRateSchedule;
  metric: Metric;
  callback: Callback;
  tracker: Tracker;
  parallelism: Strategy;
  backend: Backend;
  dataset: DataSource;
  augmentation: Augmentation;
}
export type PluginKind = keyof PluginKinds;
export const PLUGIN_KINDS: readonly PluginKind[] = [
  'layer',
  'model',
  'activation',
  'loss',
  'optimizer',
  'regularizer',
  'initializer',
  'schedule',
  'metric',
  'callback',
  'tracker',
  'parallelism',
  'backend',
  'dataset',
  'augmentation',
];

/**
 * Given to factories: the config path of the plugin being built (for error messages), `create` for the plugins it is
 * made of, and the registry for the rare plugin that builds a whole other plugin by its definition (a validation
 * callback's data source).
 */
export interface PluginContext {
  readonly registry: PluginRegistry;
  readonly path: string;
  /**
   * Builds a part of this plugin from its spec: an activation, initializer or regularizer of a layer, a layer of a
   * model. `field` is the option it comes from: a config error in it names `<path>.<field>` (without a field, the
   * kind). A plugin needs no more of the registry than this.
   */
  create<K extends PluginKind>(kind: K, spec: PluginSpec, field?: string): PluginKinds[K];
}

/** A plugin as built by its factory; the registry attaches `spec` afterwards. */
type Built<K extends PluginKind> = Omit<PluginKinds[K], 'spec'>;

/**
 * A plugin: its kind, name, options schema and factory. `R` is what the factory builds (a `CmudictSource`, a `GPT`),
 * which {@link PluginRegistry.build} returns typed; it is inferred by {@link definePlugin}.
 */
export interface PluginDefinition<K extends PluginKind = PluginKind, S extends z.ZodType = z.ZodType, R extends Built<K> = Built<K>> {
  kind: K;
  /** Stable registered name (lower-case, dashes). Never derived from a class name, which minifiers change. */
  name: string;
  aliases?: string[];
  /** One line: what it is, and its source (paper and equation) where there is one. */
  description: string;
  schema: S;
  create(options: z.output<S>, ctx: PluginContext): R;
  /**
   * Sample configurations for the conformance tests (as PyTorch's OpInfo sample inputs): options to build with and,
   * for layers, activations and losses, the input (or prediction) shape with the batch dimension.
   * Layers, schedules and callbacks must declare some (the conformance suite fails a definition without); a metric
   * without is tested with its default options, a loss with them on predictions of shape [2, 5] and class targets;
   * activations are tested with default options.
   */
  examples?: PluginExample[];
  /**
   * The properties this plugin's own tests check beyond the conformance suite (e.g. "the gradient of λ‖w‖² is 2λw"),
   * listed in the generated docs/plugins.md so a reader sees what is verified.
   */
  properties?: string[];
}

export interface PluginExample {
  options?: JsonObject;
  inputShape?: number[];
  /** For losses: integer class labels (`classes`) or targets of the prediction's shape (`same`). */
  target?: 'classes' | 'same';
  /** For layers taking integer ids (embeddings): inputs are integers in [0, inputInts), not differentiated. */
  inputInts?: number;
  /**
   * For callbacks that need a kind of model (head pruning needs attention layers): the model config the conformance
   * suite plays the callback on, instead of one dense unit on two inputs.
   */
  model?: JsonObject;
}

/** Typed helper for plugin files: `export default definePlugin({ kind: 'loss', name: 'mse', ... })`. */
export function definePlugin<K extends PluginKind, S extends z.ZodType, R extends Built<K>>(def: PluginDefinition<K, S, R>): PluginDefinition<K, S, R> {
  return def;
}

/** zod schema for an option that names another plugin (an activation, an initializer, ...). */
export const pluginSpecSchema = z.union([z.string(), z.looseObject({ type: z.string() })]) as unknown as z.ZodType<PluginSpec>;

export interface PluginInfo {
  kind: PluginKind;
  name: string;
  aliases: string[];
  description: string;
  properties: string[];
  options: unknown;
}

export class PluginRegistry {
  private readonly defs = new Map<string, PluginDefinition>();
  private readonly aliases = new Map<string, string>();

  // biome-ignore lint/suspicious/noExplicitAny: definitions of every kind and schema (PluginDefinition is invariant in both)
  register(...defs: PluginDefinition<any, any>[]): this {
    for (const def of defs) {
      const key = `${def.kind}:${def.name}`;
      if (this.defs.has(key) || this.aliases.has(key)) throw new Error(`registry: ${def.kind} "${def.name}" is already registered`);
      if (!/^[a-z0-9][a-z0-9.-]*$/.test(def.name)) throw new Error(`registry: name "${def.name}" must be lower-case letters, digits, dots and dashes`);
      this.defs.set(key, def);
      for (const a of def.aliases ?? []) this.aliases.set(`${def.kind}:${a}`, def.name);
    }
    return this;
  }

  has(kind: PluginKind, name: string): boolean {
    return this.resolveName(kind, name) !== undefined;
  }

  get(kind: PluginKind, name: string, path: string = kind): PluginDefinition {
    const canonical = this.resolveName(kind, name);
    if (canonical === undefined) {
      const known = this.names(kind);
      throw new ConfigError(path, `unknown ${kind} "${name}"; registered ${kind}s: ${known.length ? known.join(', ') : '(none)'}`);
    }
    return this.defs.get(`${kind}:${canonical}`)!;
  }

  names(kind: PluginKind): string[] {
    return [...this.defs.values()]
      .filter((d) => d.kind === kind)
      .map((d) => d.name)
      .sort();
  }

  list(kind?: PluginKind): PluginInfo[] {
    return [...this.defs.values()]
      .filter((d) => !kind || d.kind === kind)
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name))
      .map((d) => ({
        kind: d.kind,
        name: d.name,
        aliases: d.aliases ?? [],
        description: d.description,
        properties: d.properties ?? [],
        options: z.toJSONSchema(d.schema, { unrepresentable: 'any', io: 'input' }),
      }));
  }

  /** Validates `spec` against the plugin's schema and returns the normalised spec (defaults applied). */
  normalize(kind: PluginKind, spec: PluginSpec, path: string = kind): { type: string } & JsonObject {
    const { type, options } = splitSpec(spec, path);
    const def = this.get(kind, type, `${path}.type`);
    const schema = def.schema instanceof z.ZodObject ? def.schema.strict() : def.schema;
    const parsed = schema.safeParse(options);
    if (!parsed.success) throw new ConfigError(path, formatIssues(def, parsed.error, options));
    return { type: def.name, ...(parsed.data as JsonObject) };
  }

  /** Builds a plugin from its spec. The instance's `spec` holds the normalised spec for saving and logging. */
  create<K extends PluginKind>(kind: K, spec: PluginSpec, path: string = kind): PluginKinds[K] {
    const normal = this.normalize(kind, spec, path);
    const def = this.get(kind, normal.type, path);
    const { type: _t, ...options } = normal;
    const create = <P extends PluginKind>(k: P, s: PluginSpec, field?: string) => this.create(k, s, field === undefined ? k : `${path}.${field}`);
    const instance = def.create(options, { registry: this, path, create }) as object;
    Object.defineProperty(instance, 'spec', { value: normal, enumerable: false, configurable: true });
    return instance as PluginKinds[K];
  }

  /**
   * Builds the plugin `def` (which must be the one registered under its name) from `spec`, as {@link create} does,
   * typed as what its factory returns: a paper that needs its data source's own methods (a G2P source's
   * `words`) asks for that plugin by definition instead of casting a `DataSource`. A spec naming another plugin is
   * a ConfigError at `path`.
   */
  build<K extends PluginKind, S extends z.ZodType, R extends Built<K>>(def: PluginDefinition<K, S, R>, spec: PluginSpec, path: string = def.kind) {
    const registered = this.get(def.kind, def.name, path);
    if (registered !== (def as PluginDefinition<PluginKind>)) throw new Error(`registry: ${def.kind} "${def.name}" is registered with another definition`);
    const type = this.normalize(def.kind, spec, path).type;
    if (type !== def.name) throw new ConfigError(`${path}.type`, `expected ${def.kind} "${def.name}", got "${type}"`);
    // The registered definition is `def`, so create() built what def.create returns.
    return this.create(def.kind, spec, path) as unknown as R & Configurable;
  }

  private resolveName(kind: PluginKind, name: string): string | undefined {
    if (this.defs.has(`${kind}:${name}`)) return name;
    return this.aliases.get(`${kind}:${name}`);
  }
}

/** A fresh, empty registry. Plugins are added by the caller (see `plugins/index.ts` for the built-in set). */
export function createRegistry(): PluginRegistry {
  return new PluginRegistry();
}

function splitSpec(spec: PluginSpec, path: string): { type: string; options: JsonObject } {
  if (typeof spec === 'string') return { type: spec, options: {} };
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec) || typeof spec.type !== 'string') {
    throw new ConfigError(path, `expected a plugin name or an object { "type": name, ...options }, got ${JSON.stringify(spec)}`);
  }
  const { type, ...options } = spec;
  return { type, options };
}

function formatIssues(def: PluginDefinition, error: z.ZodError, input: JsonObject): string {
  return error.issues
    .map((issue) => {
      const field = issue.path.join('.') || '(options)';
      const value = issue.path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined), input);
      const got = issue.code === 'unrecognized_keys' ? '' : `, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`;
      return `${def.kind} "${def.name}" option "${field}": ${issue.message}${got}`;
    })
    .join('; ');
}
