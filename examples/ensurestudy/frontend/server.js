'use strict';
// ensureStudy example frontend: a dependency-free stand-in for the Next.js dev server.
// Serves one page that calls the core API and the AI API; their addresses come from
// NEXT_PUBLIC_API_URL and NEXT_PUBLIC_AI_SERVICE_URL and are injected into the page.
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const PORT = Number.parseInt(process.env.PORT || '3000', 10);
const HOST = process.env.HOST || '127.0.0.1';
const config = {
  apiUrl: (process.env.NEXT_PUBLIC_API_URL || 'http://127.0.0.1:5000').replace(/\/+$/, ''),
  aiUrl: (process.env.NEXT_PUBLIC_AI_SERVICE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, ''),
};
const PAGE = path.join(__dirname, 'public', 'index.html');

function renderPage() {
  // Read on every request so an edited page shows on reload; JSON is safe inside <script>
  // once '<' is escaped.
  const json = JSON.stringify(config).replace(/</g, '\\u003c');
  return fs.readFileSync(PAGE, 'utf8').replace('/*__ENSURESTUDY_CONFIG__*/null', () => json);
}

function send(res, status, type, body) {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  let status = 200;
  try {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      status = 405;
      send(res, status, 'text/plain; charset=utf-8', 'method not allowed\n');
    } else if (url.pathname === '/' || url.pathname === '/index.html') {
      send(res, status, 'text/html; charset=utf-8', renderPage());
    } else if (url.pathname === '/config.json') {
      send(res, status, 'application/json', JSON.stringify(config));
    } else if (url.pathname === '/favicon.ico') {
      status = 204;
      res.writeHead(status);
      res.end();
    } else {
      status = 404;
      send(res, status, 'text/plain; charset=utf-8', 'not found\n');
    }
  } catch (err) {
    status = 500;
    send(res, status, 'text/plain; charset=utf-8', 'internal error\n');
    console.error(`frontend: ${err && err.stack ? err.stack : err}`);
  }
  console.log(`${req.method} ${url.pathname} ${status}`);
});

server.on('error', (err) => {
  console.error(`frontend: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  console.log(`frontend: ready on http://${HOST}:${PORT} (core API ${config.apiUrl}, AI API ${config.aiUrl})`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) process.exit(0);
  stopping = true;
  console.log(`frontend: ${signal} received, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections(); // do not wait for idle keep-alive connections
  setTimeout(() => process.exit(0), 2000).unref();
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => shutdown(signal));
