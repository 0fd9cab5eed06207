// Sample API shaped like Cohuron's: answers GET /api/health with its
// version and greeting (from its env file), and / with a short text.
const http = require('http');
const port = Number(process.env.PORT || 4000);
const version = process.env.APP_VERSION || require('./package.json').version;
const server = http.createServer((req, res) => {
  if (req.url === '/api/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', version, greeting: process.env.APP_GREETING || '' }));
    return;
  }
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`cohuron sample ${version}: ${process.env.APP_GREETING || ''}\n`);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
}).listen(port, process.env.HOST || '127.0.0.1');

// Graceful stop: PM2 sends SIGINT on reload; finish in-flight requests
// first, so a cluster reload drops none.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
