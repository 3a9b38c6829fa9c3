/**
 * Plugin packages: a third-party plugin lives in its own npm package and is found without editing loom. A plugin
 * module exports its definitions (made with `definePlugin`) as its default export (one definition or an array) or
 * as a named `plugins` array. Modules come from three places:
 * - installed packages (in `<project>/node_modules`) whose package.json has a `loom` field,
 *   `"loom": { "plugins": "./dist/index.js" }`, or whose name is `loom-plugin-*` (or `@scope/loom-plugin-*`);
 * - `--plugin <module>` on the command line (a path, or a package name);
 * - `plugins: [...]` in an experiment config (the same forms).
 * A module that cannot be found, fails to load or exports no plugin definitions is a ConfigError naming it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, PLUGIN_KINDS, type PluginDefinition, type PluginRegistry } from '../core';

/** The package.json fields read here. */
interface PackageJson {
  name?: string;
  main?: string;
  exports?: unknown;
  loom?: { plugins?: string };
}

function readPackageJson(dir: string): PackageJson | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
  } catch {
    return undefined;
  }
}

/** A plugin package by its name: `loom-plugin-*` or `@scope/loom-plugin-*`. */
export const PLUGIN_PACKAGE_NAME = /^(@[^/]+\/)?loom-plugin-[a-z0-9][a-z0-9._-]*$/;

/** The module a plugin package's directory loads: its `loom.plugins` entry, else its `exports` "." entry, else `main`. */
function packageEntry(dir: string, pkg: PackageJson): string {
  const dot = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return dot(o['.'] ?? o.import ?? o.default ?? o.node);
    }
    return undefined;
  };
  return path.resolve(dir, pkg.loom?.plugins ?? dot(pkg.exports) ?? pkg.main ?? 'index.js');
}

/** The directory of package `name` seen from `from`: `node_modules/<name>` in `from` or a directory above it. */
function packageDir(name: string, from: string): string | undefined {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** The file a module reference names: a path (relative to `from`) or an installed package's entry. */
export function resolvePluginModule(ref: string, from = process.cwd()): string {
  if (ref.startsWith('.') || path.isAbsolute(ref)) {
    const file = path.resolve(from, ref);
    if (!fs.existsSync(file)) throw new ConfigError('plugin', `plugin module "${ref}" not found (no file ${file})`);
    const pkg = fs.statSync(file).isDirectory() ? readPackageJson(file) : undefined;
    return pkg ? packageEntry(file, pkg) : file;
  }
  const dir = packageDir(ref, from);
  if (!dir) throw new ConfigError('plugin', `plugin package "${ref}" is not installed (no node_modules/${ref} in ${from} or above; npm install ${ref})`);
  return packageEntry(dir, readPackageJson(dir)!);
}

function isDefinition(x: unknown): x is PluginDefinition {
  const d = x as PluginDefinition;
  return !!d && typeof d === 'object' && typeof d.name === 'string' && PLUGIN_KINDS.includes(d.kind) && typeof d.create === 'function';
}

/** Loads one plugin module (see the file comment for what it exports) and returns its definitions. */
export async function loadPluginModule(ref: string, from = process.cwd()): Promise<PluginDefinition[]> {
  const file = resolvePluginModule(ref, from);
  let mod: { default?: unknown; plugins?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as typeof mod;
  } catch (e) {
    throw new ConfigError('plugin', `plugin module "${ref}" (${file}) failed to load: ${(e as Error).message.split('\n')[0]}`);
  }
  const exported = mod.plugins ?? mod.default;
  const defs = Array.isArray(exported) ? exported : [exported];
  if (defs.length === 0 || !defs.every(isDefinition))
    throw new ConfigError(
      'plugin',
      `plugin module "${ref}" (${file}) exports no plugin definitions: export default definePlugin({...}) or an array of them, or a named "plugins" array`,
    );
  return defs;
}

/**
 * The installed plugin packages of the project at `from`: the packages in `from/node_modules` (scoped ones too)
 * with a `loom` field in their package.json or a `loom-plugin-*` name, sorted by name.
 */
export function discoverPluginPackages(from = process.cwd()): string[] {
  const root = path.join(path.resolve(from), 'node_modules');
  if (!fs.existsSync(root)) return [];
  const names: string[] = [];
  for (const entry of fs.readdirSync(root)) {
    if (entry.startsWith('.')) continue;
    const scoped = entry.startsWith('@') ? fs.readdirSync(path.join(root, entry)).map((n) => `${entry}/${n}`) : [entry];
    for (const name of scoped) {
      if (PLUGIN_PACKAGE_NAME.test(name) || readPackageJson(path.join(root, name))?.loom?.plugins !== undefined) names.push(name);
    }
  }
  return names.sort();
}

/**
 * Registers the plugins of `modules` (paths or package names) and, unless `discover` is false, of every installed
 * plugin package of the project at `from`; a module named twice is loaded once. Returns the modules loaded.
 */
export async function loadPlugins(
  registry: PluginRegistry,
  modules: readonly string[] = [],
  { from = process.cwd(), discover = true }: { from?: string; discover?: boolean } = {},
): Promise<string[]> {
  const refs = [...new Set([...(discover ? discoverPluginPackages(from) : []), ...modules])];
  for (const ref of refs) {
    // The same definition met twice (a package both discovered and named) registers once; another of the same name is
    // the registry's duplicate error.
    for (const def of await loadPluginModule(ref, from))
      if (!(registry.has(def.kind, def.name) && registry.get(def.kind, def.name) === def)) registry.register(def);
  }
  return refs;
}
