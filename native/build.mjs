// Builds the native addons during `npm install` / `npm ci` (the package's "install" script): the kernels
// (native/, always tried) and the MPI binding (native/mpi/, only where `mpicc` exists). A failed build never fails
// the install: loom then runs on tfjs's JavaScript kernels, or without MPI, and says so when it matters.
// `node native/build.mjs mpi` builds only the MPI binding (`npm run build:mpi`).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

if (process.env.LOOM_SKIP_NATIVE) {
  console.log('loom: LOOM_SKIP_NATIVE is set; not building native addons');
  process.exit(0);
}

/** Runs node-gyp in `dir`; returns null on success, else a one-line reason. */
function gyp(dir, env = process.env) {
  const args = ['rebuild', '--directory', dir];
  // Debian's Node ships its headers in /usr/include/node; use them rather than downloading (no internet here).
  if (!env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
  const r = spawnSync('node-gyp', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env, shell: process.platform === 'win32' });
  if (r.status === 0) return null;
  return (
    (r.error
      ? r.error.message
      : (r.stderr || '')
          .split('\n')
          .filter((l) => /error/i.test(l))
          .slice(0, 3)
          .join(' | ')) || 'node-gyp failed'
  );
}

const only = process.argv[2];
if (only !== 'mpi') {
  const why = gyp('native');
  console.log(
    why === null
      ? 'loom: native kernels built (native/build/Release/loom_native.node)'
      : `loom: native kernels not built (${why}); loom will use tfjs's JavaScript kernels`,
  );
}

// The MPI binding compiles and links with the MPI compiler wrapper, which adds MPI's include and library flags.
if (spawnSync('mpicc', ['--version'], { stdio: 'ignore' }).status === 0) {
  const why = gyp('native/mpi', { ...process.env, CC: 'mpicc', CXX: 'mpicxx', LINK: 'mpicc' });
  console.log(
    why === null
      ? 'loom: MPI binding built (native/mpi/build/Release/loom_mpi.node)'
      : `loom: MPI binding not built (${why}); runs under mpirun will stop and say so`,
  );
} else {
  console.log('loom: mpicc not found; MPI binding not built (apt-get install libopenmpi-dev, then npm run build:mpi, for data-parallel training)');
}
