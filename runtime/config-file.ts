/**
 * Experiments as files: an experiment config in YAML or JSON (the schema of the papers' presets, core/config.ts),
 * read for `loom train <file>` and for programs. A file may say `extends: <other file>` (a path relative to itself):
 * it is then deep-merged onto that file's config (`mergeConfig`), as a preset extends another preset, so a variant
 * states only what it changes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { mergeConfig } from '../core/config';
import { ConfigError } from '../core/errors';
import type { JsonObject } from '../core/interfaces';

/** The config of `file` (.yaml, .yml or .json) with its `extends` chain resolved; not yet validated. */
export function readConfigFile(file: string, seen: string[] = []): JsonObject {
  const abs = path.resolve(file);
  const field = seen.length ? `${path.relative(process.cwd(), seen.at(-1)!) || seen.at(-1)}: extends` : 'config';
  if (seen.includes(abs)) throw new ConfigError(field, `"extends" forms a cycle: ${[...seen, abs].map((f) => path.basename(f)).join(' -> ')}`);
  const ext = path.extname(abs).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext)) throw new ConfigError(field, `expected a .yaml, .yml or .json file, got "${file}"`);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch {
    throw new ConfigError(field, `no config file at ${abs}`);
  }
  let raw: unknown;
  try {
    raw = ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(file, `is not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(file, 'expected an experiment config (a mapping of fields), got a list or a value');
  const { extends: parent, ...own } = raw as JsonObject;
  if (parent === undefined) return own;
  if (typeof parent !== 'string') throw new ConfigError(`${file}: extends`, `expected a path to another config file, got ${JSON.stringify(parent)}`);
  return mergeConfig(readConfigFile(path.resolve(path.dirname(abs), parent), [...seen, abs]), own);
}
