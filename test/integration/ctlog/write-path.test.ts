import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { b64, makeCert, makeHierarchy } from '../../helpers/ct-certs';
import { startTestCtlog, type TestCtlog } from '../../helpers/ctlog';

/**
 * The submission front (services/ctlog/write-path.ts) against Express, differentially: every
 * request below goes to the log as served (the node:http front first) and to the same log
 * through Express alone (its body-parser and router, which the front replaces for plain
 * requests). Status, Content-Type, body, the submissions counter and the route metric must
 * move the same way. A submission that succeeds on the front is a duplicate for Express, so
 * both answer the same SCT.
 */

interface Answer {
  status: number;
  type: string | undefined;
  text: string;
}

interface Raw {
  readonly path: string;
  readonly body: Buffer | string | readonly string[];
  readonly headers?: Record<string, string>;
  readonly method?: string;
}

function send(url: string, raw: Raw): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunked = Array.isArray(raw.body);
    const body = chunked ? undefined : Buffer.from(raw.body as Buffer | string);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      ...(body ? { 'content-length': String(body.length) } : {}),
      ...raw.headers,
    };
    const req = request(`${url}${raw.path}`, { method: raw.method ?? 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          type: res.headers['content-type'],
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    if (chunked) {
      for (const piece of raw.body as readonly string[]) req.write(piece);
      req.end();
    } else req.end(body);
  });
}

/** The submissions counter and the add routes' request counts, as /metrics shows them. */
async function counters(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m =
      /^(mayfly_ctlog_submissions_total\{[^}]*\}|mayfly_ctlog_http_request_duration_seconds_count\{[^}]*route="\/ct\/v1\/add[^}]*\}) (\d+)/.exec(
        line,
      );
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of after) if (v !== (before.get(k) ?? 0)) d[k] = v - (before.get(k) ?? 0);
  return d;
}

describe('ctlog submission front (node:http) against Express', () => {
  const { root, intermediate } = makeHierarchy();
  let log: TestCtlog;
  let expressOnly: Server;
  let expressUrl: string;

  beforeAll(async () => {
    log = await startTestCtlog({ roots: [root] });
    expressOnly = createServer(log.app.express);
    await new Promise<void>((r) => expressOnly.listen(0, '127.0.0.1', r));
    expressUrl = `http://127.0.0.1:${(expressOnly.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => expressOnly.close(r));
    await log.stop();
  });

  const cert = () => b64(makeCert({ issuer: intermediate }).der);
  const precert = () => b64(makeCert({ issuer: intermediate, poison: 'critical' }).der);
  const chainBody = (leaf: string) => JSON.stringify({ chain: [leaf, b64(intermediate.der)] });

  const cases: [string, () => Raw][] = [
    ['a certificate', () => ({ path: '/ct/v1/add-chain', body: chainBody(cert()) })],
    ['a precertificate', () => ({ path: '/ct/v1/add-pre-chain', body: chainBody(precert()) })],
    [
      'a precertificate, charset=utf-8, whitespace and a BOM first',
      () => ({
        path: '/ct/v1/add-pre-chain',
        body: `\uFEFF \n\t${chainBody(precert())}`,
        headers: { 'content-type': 'application/json; charset=UTF-8' },
      }),
    ],
    [
      'a certificate as text/plain',
      () => ({
        path: '/ct/v1/add-chain',
        body: chainBody(cert()),
        headers: { 'content-type': 'text/plain' },
      }),
    ],
    ['an empty body', () => ({ path: '/ct/v1/add-chain', body: '' })],
    ['only whitespace', () => ({ path: '/ct/v1/add-chain', body: '  \n' })],
    ['malformed JSON', () => ({ path: '/ct/v1/add-chain', body: '{"chain":' })],
    ['a JSON string', () => ({ path: '/ct/v1/add-chain', body: '"chain"' })],
    ['a JSON number', () => ({ path: '/ct/v1/add-pre-chain', body: '42' })],
    ['a JSON array', () => ({ path: '/ct/v1/add-chain', body: '[1,2]' })],
    ['an object without chain', () => ({ path: '/ct/v1/add-chain', body: '{}' })],
    ['an empty chain', () => ({ path: '/ct/v1/add-chain', body: '{"chain":[]}' })],
    ['bad base64', () => ({ path: '/ct/v1/add-chain', body: '{"chain":["QUJD!"]}' })],
    ['base64 without padding', () => ({ path: '/ct/v1/add-chain', body: '{"chain":["QUI"]}' })],
    ['trailing bytes after JSON', () => ({ path: '/ct/v1/add-chain', body: '{"chain":[]} x' })],
    ['invalid UTF-8', () => ({ path: '/ct/v1/add-chain', body: Buffer.from([0x7b, 0xff, 0x7d]) })],
    [
      'a certificate on add-pre-chain',
      () => ({ path: '/ct/v1/add-pre-chain', body: chainBody(cert()) }),
    ],
    [
      'a precertificate on add-chain',
      () => ({ path: '/ct/v1/add-chain', body: chainBody(precert()) }),
    ],
    // Left to Express by the front: these must still answer as Express does.
    [
      'charset=utf8 (body-parser refuses)',
      () => ({
        path: '/ct/v1/add-chain',
        body: chainBody(cert()),
        headers: { 'content-type': 'application/json; charset=utf8' },
      }),
    ],
    [
      'charset=latin1',
      () => ({
        path: '/ct/v1/add-chain',
        body: '{}',
        headers: { 'content-type': 'application/json; charset=latin1' },
      }),
    ],
    [
      'a gzip body',
      () => ({
        path: '/ct/v1/add-chain',
        body: gzipSync(chainBody(cert())),
        headers: { 'content-encoding': 'gzip' },
      }),
    ],
    [
      'a chunked body',
      () => {
        const body = chainBody(precert());
        return { path: '/ct/v1/add-pre-chain', body: [body.slice(0, 100), body.slice(100)] };
      },
    ],
    ['a query string', () => ({ path: '/ct/v1/add-chain?x=1', body: chainBody(cert()) })],
    ['a trailing slash', () => ({ path: '/ct/v1/add-chain/', body: '{}' })],
    ['another case', () => ({ path: '/CT/v1/add-chain', body: '{}' })],
    [
      'a Content-Length over the limit',
      () => ({ path: '/ct/v1/add-chain', body: `{"chain":["${'A'.repeat(300_000)}"]}` }),
    ],
    ['a GET', () => ({ path: '/ct/v1/add-chain', body: '', method: 'GET' })],
  ];

  it.each(cases)('%s', async (_name, make) => {
    const raw = make();
    const b0 = await counters(log.url);
    const front = await send(log.url, raw);
    const b1 = await counters(log.url);
    const viaExpress = await send(expressUrl, raw);
    const b2 = await counters(log.url);

    expect({ status: front.status, type: front.type }).toEqual({
      status: viaExpress.status,
      type: viaExpress.type,
    });
    if (front.status === 200) expect(JSON.parse(front.text)).toEqual(JSON.parse(viaExpress.text));
    else expect(front.text).toBe(viaExpress.text);
    // The second submission of a chain counts as a duplicate, not as new.
    const d1 = delta(b0, b1);
    const d2 = delta(b1, b2);
    const norm = (d: Record<string, number>) =>
      Object.fromEntries(
        Object.entries(d).map(([k, v]) => [k.replace('result="new"', 'result="duplicate"'), v]),
      );
    expect(norm(d1)).toEqual(norm(d2));
  });
});
