import { randomUUID } from 'node:crypto';
import type { DevAlgorithm, JwksMode } from '../../../services/dev-issuer/dev-issuer';
import { startTestCa, type TestCa, type TestCaOptions } from '../../helpers/mayfly';
import { ROOMY, metricValue, writeLimits } from '../../helpers/ratelimit';
import {
  TOKEN_ERROR,
  VERSIONS,
  issuedStatus,
  requestCertificate,
  type Answer,
  type ApiVersion,
} from './client';
import { until } from '../../helpers/wait';

/**
 * The OIDC issuer's endpoints fail while mayfly runs: a real mayfly (over HTTP on
 * 127.0.0.1) and the real dev issuer serving discovery and the JWKS, whose endpoints are
 * switched to down, slow, garbage or rotated keys. Keys already cached keep verifying
 * through every JWKS fault; a token naming a key mayfly has not seen gets Fulcio's token
 * error (400, code 3) quickly, never a 5xx, and never waits longer than the configured
 * fetch timeout; the cooldown bounds how often a flood of unknown kids reaches the issuer.
 */

const EMAIL = 'faults@example.com';
/** The fetch timeout these tests configure (MAYFLY_OIDC_DISCOVERY_TIMEOUT_MS). */
const FETCH_TIMEOUT_MS = 1000;
/** What a request may take beyond the fetch timeout: the signing request's own work. */
const SLACK_MS = 1000;

/** Limits that never get in the way (the tests send a few hundred requests from one IP). */
const ROOMY_LIMITS = writeLimits({
  defaults: { 'per-client-ip': ROOMY, 'per-identity': ROOMY, 'per-issuer': ROOMY },
});

async function startCa(env: Record<string, string>, extra: TestCaOptions = {}): Promise<TestCa> {
  const ca = await startTestCa({
    ...extra,
    env: {
      MAYFLY_RATELIMITS: ROOMY_LIMITS,
      MAYFLY_OIDC_DISCOVERY_TIMEOUT_MS: String(FETCH_TIMEOUT_MS),
      ...env,
    },
  });
  await ca.listen();
  return ca;
}

/** Tokens of the issuer's current keys, each used once so that mayfly has cached its key. */
async function cachedTokens(ca: TestCa): Promise<string[]> {
  const tokens: string[] = [];
  for (const alg of ['ES256', 'RS256'] as DevAlgorithm[]) {
    const token = await ca.issuer.mintEmail(EMAIL, { alg });
    expectIssued(await requestCertificate(ca.url, token, 'v2', EMAIL), 'v2');
    tokens.push(token);
  }
  return tokens;
}

/** A token whose header names a key the issuer has never published. */
function uncachedKidToken(ca: TestCa): Promise<string> {
  return ca.issuer.mintEmail(EMAIL, { kid: `unpublished-${randomUUID()}` });
}

function expectIssued(answer: Answer, version: ApiVersion): void {
  expect({ status: answer.status, certificates: answer.certificates }).toEqual({
    status: issuedStatus(version),
    certificates: 3,
  });
}

function expectTokenRefused(answer: Answer): void {
  expect({ status: answer.status, text: answer.text }).toEqual({ status: 400, text: TOKEN_ERROR });
  expect(answer.certificates).toBe(0);
}

function jwksFetches(ca: TestCa, result: 'ok' | 'error' | 'timeout'): Promise<number> {
  return metricValue(ca, 'mayfly_oidc_fetch_duration_seconds_count', {
    document: 'jwks',
    result,
  });
}

describe('JWKS endpoint down', () => {
  let ca: TestCa;
  beforeAll(async () => {
    // No cooldown: every unknown kid goes to the endpoint, so the fault is really met.
    ca = await startCa({ MAYFLY_OIDC_JWKS_COOLDOWN_MS: '0' });
  });
  afterAll(() => ca.close());

  const outages: [string, () => Promise<void>, () => Promise<void>][] = [
    [
      'answers 503',
      async () => ca.issuer.setJwksMode('down'),
      async () => ca.issuer.setJwksMode('normal'),
    ],
    ['refuses connections', () => ca.issuer.stopListening(), () => ca.issuer.listenAgain()],
  ];

  test.each(outages)(
    'while it %s, cached keys keep issuing, a new key is refused at once with the token error, and the new key is taken once it is back',
    async (_name, breakIt, mendIt) => {
      const cached = await cachedTokens(ca);
      await breakIt();
      await ca.issuer.rotateKeys();
      const fresh = await ca.issuer.mintEmail(EMAIL);
      const signs = ca.signCount();
      const errorsBefore = await jwksFetches(ca, 'error');

      for (const version of VERSIONS) {
        for (const token of cached)
          expectIssued(await requestCertificate(ca.url, token, version, EMAIL), version);
        const refused = await requestCertificate(ca.url, fresh, version, EMAIL);
        expectTokenRefused(refused);
        expect(refused.ms).toBeLessThan(FETCH_TIMEOUT_MS);
      }
      expect(ca.signCount()).toBe(signs + 2 * cached.length);
      // mayfly did try the endpoint, and the failure shows in its metrics.
      expect(await jwksFetches(ca, 'error')).toBeGreaterThanOrEqual(errorsBefore + 2);

      await mendIt();
      for (const version of VERSIONS)
        expectIssued(await requestCertificate(ca.url, fresh, version, EMAIL), version);
      // The refetched JWKS no longer has the rotated-out keys.
      expectTokenRefused(await requestCertificate(ca.url, cached[0]!, 'v2', EMAIL));
    },
  );
});

