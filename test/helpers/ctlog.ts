import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../services/common/clock';
import { encodePem } from '../../services/common/encoding';
import { silentLogger } from '../../services/common/logger';
import { startCtlog, type CtlogApp } from '../../services/ctlog/app';
import { loadCtlogConfig } from '../../services/ctlog/config';
import { PostgresStorage } from '../../services/ctlog/storage/postgres';
import { pem, type TestCert } from './ct-certs';
import type { PostgresProcess } from './postgres';

/** An in-process CT log on a free loopback port, on a directory or a fresh database. */

export interface TestCtlog {
  readonly app: CtlogApp;
  readonly url: string;
  readonly dir: string;
  /** The log's public key, PEM SPKI (what MAYFLY_CT_LOG_PUBLIC_KEY_FILE names). */
  readonly keyFile: string;
  stop(): Promise<void>;
}

let dbCounter = 0;

/** A fresh database on that server; returns its URL. */
export async function freshDatabase(pg: PostgresProcess): Promise<string> {
  const db = `ctlog_${process.pid}_${++dbCounter}`;
  await PostgresStorage.adminQuery(pg.url, `CREATE DATABASE ${db}`);
  return pg.url.replace(/\/postgres$/, `/${db}`);
}

export interface TestCtlogOptions {
  readonly roots: readonly Pick<TestCert, 'der'>[];
  /**
   * The caller's folder for roots.pem, log.pub and (unless `dir`) the log, left in place;
   * default a fresh one, removed by stop().
   */
  readonly work?: string;
  readonly databaseUrl?: string;
  /** Reuse a directory (restart); default a fresh one. */
  readonly dir?: string;
  readonly env?: Record<string, string>;
}

export async function startTestCtlog(options: TestCtlogOptions): Promise<TestCtlog> {
  const work = options.work ?? mkdtempSync(join(tmpdir(), 'mayfly-ctlog-test-'));
  const rootsFile = join(work, 'roots.pem');
  writeFileSync(rootsFile, options.roots.map((r) => pem(r.der)).join(''));
  const dir = options.dir ?? join(work, 'log');
  const config = loadCtlogConfig({
    MAYFLY_CTLOG_HOST: '127.0.0.1',
    MAYFLY_CTLOG_PORT: '0',
    MAYFLY_CTLOG_ROOTS: rootsFile,
    MAYFLY_CTLOG_URL: 'https://ctlog.test/2026',
    MAYFLY_CTLOG_SEQUENCE_INTERVAL_MS: '20',
    MAYFLY_CTLOG_SHUTDOWN_GRACE_MS: '1000',
    ...(options.databaseUrl
      ? { MAYFLY_CTLOG_DATABASE_URL: options.databaseUrl }
      : { MAYFLY_CTLOG_DIR: dir }),
    ...options.env,
  });
  const app = await startCtlog(config, silentLogger, systemClock);
  const keyFile = join(work, 'log.pub');
  writeFileSync(keyFile, encodePem('PUBLIC KEY', app.key.spki));
  return {
    app,
    url: app.url,
    dir,
    keyFile,
    stop: async () => {
      await app.close();
      if (!options.dir && !options.work) rmSync(work, { recursive: true, force: true });
    },
  };
}

export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; text: string; json?: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A CT log that is down (500, which the CA does not retry) until told otherwise. */
export interface LogFront {
  readonly server: Server;
  readonly url: string;
  /** Requests that reached the front, answered or forwarded. */
  readonly hits: number;
  failing: boolean;
}

/** An HTTP front on a free loopback port: 500 while `failing`, else forwards to `upstream`. */
export async function startLogFront(upstream: string): Promise<LogFront> {
  const front = { failing: true, hits: 0 } as { -readonly [K in keyof LogFront]: LogFront[K] };
  const server = createServer((req, res) => {
    front.hits++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (front.failing) {
        res.writeHead(500).end('down');
        return;
      }
      void fetch(`${upstream}${req.url}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: Buffer.concat(chunks),
      }).then(async (answer) => {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(await answer.text());
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  front.server = server;
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return front;
}
