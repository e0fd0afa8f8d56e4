import { Metadata } from '@grpc/grpc-js';
import { peerAddress } from '../../../../services/ca/grpc/call-context';
import { keyOf, tokenOf } from '../../../../services/ca/grpc/fulcio-service';
import { codeName, statusOf } from '../../../../services/ca/grpc/observe';
import { CaError, ERROR_TABLE, type CaErrorCode } from '../../../../services/ca/common/errors';

describe('peerAddress', () => {
  test.each([
    ['127.0.0.1:5678', '127.0.0.1'],
    ['ipv4:192.0.2.1:443', '192.0.2.1'],
    ['[::1]:5678', '::1'],
    ['ipv6:[2001:db8::1]:80', '2001:db8::1'],
    ['[::ffff:192.0.2.1]:1', '::ffff:192.0.2.1'],
  ])('%s is %s', (peer, address) => {
    expect(peerAddress(peer)).toBe(address);
  });
});

describe('tokenOf (Fulcio: the field, else exactly one oidcidentitytoken value)', () => {
  const md = (...values: string[]) => {
    const m = new Metadata();
    for (const v of values) m.add('oidcidentitytoken', v);
    return m;
  };
  test('the field wins', () => {
    expect(tokenOf({ credentials: { oidcIdentityToken: 'body' } }, md('meta'))).toBe('body');
  });
  test('an empty field falls back to the metadata', () => {
    expect(tokenOf({ credentials: { oidcIdentityToken: '' } }, md('meta'))).toBe('meta');
    expect(tokenOf({}, md('meta'))).toBe('meta');
  });
  test('zero or two metadata values are no token', () => {
    expect(tokenOf({}, md())).toBe('');
    expect(tokenOf({}, md('a', 'b'))).toBe('');
  });
  test('authorization is not read', () => {
    const m = new Metadata();
    m.set('authorization', 'Bearer x.y.z');
    expect(tokenOf({}, m)).toBe('');
  });
});

describe('keyOf (Fulcio: a non-empty CSR wins, else the public key request)', () => {
  test('a CSR is raw PEM bytes', () => {
    expect(keyOf({ certificateSigningRequest: Buffer.from('-----BEGIN') })).toEqual({
      kind: 'csr',
      pem: '-----BEGIN',
    });
  });
  test('an empty CSR falls through to the public key request', () => {
    expect(
      keyOf({
        certificateSigningRequest: Buffer.alloc(0),
        publicKeyRequest: { publicKey: { content: 'PEM' }, proofOfPossession: Buffer.from('p') },
      }),
    ).toEqual({ kind: 'publicKey', content: 'PEM', proof: Buffer.from('p') });
  });
  test('an empty public key request is an empty key; no key at all is undefined', () => {
    expect(keyOf({ publicKeyRequest: {} })).toEqual({
      kind: 'publicKey',
      content: '',
      proof: Buffer.alloc(0),
    });
    expect(keyOf({})).toBeUndefined();
  });
});

describe('statusOf: every row of the one error table', () => {
  test.each(Object.keys(ERROR_TABLE) as CaErrorCode[])('%s', (code) => {
    const error = new CaError(code, 'secret detail 0xdeadbeef', { clientMessage: 'safe' });
    const status = statusOf(error);
    expect(status.code).toBe(ERROR_TABLE[code].grpcCode);
    expect(status.details).toBe(ERROR_TABLE[code].message ?? 'safe');
    expect(JSON.stringify(status)).not.toContain('deadbeef');
    expect(codeName(status.code!)).toMatch(/^[A-Z][A-Za-z]+$/);
  });
  test('Retry-After travels as trailing metadata', () => {
    const status = statusOf(new CaError('rate_limited', 'x', { retryAfterSeconds: 7 }));
    expect(status.metadata?.get('retry-after')).toEqual(['7']);
  });
});