describe('JWKS endpoint slower than the fetch timeout', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startCa(
      { MAYFLY_OIDC_JWKS_COOLDOWN_MS: '0' },
      // Held ten times longer than mayfly waits.
      { issuerOptions: { jwksDelayMs: 10 * FETCH_TIMEOUT_MS } },
    );
  });
  afterAll(() => ca.close());

  const slowModes: [string, JwksMode][] = [
    ['answers late', 'slow'],
    ['stalls in the middle of its body', 'stall'],
  ];

  test.each(slowModes)(
    'when it %s, an unknown kid is refused within the fetch timeout while cached keys keep issuing meanwhile',
    async (_name, mode) => {
      const timeout = ca.config.oidc.discoveryTimeoutMs;
      const [cached] = await cachedTokens(ca);
      ca.issuer.setJwksMode(mode);
      const timeoutsBefore = await jwksFetches(ca, 'timeout');
      const fetchesBefore = ca.issuer.requests.jwks;
      let slowDone = false;
      const slow = requestCertificate(ca.url, await uncachedKidToken(ca), 'v2', EMAIL).finally(
        () => (slowDone = true),
      );
      await until(() => ca.issuer.requests.jwks > fetchesBefore, 'the JWKS fetch to start');

      const meanwhile: Answer[] = [];
      for (const version of [...VERSIONS, ...VERSIONS]) {
        const answer = await requestCertificate(ca.url, cached!, version, EMAIL);
        expectIssued(answer, version);
        expect(slowDone).toBe(false);
        meanwhile.push(answer);
      }
      for (const answer of meanwhile) expect(answer.ms).toBeLessThan(timeout);

      const refused = await slow;
      expectTokenRefused(refused);
      expect(refused.ms).toBeGreaterThanOrEqual(timeout * 0.9);
      expect(refused.ms).toBeLessThan(timeout + SLACK_MS);
      expect(await jwksFetches(ca, 'timeout')).toBe(timeoutsBefore + 1);

      ca.issuer.setJwksMode('normal');
      await ca.issuer.rotateKeys();
      expectIssued(
        await requestCertificate(ca.url, await ca.issuer.mintEmail(EMAIL), 'v1', EMAIL),
        'v1',
      );
    },
  );

  test('twenty concurrent unknown kids share one slow fetch and are all refused within the fetch timeout', async () => {
    const timeout = ca.config.oidc.discoveryTimeoutMs;
    await cachedTokens(ca);
    ca.issuer.setJwksMode('slow');
    const before = ca.issuer.requests.jwks;
    const tokens = await Promise.all(Array.from({ length: 20 }, () => uncachedKidToken(ca)));
    const answers = await Promise.all(
      tokens.map((token, i) => requestCertificate(ca.url, token, VERSIONS[i % 2]!, EMAIL)),
    );
    for (const answer of answers) {
      expectTokenRefused(answer);
      expect(answer.ms).toBeLessThan(timeout + SLACK_MS);
    }
    expect(ca.issuer.requests.jwks - before).toBe(1);
    ca.issuer.setJwksMode('normal');
  });
});

describe('JWKS endpoint answering garbage', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startCa({ MAYFLY_OIDC_JWKS_COOLDOWN_MS: '0' });
  });
  afterAll(() => ca.close());

  const garbage: [string, JwksMode][] = [
    ['a body that is not JSON', 'garbage'],
    ['JSON without keys', 'no-keys'],
    ['a key list of junk', 'junk-keys'],
  ];

  test.each(garbage)(
    'with %s, an unknown kid gets the token error (no 5xx) and cached keys keep issuing',
    async (_name, mode) => {
      const cached = await cachedTokens(ca);
      ca.issuer.setJwksMode(mode);
      const signs = ca.signCount();
      for (const version of VERSIONS) {
        expectTokenRefused(
          await requestCertificate(ca.url, await uncachedKidToken(ca), version, EMAIL),
        );
        for (const token of cached)
          expectIssued(await requestCertificate(ca.url, token, version, EMAIL), version);
      }
      expect(ca.signCount()).toBe(signs + 2 * cached.length);

      ca.issuer.setJwksMode('normal');
      await ca.issuer.rotateKeys();
      expectIssued(
        await requestCertificate(ca.url, await ca.issuer.mintEmail(EMAIL), 'v2', EMAIL),
        'v2',
      );
    },
  );
});

