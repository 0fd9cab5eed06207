// Sample API shaped like Cohuron's: answers GET /api/health with its version.
const http = require('http');
const port = Number(process.env.PORT || 4000);
const version = process.env.APP_VERSION || require('./package.json').version;
http.createServer((req, res) => {
  if (req.url === '/api/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', version }));
    return;
  }
  res.writeHead(404);
  res.end();
}).listen(port, process.env.HOST || '127.0.0.1');
