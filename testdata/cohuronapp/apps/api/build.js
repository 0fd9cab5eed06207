// Build step for the sample API: writes dist/version.json, which the server
// reads at start. Stands in for the real app's TypeScript build (tsc → dist).
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = require('./package.json');
const dist = path.join(__dirname, 'dist');
fs.mkdirSync(dist, { recursive: true });
const out = { version: pkg.version, builtAt: new Date().toISOString() };
fs.writeFileSync(path.join(dist, 'version.json'), JSON.stringify(out, null, 2) + '\n');
console.log(`api: wrote dist/version.json (version ${out.version})`);
