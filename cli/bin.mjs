#!/usr/bin/env node
// The `loom` executable: runs cli/loom.ts through tsx with this project's tsconfig (decorators need it),
// whatever the current directory is, and exits with its code once stdout and stderr have drained.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
// A reader that stopped reading (`loom plugins --json | head -1`) is not loom's error: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}
const { run } = await import('./loom.ts');
process.exitCode = await run(process.argv.slice(2));
// Exit only when what was written has reached the pipe or file: process.exit() right after the last write dropped
// whatever a slow reader had not yet taken (64 KiB of `loom plugins --json`'s 85 KiB). A write's callback runs
// after the writes queued before it are done. Then exit even if a library left a handle open (a timer, a socket).
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))));
process.exit();
