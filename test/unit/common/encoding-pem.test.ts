import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { encodePem } from '../../../services/common/encoding';
import { makeTestCa } from '../../helpers/ca-files';

/**
 * encodePem against OpenSSL's PEM writer (node:crypto's X509Certificate and KeyObject
 * exports), and against the regex split it replaced, for every length around a line's end.
 */

function regexPem(type: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}

describe('encodePem', () => {
  it('writes a certificate as OpenSSL does', async () => {
    const ca = await makeTestCa();
    for (const certificate of [ca.issuing, ca.root])
      expect(encodePem('CERTIFICATE', certificate.raw)).toBe(certificate.toString());
  });

  it('writes public keys as OpenSSL does', () => {
    for (const options of [
      { type: 'ec', namedCurve: 'P-256' },
      { type: 'ec', namedCurve: 'P-521' },
      { type: 'rsa', modulusLength: 2048 },
    ] as const) {
      const { publicKey } =
        options.type === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: options.namedCurve })
          : generateKeyPairSync('rsa', { modulusLength: options.modulusLength });
      const der = publicKey.export({ type: 'spki', format: 'der' });
      expect(encodePem('PUBLIC KEY', der)).toBe(publicKey.export({ type: 'spki', format: 'pem' }));
    }
  });

  it('matches the regex split for every length from 0 to 200 bytes', () => {
    for (let n = 0; n <= 200; n++) {
      const der = randomBytes(n);
      expect(encodePem('X', der)).toBe(regexPem('X', der));
    }
  });
});
