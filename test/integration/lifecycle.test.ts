import { connect, type Socket } from 'node:net';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  chainsTo,
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  probe,
  signingBody,
  slowSigningRequest,
  startMayflyProcess,
  trustBundle,
  waitFor,
  type MayflyProcess,
  type SigningOutcome,
} from '../helpers/mayfly-process';
import { until } from '../helpers/wait';

/**
 * The graceful stop of the compiled process, under a steady stream of signing requests:
 * on SIGTERM it reports not-ready (while still serving for MAYFLY_SHUTDOWN_DELAY_MS), then
 * refuses new connections, finishes what it accepted, and exits 0 well within the grace
 * period; a second signal exits at once.
 *
 * "Accepted" is judged from both ends: every request that got an answer got a certificate,
 * the only failures are connections refused or reset after SIGTERM, and the server logged
 * exactly as many issued certificates as the clients received.
 */

let issuer: DevIssuer;
let identityConfig: string;

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
}, 120_000);

afterAll(async () => {
  await issuer?.close();
});

function start(env: Record<string, string> = {}): Promise<MayflyProcess> {
  return startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    ...env,
  });
}

let sequence = 0;
const nextEmail = () => `drain-${process.pid}-${++sequence}@example.com`;

const CONNECTION_FAILURES = ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'socket hang up'];

