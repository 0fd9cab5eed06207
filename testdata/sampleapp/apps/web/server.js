// Sample web front end: serves one page.
const http = require('http');
const port = Number(process.env.PORT || 5173);
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>Cohuron sample</title><h1>Cohuron sample</h1>');
}).listen(port, process.env.HOST || '127.0.0.1');
