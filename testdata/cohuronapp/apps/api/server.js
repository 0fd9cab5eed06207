// Sample API shaped like Cohuron PMO's: Fastify + pg, as in the real app
// (which is also TypeScript; this one is plain JavaScript so the sample
// stays small).
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
//   anything else       404 {status:"error", error:"not found"}
//                       (405 for a known path with a method other than GET/HEAD)
'use strict';
const fs = require('fs');
const path = require('path');
const Fastify = require('fastify');
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

// Same bodies and headers as before the port to Fastify: JSON ends with a
// newline, plain text does not, nothing is cached.
function send(reply, code, body) {
  const json = typeof body !== 'string';
  return reply
    .code(code)
    .header('content-type', json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(json ? JSON.stringify(body) + '\n' : body);
}

const app = Fastify({
  // Keep the output small: our own console lines only.
  logger: false,
  // While closing (graceful stop), a request that still arrives on an open
  // keep-alive connection is served (with "connection: close") instead of
  // getting 503: under a PM2 cluster reload no request may fail.
  return503OnClosing: false,
  // On close, drop idle keep-alive connections at once; busy ones finish.
  forceCloseConnections: 'idle',
});

// Every route is GET-only: never parse a request body (so a POST with any
// body or content type still gets the 405/404 below, not 400/415).
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (request, payload, done) => {
  payload.resume();
  done(null);
});

const routes = {
  '/api/v1/health': async (request, reply) => {
    try {
      return send(reply, 200, await health());
    } catch (err) {
      return send(reply, 503, { status: 'error', error: err.message });
    }
  },
  '/api/v1/tasks': async (request, reply) => {
    try {
      return send(reply, 200, await listTasks());
    } catch (err) {
      return send(reply, 503, { status: 'error', error: err.message });
    }
  },
  '/api/health': async (request, reply) => send(reply, 200, 'ok'),
};
// GET routes also answer HEAD (Fastify's exposeHeadRoutes).
for (const [url, handler] of Object.entries(routes)) app.get(url, handler);

app.setNotFoundHandler((request, reply) => {
  const pathname = (request.raw.url || '/').split('?')[0];
  if (Object.prototype.hasOwnProperty.call(routes, pathname)) {
    reply.header('allow', 'GET, HEAD');
    return send(reply, 405, { status: 'error', error: 'method not allowed' });
  }
  return send(reply, 404, { status: 'error', error: 'not found' });
});

app.setErrorHandler((err, request, reply) => {
  const code = err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (code >= 500) {
    console.error(`api: ${request.method} ${request.raw.url}: ${err.stack || err}`);
    return send(reply, 500, { status: 'error', error: 'internal error' });
  }
  return send(reply, code, { status: 'error', error: err.message });
});

app.listen({ port, host }).then(
  () => {
    console.log(`api ${version} listening on http://${host}:${port} (pid ${process.pid})`);
    // PM2 wait_ready: tell PM2 this instance is up.
    if (typeof process.send === 'function') process.send('ready');
  },
  (err) => {
    console.error(`api: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  });

// Graceful stop (PM2 sends SIGINT on stop/reload; containers and systemd
// send SIGTERM): stop accepting, let in-flight requests finish
// (fastify.close()), close the pool, exit 0. A hard deadline keeps a stuck
// request from blocking forever.
let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`api: ${signal} received, shutting down`);
  const deadline = setTimeout(() => {
    console.warn('api: in-flight requests did not finish in 8s; closing connections');
    app.server.closeAllConnections();
    setTimeout(() => {
      console.warn('api: still not closed 2s later; exiting');
      process.exit(0);
    }, 2000).unref();
  }, 8000);
  deadline.unref();
  app.close()
    .catch((err) => console.error(`api: closing server: ${err.message}`))
    .then(() => pool.end())
    .then(
      () => { console.log('api: stopped'); process.exit(0); },
      (err) => { console.error(`api: closing pool: ${err.message}`); process.exit(0); });
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
