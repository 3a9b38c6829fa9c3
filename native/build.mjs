// Builds the native kernels during `npm install` / `npm ci` (the package's "install" script). A failed build
// never fails the install: loom then runs on tfjs's JavaScript kernels and says so once per run.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

const args = ['rebuild', '--directory', 'native'];
// Debian's Node ships its headers in /usr/include/node; use them rather than downloading (no internet here).
if (!process.env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
if (process.env.LOOM_SKIP_NATIVE) {
  console.log('loom: LOOM_SKIP_NATIVE is set; not building native kernels');
  process.exit(0);
}
const r = spawnSync('node-gyp', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', shell: process.platform === 'win32' });
if (r.status === 0) {
  console.log('loom: native kernels built (native/build/Release/loom_native.node)');
} else {
  const why = r.error ? r.error.message : (r.stderr || '').split('\n').filter((l) => /error/i.test(l)).slice(0, 3).join(' | ');
  console.log(`loom: native kernels not built (${why || 'node-gyp failed'}); loom will use tfjs's JavaScript kernels`);
}