describe('key rotation and the refetch cooldown', () => {
  const COOLDOWN_MS = 1500;
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startCa({ MAYFLY_OIDC_JWKS_COOLDOWN_MS: String(COOLDOWN_MS) });
  });
  afterAll(() => ca.close());

  test('after the issuer rotates its keys, the new key is taken at the first refetch the cooldown allows and the old key is refused', async () => {
    const cooldown = ca.config.oidc.jwksCooldownMs;
    const [old] = await cachedTokens(ca);
    await ca.issuer.rotateKeys();
    const rotatedAt = Date.now();
    const fresh = await ca.issuer.mintEmail(EMAIL);
    const before = ca.issuer.requests.jwks;

    let answer = await requestCertificate(ca.url, fresh, 'v2', EMAIL);
    // Inside the cooldown of the fetch cachedTokens made: refused without asking the issuer.
    expectTokenRefused(answer);
    expect(ca.issuer.requests.jwks).toBe(before);
    await until(async () => {
      answer = await requestCertificate(ca.url, fresh, 'v2', EMAIL);
      return answer.status !== 400;
    }, 'the new key to be accepted');
    expectIssued(answer, 'v2');
    expect(Date.now() - rotatedAt).toBeLessThan(cooldown + SLACK_MS);
    expect(ca.issuer.requests.jwks - before).toBe(1);
    expectIssued(await requestCertificate(ca.url, fresh, 'v1', EMAIL), 'v1');

    for (const version of VERSIONS)
      expectTokenRefused(await requestCertificate(ca.url, old!, version, EMAIL));
  });

  test('a flood of unknown kids makes at most one JWKS request per cooldown period, and the current key keeps issuing', async () => {
    const cooldown = ca.config.oidc.jwksCooldownMs;
    const before = ca.issuer.requests.jwks;
    const started = Date.now();
    const answers: Answer[] = [];
    while (Date.now() - started < 2.5 * cooldown) {
      const tokens = await Promise.all(Array.from({ length: 10 }, () => uncachedKidToken(ca)));
      answers.push(
        ...(await Promise.all(
          tokens.map((token, i) => requestCertificate(ca.url, token, VERSIONS[i % 2]!, EMAIL)),
        )),
      );
    }
    const elapsed = Date.now() - started;
    for (const answer of answers) expectTokenRefused(answer);
    const fetches = ca.issuer.requests.jwks - before;
    expect(answers.length).toBeGreaterThan(50);
    expect(fetches).toBeGreaterThanOrEqual(1);
    expect(fetches).toBeLessThanOrEqual(Math.ceil(elapsed / cooldown) + 1);
    for (const version of VERSIONS) {
      const token = await ca.issuer.mintEmail(EMAIL);
      expectIssued(await requestCertificate(ca.url, token, version, EMAIL), version);
    }
  });
});

describe('discovery down when mayfly starts', () => {
  const outages: [string, (ca: TestCa) => Promise<void>, (ca: TestCa) => Promise<void>][] = [
    [
      'answers 503',
      async (ca) => ca.issuer.setDiscoveryMode('down'),
      async (ca) => ca.issuer.setDiscoveryMode('normal'),
    ],
    ['refuses connections', (ca) => ca.issuer.stopListening(), (ca) => ca.issuer.listenAgain()],
  ];

  test.each(outages)(
    'when the issuer %s, warm-up survives, tokens get the token error at once, and the first token after it is back issues',
    async (_name, breakIt, mendIt) => {
      const ca = await startCa({});
      try {
        await breakIt(ca);
        // What main does at start: discovery for every issuer, failures only logged.
        await expect(ca.app.identity.warmUp()).resolves.toBeUndefined();
        const token = await ca.issuer.mintEmail(EMAIL);
        for (const version of VERSIONS) {
          const refused = await requestCertificate(ca.url, token, version, EMAIL);
          expectTokenRefused(refused);
          expect(refused.ms).toBeLessThan(FETCH_TIMEOUT_MS);
        }
        expect(ca.signCount()).toBe(0);
        expect(
          await metricValue(ca, 'mayfly_token_verification_failures_total', {
            reason: 'discovery',
          }),
        ).toBe(2);

        await mendIt(ca);
        for (const version of VERSIONS)
          expectIssued(await requestCertificate(ca.url, token, version, EMAIL), version);
      } finally {
        await ca.close();
      }
    },
  );

  test('after a failed discovery, tokens inside the retry window are refused without asking the issuer again', async () => {
    const ca = await startCa({}, { overrides: { discoveryRetryMs: 1000 } });
    try {
      ca.issuer.setDiscoveryMode('down');
      const token = await ca.issuer.mintEmail(EMAIL);
      expectTokenRefused(await requestCertificate(ca.url, token, 'v2', EMAIL));
      const asked = ca.issuer.requests.discovery;
      for (let i = 0; i < 10; i++)
        expectTokenRefused(await requestCertificate(ca.url, token, 'v1', EMAIL));
      expect(ca.issuer.requests.discovery).toBe(asked);

      ca.issuer.setDiscoveryMode('normal');
      await until(
        async () => (await requestCertificate(ca.url, token, 'v2', EMAIL)).status === 200,
        'discovery to be retried',
        5000,
      );
    } finally {
      await ca.close();
    }
  });
});
