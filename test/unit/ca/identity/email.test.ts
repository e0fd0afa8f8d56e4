import { CaError } from '../../../../services/ca/common/errors';
import {
  emailIssuerType,
  evaluateIssuerClaim,
  isEmail,
} from '../../../../services/ca/identity/types/email/email';
import { ClaimError } from '../../../../services/ca/identity/types/types';
import type { OidcIssuerConfig } from '../../../../services/ca/config/identity-config';

/**
 * Fulcio refuses an address that fails govalidator.IsEmail (fulcio-reference §3). mayfly's
 * isEmail is an ASCII subset of it: it must never accept an address govalidator refuses.
 */
describe('isEmail', () => {
  it.each([
    'alice@example.com',
    'Alice.Smith+tag@sub.example.co.uk',
    "o'brien@example.ie",
    '1234@example.com',
    'a_b-c@ex-ample.com',
    "!#$%&'*+/=?^_`{|}~-@example.com",
    'user@example.c0m',
    'user@example.xn--p1ai',
    'a@b.c',
  ])('accepts %s', (address) => {
    expect(isEmail(address)).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['no @', 'alice.example.com'],
    ['no domain', 'alice@'],
    ['no local part', '@example.com'],
    ['a single-label domain', 'alice@example'],
    ['two @', 'alice@@example.com'],
    ['an empty domain label', 'alice@example..com'],
    ['a leading dot', '.alice@example.com'],
    ['a trailing dot in the local part', 'alice.@example.com'],
    ['two dots in the local part', 'al..ice@example.com'],
    ['a label starting with a hyphen', 'alice@-example.com'],
    ['a label ending with a hyphen', 'alice@example-.com'],
    ['a space', 'alice smith@example.com'],
    ['a trailing newline', 'alice@example.com\n'],
    ['angle brackets', '<alice@example.com>'],
    ['a display name', 'Alice <alice@example.com>'],
  ])('refuses an address with %s', (_what, address) => {
    expect(isEmail(address)).toBe(false);
  });

  // govalidator's top-level label must start and end with a letter.
  it.each([
    ['an all-digit top-level label (an IP address)', 'alice@192.0.2.10'],
    ['a numeric top-level label', 'alice@example.123'],
    ['a top-level label ending in a digit', 'alice@example.com1'],
    ['a top-level label starting with a hyphen', 'alice@example.-com'],
    ['a top-level label ending with a hyphen', 'alice@example.com-'],
  ])('refuses, as Fulcio does, an address with %s', (_what, address) => {
    expect(isEmail(address)).toBe(false);
  });
});

describe('evaluateIssuerClaim', () => {
  const claims = {
    iss: 'https://oauth2.sigstore.dev/auth',
    sub: 'CgYxMjM0NTYSJmh0dHBzOi8vZ2l0aHViLmNvbS9sb2dpbi9vYXV0aA',
    federated_claims: { connector_id: 'https://github.com/login/oauth', user_id: 123456 },
    verified: true,
    list: ['a'],
  };

  it('reads a nested member ($.federated_claims.connector_id)', () => {
    expect(evaluateIssuerClaim(claims, '$.federated_claims.connector_id')).toBe(
      'https://github.com/login/oauth',
    );
  });

  it('reads a top-level member', () => {
    expect(evaluateIssuerClaim(claims, '$.iss')).toBe('https://oauth2.sigstore.dev/auth');
  });

  it('formats numbers and booleans as text', () => {
    expect(evaluateIssuerClaim(claims, '$.federated_claims.user_id')).toBe('123456');
    expect(evaluateIssuerClaim(claims, '$.verified')).toBe('true');
  });

  it.each([
    ['a missing member', '$.federated_claims.missing'],
    ['a missing parent', '$.nothing.connector_id'],
    ['a path through a string', '$.iss.length'],
    ['a path through an array', '$.list.0'],
    ['an index past the end', '$.list[1]'],
    ['an index into an object', '$.federated_claims[0]'],
  ])('refuses %s', (_what, path) => {
    expect(() => evaluateIssuerClaim(claims, path)).toThrow(ClaimError);
  });

  it('prints objects, arrays, null and large numbers as Go prints them (%v)', () => {
    expect(evaluateIssuerClaim(claims, '$.federated_claims')).toBe(
      'map[connector_id:https://github.com/login/oauth user_id:123456]',
    );
    expect(evaluateIssuerClaim(claims, '$.list')).toBe('[a]');
    expect(evaluateIssuerClaim({ a: null }, '$.a')).toBe('<nil>');
    expect(evaluateIssuerClaim({ a: 1000000 }, '$.a')).toBe('1e+06');
  });

  it("reads bracketed member names and array indices ($['a'], $.a[0])", () => {
    expect(evaluateIssuerClaim(claims, "$['federated_claims']['connector_id']")).toBe(
      'https://github.com/login/oauth',
    );
    expect(evaluateIssuerClaim(claims, '$["federated_claims"].connector_id')).toBe(
      'https://github.com/login/oauth',
    );
    expect(evaluateIssuerClaim(claims, '$.list[0]')).toBe('a');
  });

  it.each([['$'], ['federated_claims.connector_id'], ['$..connector_id'], ['$.*'], ['']])(
    'refuses the unsupported path %j',
    (path) => {
      expect(() => evaluateIssuerClaim(claims, path)).toThrow('unsupported issuer claim path');
    },
  );

  it('does not read inherited members', () => {
    expect(() => evaluateIssuerClaim({}, '$.constructor')).toThrow(ClaimError);
    expect(() => evaluateIssuerClaim({ a: {} }, '$.a.__proto__')).toThrow(ClaimError);
  });
});

describe('emailIssuerType.principal', () => {
  const config: OidcIssuerConfig = {
    issuerUrl: 'https://issuer.example.com',
    clientId: 'sigstore',
    type: 'email',
    ciProvider: '',
    issuerClaim: '',
    subjectDomain: '',
    spiffeTrustDomain: '',
    challengeClaim: '',
    description: '',
    contact: '',
    environment: '',
    caCert: '',
    skipEmailVerification: false,
  };
  const claims = {
    iss: 'https://issuer.example.com',
    sub: 'user-1',
    email: 'alice@example.com',
    email_verified: true,
  };

  it('checks email_verified before the address, as Fulcio does', () => {
    expect(() =>
      emailIssuerType.principal({ ...claims, email: 'bad', email_verified: false }, config),
    ).toThrow('email_verified claim was false');
  });

  it('leaves 1.24 out when the token has no sub', () => {
    const { sub: _sub, ...withoutSub } = claims;
    const principal = emailIssuerType.principal(withoutSub, config);
    expect(principal.certificateIdentity().extensions.map((e) => e.oid)).toEqual([
      '1.3.6.1.4.1.57264.1.1',
      '1.3.6.1.4.1.57264.1.8',
    ]);
  });

  it('refuses, when the certificate identity is built, an IssuerClaim that resolves to ""', () => {
    const principal = emailIssuerType.principal(
      { ...claims, federated_claims: { connector_id: '' } },
      { ...config, issuerClaim: '$.federated_claims.connector_id' },
    );
    let caught: unknown;
    try {
      principal.certificateIdentity();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CaError);
    expect((caught as CaError).code).toBe('identity_validation');
    expect((caught as CaError).clientMessage).toBe('extensions must have a non-empty issuer url');
  });
});
