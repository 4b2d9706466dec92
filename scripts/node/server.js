#!/usr/bin/env node
// Reference server: the paper's Node.js row (4.3), under archbench's server contract.
//
//   node scripts/node/server.js [--addr 127.0.0.1:0] [--workload hello|delay:D|cpu:D] [--protocol raw|http] [--workers N]
//                               [--max-conns N] [--idle-timeout D]
//
// --max-conns (default 1024) is `server.maxConnections` (per process); --idle-timeout (default
// 30s) is the http server's `keepAliveTimeout`, as the archbench servers' flags.
// One thread, Node's event loop (libuv over epoll). raw: on connect, do the workload, write
// "HelloWorld\n", close (as the paper's `net` server). http: Node's http module, keep-alive,
// the same body. delay uses setTimeout (millisecond timers); cpu spins on the loop, stalling
// every other connection. Prints "listening on ADDR" once accepting; SIGTERM/SIGINT: stop
// accepting, finish what is in flight, exit 0. A bad flag: one line on stderr, exit 2.
//
// --workers N (N > 1): the `cluster` module, a primary process and N workers, each this
// server. On Linux the primary accepts every connection and hands it to a worker in turn
// (cluster.SCHED_RR, Node's default there), a hand-off over IPC; the workers share nothing.
// The ready line comes once, from the primary, when every worker listens; SIGTERM to the
// primary is passed on, and it exits once every worker has.
'use strict';
const cluster = require('cluster');
const net = require('net');
const http = require('http');

function usage(message) {
  process.stderr.write(`error: ${message} (see the top of scripts/node/server.js)\n`);
  process.exit(2);
}

function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m)$/.exec(text);
  if (!m) usage(`bad duration '${text}' (e.g. 100ms)`);
  const scale = { ns: 1e-6, us: 1e-3, ms: 1, s: 1e3, m: 6e4 }[m[2]];
  return Number(m[1]) * scale; // milliseconds
}

const opts = {
  addr: '127.0.0.1:0', workload: 'hello', protocol: 'http', workers: '1',
  'max-conns': '1024', 'idle-timeout': '30s',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in opts) || argv[i + 1] === undefined) usage(`unexpected argument '${argv[i]}'`);
  opts[key] = argv[i + 1];
}
let work = { kind: 'hello', ms: 0 };
if (opts.workload !== 'hello') {
  const [kind, d] = opts.workload.split(':');
  if (!['delay', 'cpu'].includes(kind) || d === undefined) usage(`unknown workload '${opts.workload}'`);
  work = { kind, ms: parseDuration(d) };
}
if (!['raw', 'http'].includes(opts.protocol)) usage(`unknown protocol '${opts.protocol}'`);
const workers = Number(opts.workers);
if (!Number.isInteger(workers) || workers < 1) usage(`bad worker count '${opts.workers}'`);
const maxConns = Number(opts['max-conns']);
if (!Number.isInteger(maxConns) || maxConns < 1) usage(`bad connection cap '${opts['max-conns']}'`);
const idleTimeoutMs = parseDuration(opts['idle-timeout']);
if (workers > 1 && cluster.isPrimary) {
  primary();
} else {
  serve();
}

function primary() {
  let listening = 0;
  cluster.on('listening', (_worker, a) => {
    listening += 1;
    if (listening === workers) {
      const shown = a.addressType === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      process.stdout.write(`listening on ${shown}\n`);
    }
  });
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < workers; i += 1) cluster.fork();
}

function serve() {
  const sep = opts.addr.lastIndexOf(':');
  const host = opts.addr.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = Number(opts.addr.slice(sep + 1));

  function pay(done) {
    if (work.kind === 'delay') return setTimeout(done, work.ms);
    if (work.kind === 'cpu') {
      // User and system time: reading the clock is itself a syscall, so most of a spin on
      // user time alone is system time, and it burned several times the CPU it claimed.
      const spent = () => { const u = process.cpuUsage(); return u.user + u.system; };
      const until = spent() + work.ms * 1000;
      while (spent() < until) { /* burn */ }
    }
    done();
  }

  const BODY = 'HelloWorld\n';
  let server;
  if (opts.protocol === 'raw') {
    server = net.createServer((socket) => {
      socket.on('error', () => {});
      pay(() => socket.end(BODY));
    });
  } else {
    server = http.createServer((req, res) => {
      req.resume();
      pay(() => {
        res.writeHead(200, { 'Content-Length': BODY.length });
        res.end(BODY);
      });
    });
    server.keepAliveTimeout = idleTimeoutMs;
  }
  server.maxConnections = maxConns;
  server.listen({ host, port, backlog: 4096 }, () => {
    const a = server.address();
    const shown = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    if (cluster.isPrimary) process.stdout.write(`listening on ${shown}\n`);
  });
  server.on('error', (e) => { process.stderr.write(`node server: ${e.message}\n`); process.exit(1); });

  function stop() {
    server.close(() => process.exit(0));
    if (server.closeIdleConnections) server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  }
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
