// Sample API shaped like Cohuron PMO's (the real one is Fastify + TypeScript;
// this one is plain node:http + pg so the sample stays small).
//
// Environment:
//   DATABASE_URL  required; postgres://user:pass@host:port/db
//   PORT          default 4000 (listens on 127.0.0.1 only)
//   APP_VERSION   optional; else dist/version.json's version, else package.json's
//
// Routes:
//   GET /api/v1/health  200 {status:"ok", version, pid, schema:{tables, tasks, history}}
//                       503 {status:"error", error} when any query fails
//   GET /api/v1/tasks   200 [ {id, title, status, created_at}, ... ] (at most 10)
//   GET /api/health     200 "ok" (the real app's liveness path)
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const { Pool } = require('pg');

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('api: DATABASE_URL is not set; refusing to start (set it in the env file)');
  process.exit(1);
}

function readBuiltVersion() {
  const file = path.join(__dirname, 'dist', 'version.json');
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')).version;
    if (typeof v === 'string' && v) return v;
    console.warn(`api: warning: ${file} has no version; was the build step run?`);
  } catch (err) {
    console.warn(`api: warning: cannot read ${file} (${err.code || err.message}); was the build step run?`);
  }
  return '';
}

const builtVersion = readBuiltVersion(); // always read, so a missing build is logged
const version = process.env.APP_VERSION || builtVersion || require('./package.json').version;
const port = Number(process.env.PORT || 4000);
const host = '127.0.0.1';

const pool = new Pool({
  connectionString: databaseUrl,
  max: 2,
  connectionTimeoutMillis: 5000,
  idleTimeoutMillis: 10000,
  query_timeout: 5000,
});
// An idle client losing its connection (database restart) must not crash us;
// the next query gets a fresh client.
pool.on('error', (err) => console.error(`api: idle database client error: ${err.message}`));

async function health() {
  const tables = await pool.query(
    `SELECT count(*)::int AS n FROM information_schema.tables
      WHERE table_schema = 'app' AND table_type = 'BASE TABLE'`);
  const tasks = await pool.query('SELECT count(*)::int AS n FROM app.tasks');
  const exists = await pool.query(
    `SELECT to_regclass('cohuron_agent.schema_history') IS NOT NULL AS present`);
  let history = null;
  if (exists.rows[0].present) {
    history = (await pool.query('SELECT count(*)::int AS n FROM cohuron_agent.schema_history')).rows[0].n;
  }
  return {
    status: 'ok',
    version,
    pid: process.pid,
    schema: { tables: tables.rows[0].n, tasks: tasks.rows[0].n, history },
  };
}

async function listTasks() {
  const r = await pool.query(
    'SELECT id, title, status, created_at FROM app.tasks ORDER BY created_at, title LIMIT 10');
  return r.rows;
}

function send(res, code, body) {
  const json = typeof body !== 'string';
  const text = json ? JSON.stringify(body) + '\n' : body;
  res.writeHead(code, {
    'content-type': json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

const routes = {
  '/api/v1/health': async (req, res) => {
    try {
      send(res, 200, await health());
    } catch (err) {
      send(res, 503, { status: 'error', error: err.message });
    }
  },
  '/api/v1/tasks': async (req, res) => {
    try {
      send(res, 200, await listTasks());
    } catch (err) {
      send(res, 503, { status: 'error', error: err.message });
    }
  },
  '/api/health': async (req, res) => send(res, 200, 'ok'),
};

const server = http.createServer((req, res) => {
  const pathname = (req.url || '/').split('?')[0];
  const route = routes[pathname];
  if (!route) return send(res, 404, { status: 'error', error: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, { status: 'error', error: 'method not allowed' });
  }
  route(req, res).catch((err) => {
    console.error(`api: ${req.method} ${pathname}: ${err.stack || err}`);
    if (!res.headersSent) send(res, 500, { status: 'error', error: 'internal error' });
  });
});

server.on('error', (err) => {
  console.error(`api: cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});

server.listen(port, host, () => {
  console.log(`api ${version} listening on http://${host}:${port} (pid ${process.pid})`);
  // PM2 wait_ready: tell PM2 this instance is up.
  if (typeof process.send === 'function') process.send('ready');
});

// Graceful stop (PM2 sends SIGINT on stop/reload; containers and systemd
// send SIGTERM): stop accepting, let in-flight requests finish, close the
// pool, exit 0. A hard deadline keeps a stuck request from blocking forever.
let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`api: ${signal} received, shutting down`);
  const deadline = setTimeout(() => {
    console.warn('api: in-flight requests did not finish in 8s; closing connections');
    server.closeAllConnections();
  }, 8000);
  deadline.unref();
  server.close(() => {
    pool.end().then(
      () => { console.log('api: stopped'); process.exit(0); },
      (err) => { console.error(`api: closing pool: ${err.message}`); process.exit(0); });
  });
  server.closeIdleConnections();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
