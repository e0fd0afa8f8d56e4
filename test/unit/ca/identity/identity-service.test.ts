import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ManualClock } from '../../../../services/common/clock';
import { createLogger, silentLogger } from '../../../../services/common/logger';
import { IdentityConfigError } from '../../../../services/ca/config/identity-config';
import {
  IdentityService,
  type IdentityServiceOptions,
  type ReloadResult,
} from '../../../../services/ca/identity/identity-service';
import { startDevIssuer, type DevIssuer } from '../../../../services/dev-issuer/dev-issuer';

/**
 * Hot reload of the identity config: the file is re-read on SIGHUP (reload()) and when
 * its folder changes (a ConfigMap swaps `..data`); a good file replaces the pool at once,
 * a bad one is refused with a log line and the old config keeps serving.
 */

const T = 1_900_000_000;
const clock = new ManualClock(new Date(T * 1000));

let issuer: DevIssuer;
let dir: string;
let count = 0;

beforeAll(async () => {
  issuer = await startDevIssuer();
  dir = mkdtempSync(join(tmpdir(), 'mayfly-identity-'));
});

afterAll(async () => {
  await issuer.close();
  rmSync(dir, { recursive: true, force: true });
});

function yaml(issuers: Record<string, string>): string {
  return [
    'oidc-issuers:',
    ...Object.entries(issuers).flatMap(([url, type]) => [
      `  ${url}:`,
      `    issuer-url: ${url}`,
      '    client-id: sigstore',
      `    type: ${type}`,
      ...(type === 'username' ? ['    subject-domain: 127.0.0.1'] : []),
    ]),
    '',
  ].join('\n');
}

const BAD = 'oidc-issuers:\n  https://x.example.com:\n    client-id: sigstore\n    type: nope\n';

function folder(): string {
  const path = join(dir, `case-${++count}`);
  mkdirSync(path);
  return path;
}

function service(path: string, options: Partial<IdentityServiceOptions> = {}): IdentityService {
  return new IdentityService(undefined, {
    path,
    discoveryTimeoutMs: 5000,
    jwksCooldownMs: 0,
    discoveryRetryMs: 0,
    maxTokenBytes: 32768,
    clock,
    logger: silentLogger,
    debounceMs: 10,
    ...options,
  });
}

function emailToken(): Promise<string> {
  return issuer.mint(
    { exp: T + 300, sub: 'u1', email: 'alice@example.com', email_verified: true },
    { omitExp: true },
  );
}

function types(s: IdentityService): string[] {
  return s.describe().map((d) => d.issuerType);
}

describe('IdentityService.reload (SIGHUP)', () => {
  it('refuses to start on a bad file', () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, BAD);
    expect(() => service(path)).toThrow(IdentityConfigError);
  });

  it('swaps in a good new file: /api/v2/configuration changes', async () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({ [issuer.url]: 'email' }));
    const s = service(path);
    expect(types(s)).toEqual(['email']);
    await s.authenticate(await emailToken());
    writeFileSync(path, yaml({ [issuer.url]: 'username' }));
    expect(s.reload('sighup')).toBe('reloaded');
    expect(types(s)).toEqual(['username']);
    // The dev issuer's tokens are now read as usernames.
    const principal = await s.authenticate(await emailToken());
    expect(principal.certificateIdentity().san).toEqual({
      type: 'otherName',
      value: 'u1!127.0.0.1',
    });
  });

  it('refuses a bad new file with a log line, and the old config keeps serving', async () => {
    const lines: string[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({ [issuer.url]: 'email' }));
    const s = service(path, { logger });
    writeFileSync(path, BAD);
    expect(s.reload('sighup')).toBe('refused');
    expect(types(s)).toEqual(['email']);
    expect((await s.authenticate(await emailToken())).name).toBe('alice@example.com');
    const refusal = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => String(l.msg).includes('identity config refused'));
    expect(refusal?.problems).toEqual([expect.stringContaining('issuer missing challenge claim')]);
  });

  it('refuses a bad file once: the timer does not log it again, SIGHUP does', () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({ [issuer.url]: 'email' }));
    const s = service(path);
    writeFileSync(path, BAD);
    expect(s.reload('timer')).toBe('refused');
    expect(s.reload('timer')).toBe('unchanged');
    expect(s.reload('sighup')).toBe('refused');
    writeFileSync(path, yaml({ [issuer.url]: 'username' }));
    expect(s.reload('timer')).toBe('reloaded');
  });

  it('says unchanged when a timer or watch finds the same file', () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({ [issuer.url]: 'email' }));
    const s = service(path);
    expect(s.reload('timer')).toBe('unchanged');
  });

  it('keeps the verifiers of unchanged issuers: no new discovery after a reload', async () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({ [issuer.url]: 'email' }));
    const s = service(path);
    await s.authenticate(await emailToken());
    const before = { ...issuer.requests };
    writeFileSync(path, yaml({ [issuer.url]: 'email', 'http://127.0.0.1:1': 'email' }));
    expect(s.reload('sighup')).toBe('reloaded');
    await s.warmUp().catch(() => undefined);
    await s.authenticate(await emailToken());
    expect(issuer.requests).toEqual(before);
  });

  it('applies its transform to every config it reads', () => {
    const path = join(folder(), 'identity.yaml');
    writeFileSync(path, yaml({}));
    const s = service(path, {
      transform: (config) => ({
        ...config,
        oidcIssuers: new Map([[issuer.url, issuer.issuerConfig]]),
      }),
    });
    expect(types(s)).toEqual(['email']);
    writeFileSync(path, yaml({ 'https://x.example.com': 'kubernetes' }));
    s.reload('sighup');
    expect(types(s)).toEqual(['email']);
  });
});

/** A folder laid out like a mounted ConfigMap: identity.yaml → ..data/identity.yaml. */
class ConfigMapVolume {
  private generation = 0;
  constructor(readonly dir: string) {}

  get path(): string {
    return join(this.dir, 'identity.yaml');
  }

  publish(text: string): void {
    const name = `..gen_${++this.generation}`;
    mkdirSync(join(this.dir, name));
    writeFileSync(join(this.dir, name, 'identity.yaml'), text);
    const tmp = join(this.dir, '..data_tmp');
    symlinkSync(name, tmp);
    renameSync(tmp, join(this.dir, '..data'));
    if (this.generation === 1) symlinkSync(join('..data', 'identity.yaml'), this.path);
  }
}

describe('IdentityService watching a ConfigMap volume', () => {
  function nextReload(results: ReloadResult[], want: ReloadResult): Promise<void> {
    return new Promise((resolve) => {
      const check = setInterval(() => {
        if (results.includes(want)) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
  }

  it('reloads when the ConfigMap is updated, and refuses a bad update', async () => {
    const volume = new ConfigMapVolume(folder());
    volume.publish(yaml({ [issuer.url]: 'email' }));
    const results: ReloadResult[] = [];
    const s = service(volume.path, {
      reloadIntervalMs: 50,
      onReload: (result) => results.push(result),
    });
    s.start();
    try {
      volume.publish(yaml({ [issuer.url]: 'username' }));
      await nextReload(results, 'reloaded');
      expect(types(s)).toEqual(['username']);

      volume.publish(BAD);
      await nextReload(results, 'refused');
      expect(types(s)).toEqual(['username']);
    } finally {
      s.close();
    }
  });
});
