#!/usr/bin/env node
// The `loom` executable. In loom's repository it runs cli/loom.ts through tsx with this project's tsconfig
// (decorators need it), whatever the current directory is; in an installed package, which ships no sources, it runs
// the build (dist/cli/loom.js, `npm run build`), with no TypeScript at run time. It exits with the command's code
// once stdout and stderr have drained.
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('./loom.ts', import.meta.url));
let cli;
if (fs.existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
  cli = await import('./loom.ts');
} else {
  cli = await import('../dist/cli/loom.js');
}
// A reader that stopped reading (`loom plugins --json | head -1`) is not loom's error: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}
process.exitCode = await cli.run(process.argv.slice(2));
// Exit only when what was written has reached the pipe or file: process.exit() right after the last write dropped
// whatever a slow reader had not yet taken (64 KiB of `loom plugins --json`'s 85 KiB). A write's callback runs
// after the writes queued before it are done. Then exit even if a library left a handle open (a timer, a socket).
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))));
process.exit();
