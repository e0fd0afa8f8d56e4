import { writeFileSync } from 'node:fs';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  ensureBuilt,
  identityConfigFor,
  startMayflyProcess,
  waitFor,
  type MayflyProcess,
} from '../helpers/mayfly-process';

/**
 * The compiled service reloading its identity config: on SIGHUP, and (with the file
 * watched) when the file changes. A bad file is refused with a log line while the old
 * config keeps serving.
 */

let issuer: DevIssuer;
beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
}, 120_000);
afterAll(() => issuer.close());

async function issuerUrls(proc: MayflyProcess): Promise<string[]> {
  const res = await fetch(`${proc.url}/api/v2/configuration`);
  const body = (await res.json()) as { issuers: { issuerUrl?: string }[] };
  return body.issuers.map((i) => i.issuerUrl ?? '');
}

function withExtra(path: string, extra: string): void {
  writeFileSync(
    path,
    [
      'oidc-issuers:',
      `  ${issuer.url}:`,
      `    issuer-url: ${issuer.url}`,
      '    client-id: sigstore',
      '    type: email',
      `  ${extra}:`,
      `    issuer-url: ${extra}`,
      '    client-id: sigstore',
      '    type: kubernetes',
      '',
    ].join('\n'),
  );
}

test('SIGHUP reloads the identity config; a bad file is refused and the old one serves', async () => {
  const path = identityConfigFor(issuer);
  const proc = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: path,
    MAYFLY_IDENTITY_CONFIG_RELOAD_MS: '0',
    MAYFLY_RATELIMITS: 'off',
  });
  try {
    expect(await issuerUrls(proc)).toEqual([issuer.url]);
    withExtra(path, 'http://127.0.0.1:1');
    proc.child.kill('SIGHUP');
    await waitFor(
      () => proc.logs().some((l) => l.msg === 'identity config reloaded'),
      'the reload log line',
    );
    expect(await issuerUrls(proc)).toEqual([issuer.url, 'http://127.0.0.1:1']);

    writeFileSync(path, 'oidc-issuers:\n  https://x.example.com:\n    type: nope\n');
    proc.child.kill('SIGHUP');
    const refusal = await waitFor(
      () =>
        proc
          .logs()
          .find((l) => l.msg === 'identity config refused; the previous config keeps serving'),
      'the refusal log line',
    );
    expect(refusal.problems).toEqual([expect.stringContaining('issuer missing challenge claim')]);
    expect(await issuerUrls(proc)).toEqual([issuer.url, 'http://127.0.0.1:1']);
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 60_000);

test('a change to the watched file is picked up without a signal', async () => {
  const path = identityConfigFor(issuer);
  const proc = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: path,
    MAYFLY_RATELIMITS: 'off',
  });
  try {
    withExtra(path, 'http://127.0.0.1:2');
    await waitFor(
      () => proc.logs().some((l) => l.msg === 'identity config reloaded'),
      'the reload log line',
    );
    expect(await issuerUrls(proc)).toEqual([issuer.url, 'http://127.0.0.1:2']);
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 60_000);
