#!/usr/bin/env node
// The `loom` executable: runs cli/loom.ts through tsx with this project's tsconfig (decorators need it),
// whatever the current directory is.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
await import('./loom.ts');
