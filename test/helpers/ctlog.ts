import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../services/common/clock';
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
  readonly roots: readonly TestCert[];
  readonly databaseUrl?: string;
  /** Reuse a directory (restart); default a fresh one. */
  readonly dir?: string;
  readonly env?: Record<string, string>;
}

export async function startTestCtlog(options: TestCtlogOptions): Promise<TestCtlog> {
  const work = mkdtempSync(join(tmpdir(), 'mayfly-ctlog-test-'));
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
  return {
    app,
    url: app.url,
    dir,
    stop: async () => {
      await app.close();
      if (!options.dir) rmSync(work, { recursive: true, force: true });
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
