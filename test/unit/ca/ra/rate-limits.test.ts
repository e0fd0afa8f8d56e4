import {
  LIMIT,
  clientId,
  identityId,
  normalizeLimitId,
} from '../../../../services/ca/ra/rate-limits';

describe('clientId (the per-client-ip bucket of an address)', () => {
  test.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::ffff:c000:201', '192.0.2.1'],
    ['2001:db8:1:2ab::1', '2001:db8:1:200::/56'],
    ['2001:db8:1:2ff:ffff:ffff:ffff:ffff', '2001:db8:1:200::/56'],
    ['2001:0DB8:0001:02AB:0:0:0:1', '2001:db8:1:200::/56'],
    ['::1', '0:0:0:0::/56'],
    ['fe80::1%eth0', 'fe80:0:0:0::/56'],
    ['2001:db8::192.0.2.1', '2001:db8:0:0::/56'],
  ])('%s -> %s', (address, id) => {
    expect(clientId(address)).toBe(id);
  });

  test('addresses in different /56 prefixes are different clients', () => {
    expect(clientId('2001:db8:1:200::1')).not.toBe(clientId('2001:db8:1:300::1'));
  });

  test('no address, or garbage, shares one bucket', () => {
    expect(clientId(undefined)).toBe('unknown');
    expect(clientId('not an address')).toBe('unknown');
  });
});

describe('identityId', () => {
  test('joins issuer and subject with a space (issuer URLs have none)', () => {
    expect(identityId('https://issuer.example', 'repo:a b')).toBe(
      'https://issuer.example repo:a b',
    );
  });
});

describe('normalizeLimitId (override ids in the limits file)', () => {
  test('maps IPv6 addresses and /56 prefixes onto the bucket id', () => {
    expect(normalizeLimitId(LIMIT.clientIp, '2001:db8:1:2ab::7')).toBe('2001:db8:1:200::/56');
    expect(normalizeLimitId(LIMIT.clientIp, '2001:db8:1:200::/56')).toBe('2001:db8:1:200::/56');
    expect(normalizeLimitId(LIMIT.clientIp, '198.51.100.7')).toBe('198.51.100.7');
  });

  test.each(['203.0.113.0/24', '2001:db8::/48', 'example.com', ''])(
    'refuses %j for per-client-ip',
    (id) => {
      expect(() => normalizeLimitId(LIMIT.clientIp, id)).toThrow(/not an IPv4 address/);
    },
  );

  test('leaves other limits’ ids as written', () => {
    expect(normalizeLimitId(LIMIT.identity, 'https://i.example sub')).toBe('https://i.example sub');
  });
});
