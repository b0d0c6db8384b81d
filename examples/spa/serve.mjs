#!/usr/bin/env node
// A tiny static server for the example SPA (no dependencies):
//
//   node examples/spa/serve.mjs [--port 8000] [--host 127.0.0.1] [--latchkey http://127.0.0.1:8080]
//
// It serves a fixed list of files (the SPA and clients/js/latchkey.js, never
// anything else of the repository), generates /config.js naming the Latchkey
// server, sends a restrictive Content-Security-Policy, and prints
// `listening on http://HOST:PORT` once it accepts connections. `--port 0`
// picks a free port. Remember to list the printed origin in the server's
// LATCHKEY_CORS_ORIGINS.

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const FILES = new Map([
  ['/', 'examples/spa/index.html'],
  ['/index.html', 'examples/spa/index.html'],
  ['/app.js', 'examples/spa/app.js'],
  ['/style.css', 'examples/spa/style.css'],
  // The pages mailed links open (Latchkey's app_url points here).
  ['/verify-email', 'examples/spa/index.html'],
  ['/reset-password', 'examples/spa/index.html'],
  ['/forgot-password', 'examples/spa/index.html'],
  ['/confirm-email', 'examples/spa/index.html'],
  ['/cancel-email-change', 'examples/spa/index.html'],
  ['/clients/js/latchkey.js', 'clients/js/latchkey.js'],
]);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '8000' },
    host: { type: 'string', default: '127.0.0.1' },
    latchkey: { type: 'string', default: 'http://127.0.0.1:8080' },
  },
});

const latchkey = new URL(args.latchkey);
const latchkeyBase = latchkey.href.replace(/\/+$/, '');
const config = `export const LATCHKEY_URL = ${JSON.stringify(latchkeyBase)};\n`;

// Scripts only from this origin, requests only to Latchkey: an injected
// inline script does not run, and nothing on the page can post data elsewhere.
const headers = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    // blob: for the QR code of an authenticator-app enrolment: an SVG shown
    // through <img>, where it can run nothing.
    "img-src 'self' blob:",
    `connect-src ${latchkey.origin}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
};

async function body(path) {
  if (path === '/config.js') return { type: TYPES['.js'], data: config };
  const file = FILES.get(path);
  if (!file) return null;
  const type = TYPES[file.slice(file.lastIndexOf('.'))];
  return { type, data: await readFile(join(root, file)) };
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD' }).end();
    return;
  }
  try {
    const found = await body(path);
    if (!found) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': found.type });
    res.end(req.method === 'HEAD' ? undefined : found.data);
  } catch (error) {
    console.error(error);
    res.writeHead(500, headers).end();
  }
});

// "localhost" is served on IPv4 loopback so that it is the same server
// whichever address a browser tries first.
const bind = args.host === 'localhost' ? '127.0.0.1' : args.host;
server.listen(Number(args.port), bind, () => {
  const { port } = server.address();
  const host = args.host.includes(':') ? `[${args.host}]` : args.host;
  console.log(`listening on http://${host}:${port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
