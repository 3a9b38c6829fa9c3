// The package's plugin module, named by the `loom` field of package.json: loom finds the package in a project's
// node_modules and registers the definitions exported here (an array as the default export).
import lion from './lion.js';
import weightNormDense from './weight-norm-dense.js';

export default [weightNormDense, lion];
