import { createServer, request, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ensureNginx,
  startNginx,
  summarizeAccessLog,
  summarizeErrorLog,
  type RunningNginx,
} from '../../bench/lib/soak/nginx';
import { stablePort } from '../../bench/lib/soak/procs';
import { countCuts } from '../../bench/lib/soak/report';

/**
 * The soak's count of cut requests, read from the access log of the real nginx the soak
 * runs, with the soak's own config: an upstream attempt that connected, sent the request
 * and got no response header is a cut; a refused connect is not (nothing was sent); an
 * answer, whatever its status, is not. A cut counts against a drain when it overlaps the
 * drain step of the replica it went to.
 */

let nginx: RunningNginx;
let answering: Server;
let cutting: Server;
let refusingPort: number;
const ports: number[] = [];

function upstream(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  return stablePort().then(
    (port) =>
      new Promise((resolve) => {
        const server = createServer(handler);
        server.listen(port, '127.0.0.1', () => resolve(server));
        ports.push(port);
      }),
  );
}

beforeAll(async () => {
  const binary = ensureNginx((line) => process.stderr.write(`${line}\n`));
  // The cutting replica takes the request and closes the connection without an answer,
  // except for /ok.
  cutting = await upstream((req, res) => {
    if (req.url === '/ok') res.end('ok');
    else req.socket.destroy();
  });
  answering = await upstream((_req, res) => res.end('ok'));
  refusingPort = await stablePort();
  nginx = await startNginx(binary, {
    dir: mkdtempSync(join(tmpdir(), 'mayfly-soak-nginx-')),
    port: await stablePort(),
    upstreams: [ports[0]!, ports[1]!, refusingPort],
  });
}, 120_000);

afterAll(async () => {
  await nginx?.stop();
  cutting?.close();
  answering?.close();
});

function post(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${nginx.url}${path}`, { method: 'POST' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end('{}');
  });
}

test('a connected attempt with no answer is a cut; a refused connect or an answer is not', async () => {
  const before = Date.now();
  // Round robin over the three, with nginx's retries (and its max_fails=1 pause after a
  // failure): a cut, a refused connect and an answer all happen.
  for (let i = 0; i < 6; i++) await post(`/cut-${i}`);
  const between = Date.now();
  for (let i = 0; i < 3; i++) await post('/ok');
  await nginx.stop();
  const after = Date.now();

  const summary = summarizeAccessLog(nginx.accessLog);
  expect(summary.requests).toBe(9);
  const cutter = `127.0.0.1:${ports[0]}`;
  // nginx's error log says the same, in its own words: one "prematurely closed" line per
  // cut attempt, all of them at the cutting replica; the refused connects are there too,
  // and none of them is a cut.
  const errors = summarizeErrorLog(nginx.errorLog);
  const closed = [...errors]
    .filter(([reason]) => reason.includes('upstream prematurely closed connection'))
    .reduce((n, [, c]) => n + c, 0);
  const refused = [...errors]
    .filter(([reason]) => reason.includes('(111: Connection refused)'))
    .reduce((n, [, c]) => n + c, 0);
  expect(closed).toBeGreaterThan(0);
  expect(refused).toBeGreaterThan(0);
  expect(summary.cutAttempts.map((a) => a.upstream)).toEqual(Array(closed).fill(cutter));
  for (const a of summary.cutAttempts) {
    expect(a.fromMs).toBeGreaterThanOrEqual(before - 1000);
    expect(a.toMs).toBeLessThanOrEqual(between + 1000);
  }
  const cuts = summary.cutAttempts.length;

  const names = new Map([
    [cutter, 'replica-a'],
    [`127.0.0.1:${ports[1]}`, 'replica-b'],
  ]);
  const step = (drains: string, startedMs: number, endedMs: number) => ({
    label: 'SIGTERM',
    drains,
    plannedMs: startedMs,
    startedMs,
    endedMs,
    detail: '',
    ok: true,
  });
  // A drain of the cutting replica over the whole run: every cut counts against it.
  expect(countCuts(summary.cutAttempts, [step(cutter, 0, after - before)], before, names)).toEqual({
    byReplica: { 'replica-a': cuts },
    duringDrain: cuts,
  });
  // A drain of another replica, or one that ended before the cuts: none counts against it.
  expect(
    countCuts(
      summary.cutAttempts,
      [step(`127.0.0.1:${ports[1]}`, 0, after - before), step(cutter, -60_000, -30_000)],
      before,
      names,
    ).duringDrain,
  ).toBe(0);
}, 60_000);
