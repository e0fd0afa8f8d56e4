import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { CENSOR, createLogger, redactSecrets } from '../../../services/common/logger';
import { ensureBuilt, repoRoot } from '../../helpers/mayfly-process';

/** A logger writing into an array of parsed JSON lines. */
function capture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

describe('the operational log censors secrets', () => {
  it.each([
    'token',
    'authorization',
    'credentials',
    'proofOfPossession',
    'signedEmailAddress',
    'privateKey',
    'password',
  ])('censors %s at the top level of a line and one level down', (key) => {
    const { lines, logger } = capture();
    logger.info({ [key]: 'eyJsecret', body: { [key]: 'eyJsecret', kept: 1 } }, 'line');
    expect(lines[0]![key]).toBe(CENSOR);
    expect(lines[0]!.body).toEqual({ [key]: CENSOR, kept: 1 });
    expect(JSON.stringify(lines)).not.toContain('eyJsecret');
  });

  it('censors req.headers.authorization', () => {
    const { lines, logger } = capture();
    logger.info({ req: { headers: { authorization: 'Bearer eyJsecret', host: 'ca' } } }, 'line');
    expect(lines[0]!.req).toEqual({ headers: { authorization: CENSOR, host: 'ca' } });
  });

  it('censors secrets in a child logger bindings', () => {
    const { lines, logger } = capture();
    logger.child({ token: 'eyJsecret', requestId: 'r1' }).info('line');
    expect(lines[0]).toMatchObject({ token: CENSOR, requestId: 'r1' });
  });

  it("does not change the caller's object", () => {
    const object = { token: 'eyJsecret', nested: { password: 'hunter2' } };
    const censored = redactSecrets(object);
    expect(censored).toEqual({ token: CENSOR, nested: { password: CENSOR } });
    expect(object).toEqual({ token: 'eyJsecret', nested: { password: 'hunter2' } });
  });

  it('returns an object without secrets as it is (no copy per line)', () => {
    const object = { issuer: 'https://issuer.example.com', nested: { notAfter: 'x' } };
    expect(redactSecrets(object)).toBe(object);
  });

  it('keeps a key that merely contains a secret name', () => {
    const { lines, logger } = capture();
    logger.info({ tokenLength: 812, issuer: 'https://issuer.example.com' }, 'line');
    expect(lines[0]).toMatchObject({ tokenLength: 812, issuer: 'https://issuer.example.com' });
  });
});

describe('the operational log on stdout', () => {
  beforeAll(() => ensureBuilt());

  it('keeps every line logged just before process.exit (asynchronous writes are flushed)', () => {
    const loggerJs = join(repoRoot, 'dist/services/common/logger.js');
    const script = `
      const { createLogger } = require(${JSON.stringify(loggerJs)});
      const log = createLogger('info');
      for (let i = 0; i < 2000; i++) log.info({ i }, 'line');
      process.exit(3);
    `;
    let stdout = '';
    try {
      execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    } catch (err) {
      const failed = err as { status: number; stdout: string };
      expect(failed.status).toBe(3);
      stdout = failed.stdout;
    }
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual([...Array(2000).keys()]);
  });
});