test('SIGTERM mid-stream: not-ready, then closed; every accepted request gets a certificate; exit 0', async () => {
  const proc = await start({ MAYFLY_SHUTDOWN_DELAY_MS: '1500', MAYFLY_SHUTDOWN_GRACE_MS: '20000' });
  try {
    const [chain] = await trustBundle(proc.url);
    const outcomes: (SigningOutcome & { afterSignal: boolean })[] = [];
    let signalled = false;
    let stopStream = false;
    // Four clients, each sending one request after another until the server is gone.
    const clients = Array.from({ length: 4 }, async () => {
      while (!stopStream) {
        const body = await signingBody(issuer, nextEmail());
        const afterSignal = signalled;
        const outcome = await postSigningRequest(proc.url, body);
        outcomes.push({ ...outcome, afterSignal });
        if (outcome.error === 'ECONNREFUSED') return;
      }
    });
    await waitFor(() => outcomes.length >= 20, 'twenty certificates before the signal');

    // A request that is in flight when the signal arrives: headers and half of its body.
    const slow = slowSigningRequest(proc.url, await signingBody(issuer, nextEmail()));
    await new Promise((r) => setTimeout(r, 200));

    signalled = true;
    proc.child.kill('SIGTERM');

    // While draining, readiness answers 503 on a new connection (before the listener closes).
    let readiness: number | string = 200;
    while (readiness === 200) readiness = await probe(`${proc.url}/readyz`);
    expect(readiness).toBe(503);
    // Serving goes on during the delay: certificates are still issued after the signal.
    await waitFor(
      () => outcomes.some((o) => o.afterSignal && o.status === 200),
      'a certificate issued after SIGTERM',
    );
    // Then the listener closes: new connections are refused.
    await waitFor(
      () => outcomes.some((o) => o.error === 'ECONNREFUSED'),
      'new connections to be refused',
    );
    expect(await probe(`${proc.url}/healthz`)).toBe('ECONNREFUSED');

    // The in-flight request still completes.
    slow.finish();
    const slowOutcome = await slow.outcome;
    expect(slowOutcome.status).toBe(200);
    expect(chainsTo(slowOutcome.certificates![0]!, chain!)).toBe(true);

    expect(await proc.exited).toBe(0);
    stopStream = true;
    await Promise.all(clients);

    const answered = outcomes.filter((o) => o.status !== undefined);
    const failed = outcomes.filter((o) => o.status === undefined);
    // Every answer is a certificate that chains to the published trust bundle.
    expect(answered.filter((o) => o.status !== 200)).toEqual([]);
    for (const o of answered) expect(chainsTo(o.certificates![0]!, chain!)).toBe(true);
    // The only failures are connections refused (or reset in the backlog) after the signal.
    expect(failed.filter((o) => !o.afterSignal)).toEqual([]);
    expect(failed.filter((o) => !CONNECTION_FAILURES.includes(o.error!))).toEqual([]);
    // Nothing the server issued was lost on the way out.
    const issued = proc.logs().filter((l) => l.msg === 'signing certificate issued').length;
    expect(issued).toBe(answered.length + 1);
    // It finished within the grace period: the drain closed nothing by force.
    const stopped = proc.logs().find((l) => l.msg === 'stopped');
    expect(stopped).toMatchObject({ forced: false });
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 60_000);

test('a second signal exits at once, without waiting for in-flight requests', async () => {
  const proc = await start({ MAYFLY_SHUTDOWN_GRACE_MS: '60000' });
  try {
    const slow = slowSigningRequest(proc.url, await signingBody(issuer, nextEmail()));
    await new Promise((r) => setTimeout(r, 200));
    proc.child.kill('SIGTERM');
    await waitFor(
      () => proc.logs().some((l) => l.msg === 'draining: no longer accepting connections'),
      'the drain to start',
    );
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(1);
    expect(proc.logs().some((l) => l.msg === 'second signal: exiting now')).toBe(true);
    expect((await slow.outcome).status).toBeUndefined();
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 30_000);

test('when the grace period runs out, open connections are cut and the process still exits 0', async () => {
  const proc = await start({ MAYFLY_SHUTDOWN_GRACE_MS: '300' });
  try {
    const slow = slowSigningRequest(proc.url, await signingBody(issuer, nextEmail()));
    await new Promise((r) => setTimeout(r, 200));
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.logs().find((l) => l.msg === 'stopped')).toMatchObject({ forced: true });
    expect((await slow.outcome).status).toBeUndefined();
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 30_000);

/**
 * One kept-alive connection driven by hand, as a busy client drives it: it sends a request
 * when it is ready, without first looking whether the server closed the connection.
 */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  ended = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiting?.();
    });
    const end = () => {
      this.ended = true;
      this.waiting?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** Sends a signing request; resolves with the answer, or undefined if none came. */
  async post(body: string): Promise<{ status: number; headers: string } | undefined> {
    this.socket.write(
      `POST /api/v2/signingCert HTTP/1.1\r\nHost: mayfly\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    for (;;) {
      const text = this.buffer.toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      if (head >= 0) {
        const headers = text.slice(0, head).toLowerCase();
        const length = Number(/content-length: (\d+)/.exec(headers)?.[1] ?? 0);
        if (this.buffer.length >= head + 4 + length) {
          this.buffer = this.buffer.subarray(head + 4 + length);
          return { status: Number(headers.split(' ')[1]), headers };
        }
      }
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

test('a connection idle when SIGTERM comes still gets its next request answered, with Connection: close', async () => {
  const proc = await start({ MAYFLY_SHUTDOWN_GRACE_MS: '20000' });
  const conn = await RawConnection.open(proc.port);
  try {
    const first = await conn.post(await signingBody(issuer, nextEmail()));
    expect(first?.status).toBe(200);
    expect(first?.headers).toContain('connection: keep-alive');
    const next = await signingBody(issuer, nextEmail());

    proc.child.kill('SIGTERM');
    // The listener is closed: the drain is under way.
    await until(
      async () => (await probe(`${proc.url}/healthz`)) === 'ECONNREFUSED',
      'the listener to close',
    );
    // The client sends its next request on the connection it kept (a client busy with its
    // own work does not notice a close before it writes).
    const second = await conn.post(next);
    expect(second?.status).toBe(200);
    expect(second?.headers).toContain('connection: close');
    // The server closes the connection after that answer, and the drain ends by itself.
    await waitFor(() => conn.ended, 'the server to close the connection');
    expect(await proc.exited).toBe(0);
    expect(proc.logs().find((l) => l.msg === 'stopped')).toMatchObject({
      forced: false,
      closedIdle: 0,
    });
  } finally {
    conn.close();
    proc.child.kill('SIGKILL');
  }
}, 30_000);

test('while draining, a connection left idle for MAYFLY_SHUTDOWN_IDLE_MS is closed; the drain does not wait for the grace period', async () => {
  const proc = await start({ MAYFLY_SHUTDOWN_GRACE_MS: '20000', MAYFLY_SHUTDOWN_IDLE_MS: '500' });
  const conn = await RawConnection.open(proc.port);
  try {
    expect((await conn.post(await signingBody(issuer, nextEmail())))?.status).toBe(200);
    proc.child.kill('SIGTERM');
    await waitFor(() => conn.ended, 'the server to close the idle connection');
    expect(await proc.exited).toBe(0);
    expect(proc.logs().find((l) => l.msg === 'stopped')).toMatchObject({
      forced: false,
      closedIdle: 1,
    });
  } finally {
    conn.close();
    proc.child.kill('SIGKILL');
  }
}, 30_000);
