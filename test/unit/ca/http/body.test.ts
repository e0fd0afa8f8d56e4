import { createServer, request as httpRequest, type IncomingMessage, Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import bodyParser from 'body-parser';
import { readBody } from '../../../../services/ca/http/body';
import { toCaError } from '../../../../services/ca/http/signing';

/**
 * The signing route's body reader (http/body.ts) against body-parser's raw() with the same
 * limit, which it replaces: each request below goes, over a real socket, to a server that
 * reads it both ways in turn (two requests), and both must end alike — the same bytes, or
 * the same CaError code and detail — and the connection must serve the next request.
 */

const LIMIT = 1024;

type Outcome = { body: string | undefined } | { code: string; detail: string };

function viaBodyParser(req: IncomingMessage): Promise<Outcome> {
  const parse = bodyParser.raw({ type: () => true, limit: LIMIT });
  const r = req as IncomingMessage & { body?: unknown };
  return new Promise((resolve) =>
    parse(r, undefined as never, (err?: unknown) => {
      if (err) {
        const e = toCaError(err);
        resolve({ code: e.code, detail: e.detail ?? '' });
      } else resolve({ body: Buffer.isBuffer(r.body) ? r.body.toString('latin1') : undefined });
    }),
  );
}

function viaReadBody(req: IncomingMessage): Promise<Outcome> {
  return readBody(req, LIMIT).then(
    (b) => ({ body: b?.toString('latin1') }),
    (err: unknown) => {
      const e = toCaError(err);
      return { code: e.code, detail: e.detail ?? '' };
    },
  );
}

let server: ReturnType<typeof createServer>;
let port: number;
const outcomes: Outcome[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const reader = req.headers['x-reader'] === 'body-parser' ? viaBodyParser : viaReadBody;
    void reader(req).then((outcome) => {
      outcomes.push(outcome);
      res.end('done');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

interface Case {
  readonly name: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer | readonly Buffer[];
  /** Close the socket after this many bytes of the body. */
  readonly cutAfter?: number;
}

/** Sends the request on a keep-alive agent, then a second one on the same agent. */
async function send(c: Case, reader: string, agent: Agent): Promise<string> {
  return new Promise<string>((resolve) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent,
        headers: { ...c.headers, 'x-reader': reader },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', () => resolve('connection error'));
    const parts = c.body === undefined ? [] : Buffer.isBuffer(c.body) ? [c.body] : c.body;
    if (c.cutAfter !== undefined) {
      req.write(Buffer.concat([...parts]).subarray(0, c.cutAfter));
      setTimeout(() => req.destroy(), 50);
      return;
    }
    for (const p of parts) req.write(p);
    req.end();
  });
}

const json = Buffer.from('{"credentials":{"oidcIdentityToken":"x"}}');
const big = Buffer.alloc(4 * LIMIT, 0x61);

const CASES: Case[] = [
  { name: 'plain body', headers: { 'content-length': String(json.length) }, body: json },
  { name: 'empty body', headers: { 'content-length': '0' }, body: Buffer.alloc(0) },
  { name: 'no body at all', headers: {} },
  { name: 'chunked body', headers: { 'transfer-encoding': 'chunked' }, body: [json, json] },
  {
    name: 'gzip',
    headers: { 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' },
    body: gzipSync(json),
  },
  {
    name: 'deflate, upper case',
    headers: { 'content-encoding': 'DEFLATE', 'transfer-encoding': 'chunked' },
    body: deflateSync(json),
  },
  {
    name: 'br',
    headers: { 'content-encoding': 'br', 'transfer-encoding': 'chunked' },
    body: brotliCompressSync(json),
  },
  {
    name: 'unsupported encoding',
    headers: { 'content-encoding': 'compress', 'transfer-encoding': 'chunked' },
    body: json,
  },
  {
    name: 'gzip that is not gzip',
    headers: { 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' },
    body: json,
  },
  {
    name: 'declared length over the limit',
    headers: { 'content-length': String(big.length) },
    body: big,
  },
  { name: 'chunked over the limit', headers: { 'transfer-encoding': 'chunked' }, body: [big, big] },
  {
    name: 'inflates over the limit',
    headers: { 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' },
    body: gzipSync(big),
  },
  {
    name: 'exactly the limit',
    headers: { 'content-length': String(LIMIT) },
    body: big.subarray(0, LIMIT),
  },
  {
    name: 'cut short',
    headers: { 'content-length': String(json.length) },
    body: json,
    cutAfter: 10,
  },
];

test.each(CASES)(
  '$name: the same outcome as body-parser, and the connection serves on',
  async (c) => {
    const results: { outcome: Outcome | undefined; next: string }[] = [];
    for (const reader of ['body-parser', 'read-body']) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const before = outcomes.length;
      await send(c, reader, agent);
      // Wait for the server's outcome (a cut request gets no answer).
      for (let i = 0; i < 100 && outcomes.length === before; i++)
        await new Promise((r) => setTimeout(r, 10));
      const outcome = outcomes[before];
      const next =
        c.cutAfter === undefined
          ? await send(
              { name: 'next', headers: { 'content-length': '2' }, body: Buffer.from('ok') },
              reader,
              agent,
            )
          : 'not tried';
      outcomes.length = 0;
      agent.destroy();
      results.push({ outcome, next });
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[1]!.outcome).toBeDefined();
    if (c.cutAfter === undefined) expect(results[1]!.next).toBe('done');
  },
);
