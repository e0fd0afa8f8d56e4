import { readUnverifiedIssuer } from '../../../../services/ca/identity/token';
import { startDevIssuer, type DevIssuer } from '../../../../services/dev-issuer/dev-issuer';

const MAX = 32768;
let issuer: DevIssuer;
let token: string;

beforeAll(async () => {
  issuer = await startDevIssuer();
  token = await issuer.mintEmail('alice@example.com');
});

afterAll(async () => {
  await issuer.close();
});

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** A token whose payload part is exactly `payload` (header and signature are placeholders). */
function withPayloadPart(payload: string): string {
  return `${b64url('{"alg":"ES256"}')}.${payload}.c2ln`;
}

function reasonOf(candidate: string, max = MAX): string {
  const result = readUnverifiedIssuer(candidate, max);
  expect(result.ok).toBe(false);
  return result.ok ? '' : result.reason;
}

describe('readUnverifiedIssuer', () => {
  it('reads the issuer of a real minted token', () => {
    expect(readUnverifiedIssuer(token, MAX)).toEqual({ ok: true, issuer: issuer.url });
  });

  it('reads the issuer of an RS256 token', async () => {
    const rs = await issuer.mintEmail('alice@example.com', { alg: 'RS256' });
    expect(readUnverifiedIssuer(rs, MAX)).toEqual({ ok: true, issuer: issuer.url });
  });

  it('does not check the signature (it only routes)', () => {
    const [header, payload] = token.split('.');
    expect(readUnverifiedIssuer(`${header}.${payload}.AAAA`, MAX)).toEqual({
      ok: true,
      issuer: issuer.url,
    });
  });

  it('refuses an empty token', () => {
    expect(reasonOf('')).toBe('token missing');
  });

  it('refuses a token of two parts', () => {
    const [header, payload] = token.split('.');
    expect(reasonOf(`${header}.${payload}`)).toBe('token has 2 parts, want 3');
  });

  it('refuses a token of four parts', () => {
    expect(reasonOf(`${token}.AAAA`)).toBe('token has 4 parts, want 3');
  });

  it('refuses a token of 10,000 dots without splitting it', () => {
    const dots = '.'.repeat(10_000);
    const split = jest.spyOn(String.prototype, 'split');
    try {
      expect(reasonOf(dots)).toBe('token has 10001 parts, want 3');
      expect(split).not.toHaveBeenCalled();
    } finally {
      split.mockRestore();
    }
  });

  it('refuses a token longer than maxTokenBytes before looking inside it', () => {
    expect(reasonOf(token, token.length - 1)).toBe(`token longer than ${token.length - 1} bytes`);
    expect(readUnverifiedIssuer(token, token.length)).toEqual({ ok: true, issuer: issuer.url });
  });

  it('refuses a padded base64 payload (Go RawURLEncoding)', () => {
    const payload = Buffer.from(JSON.stringify({ iss: 'https://a.example.com/xy' })).toString(
      'base64url',
    );
    expect(payload.length % 4).not.toBe(0);
    const padded = payload + '='.repeat(4 - (payload.length % 4));
    expect(readUnverifiedIssuer(withPayloadPart(payload), MAX)).toEqual({
      ok: true,
      issuer: 'https://a.example.com/xy',
    });
    expect(reasonOf(withPayloadPart(padded))).toBe('token payload is not RawURL base64');
  });

  it('refuses a payload in the standard base64 alphabet', () => {
    // '>>>?' encodes to 'Pj4+Pw' in standard base64 and 'Pj4-Pw' in base64url.
    const standard = Buffer.from('{"iss":">>>?"}').toString('base64').replace(/=+$/, '');
    expect(standard).toMatch(/[+/]/);
    expect(reasonOf(withPayloadPart(standard))).toBe('token payload is not RawURL base64');
  });

  it('refuses a payload that is not JSON', () => {
    expect(reasonOf(withPayloadPart(b64url('iss=https://a.example.com')))).toBe(
      'token payload is not JSON',
    );
  });

  it('refuses a payload that is a JSON array', () => {
    expect(reasonOf(withPayloadPart(b64url('[{"iss":"https://a.example.com"}]')))).toBe(
      'token payload is not a JSON object',
    );
  });

  it.each([
    ['missing', {}],
    ['a number', { iss: 42 }],
    ['null', { iss: null }],
    ['an array', { iss: ['https://a.example.com'] }],
    ['empty', { iss: '' }],
  ])('refuses a payload whose iss is %s', (_what, claims) => {
    expect(reasonOf(withPayloadPart(b64url(JSON.stringify(claims))))).toBe(
      'token has no iss claim',
    );
  });
});
