// Sample web server shaped like Cohuron PMO's web app (the real one is a Vite
// build served statically). Serves dist/index.html at / and 404 elsewhere.
//
// Environment: PORT (default 5173; listens on 127.0.0.1 only).
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const port = Number(process.env.PORT || 5173);
const host = '127.0.0.1';
const indexFile = path.join(__dirname, 'dist', 'index.html');

if (!fs.existsSync(indexFile)) {
  console.warn(`web: warning: ${indexFile} is missing; was the build step run? / will answer 503`);
}

function send(res, code, type, body) {
  res.writeHead(code, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const pathname = (req.url || '/').split('?')[0];
  if (pathname !== '/' && pathname !== '/index.html') {
    return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  fs.readFile(indexFile, (err, data) => {
    if (err) return send(res, 503, 'text/plain; charset=utf-8', 'web: dist/index.html is missing\n');
    send(res, 200, 'text/html; charset=utf-8', data);
  });
});

server.on('error', (err) => {
  console.error(`web: cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});

server.listen(port, host, () => {
  console.log(`web listening on http://${host}:${port} (pid ${process.pid})`);
  // PM2 wait_ready: tell PM2 this instance is up.
  if (typeof process.send === 'function') process.send('ready');
});

// Graceful stop on SIGINT (PM2) and SIGTERM: finish in-flight requests, exit 0.
let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`web: ${signal} received, shutting down`);
  const deadline = setTimeout(() => server.closeAllConnections(), 8000);
  deadline.unref();
  server.close(() => { console.log('web: stopped'); process.exit(0); });
  server.closeIdleConnections();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
