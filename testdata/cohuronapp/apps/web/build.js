// Build step for the sample web app: writes dist/index.html. Stands in for
// the real app's Vite build.
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = require('./package.json');
const dist = path.join(__dirname, 'dist');
fs.mkdirSync(dist, { recursive: true });
const builtAt = new Date().toISOString();
const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Cohuron PMO (sample)</title>
    <meta name="app-version" content="${pkg.version}">
    <meta name="built-at" content="${builtAt}">
  </head>
  <body>
    <div id="root">Cohuron PMO sample web ${pkg.version}</div>
  </body>
</html>
`;
fs.writeFileSync(path.join(dist, 'index.html'), html);
console.log(`web: wrote dist/index.html (version ${pkg.version})`);
