/**
 * `npm run demo`: starts mayfly with the development OIDC issuer, mints a token, makes a
 * key, asks for a certificate over the v2 API and prints it decoded. Everything runs on
 * 127.0.0.1 and stops when the demo ends.
 */
import { X509Certificate, generateKeyPairSync, sign } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { createApp, listen } from '../services/ca/app';
import { createLogger } from '../services/common/logger';
import { loadIdentityConfig } from '../services/ca/identity/identity-config';
import { loadServerConfig } from '../services/ca/config/loader';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';

const FULCIO_NAMES: Record<string, string> = {
  '1.3.6.1.4.1.57264.1.1': 'Issuer (v1, raw)',
  '1.3.6.1.4.1.57264.1.8': 'Issuer (v2)',
  '1.3.6.1.4.1.57264.1.24': 'Token subject',
  '2.5.29.15': 'Key usage',
  '2.5.29.37': 'Extended key usage',
  '2.5.29.14': 'Subject key identifier',
  '2.5.29.35': 'Authority key identifier',
  '2.5.29.17': 'Subject alternative name',
};

function describeExtension(ext: pkijs.Extension): string {
  const bytes = ext.extnValue.valueBlock.valueHexView;
  const name = FULCIO_NAMES[ext.extnID] ?? ext.extnID;
  let value: string;
  if (ext.extnID === '1.3.6.1.4.1.57264.1.1') value = Buffer.from(bytes).toString('utf8');
  else if (ext.extnID.startsWith('1.3.6.1.4.1.57264.1.')) {
    const parsed = asn1js.fromBER(bytes);
    value =
      parsed.result instanceof asn1js.Utf8String
        ? parsed.result.valueBlock.value
        : Buffer.from(bytes).toString('hex');
  } else value = Buffer.from(bytes).toString('hex');
  return `  ${name} [${ext.extnID}]${ext.critical ? ' (critical)' : ''}: ${value}`;
}

async function main(): Promise<void> {
  const issuer = await startDevIssuer();
  const config = loadServerConfig({ env: { MAYFLY_LOG_LEVEL: 'warn' } });
  const logger = createLogger('warn');
  const base = loadIdentityConfig(config.identityConfig);
  const identityConfig = {
    ...base,
    oidcIssuers: new Map([...base.oidcIssuers, [issuer.url, issuer.issuerConfig]]),
  };
  const app = await createApp(config, logger, { identityConfig });
  const { server, port } = await listen(app.api, '127.0.0.1', 0);
  try {
    const email = 'demo@example.com';
    const token = await issuer.mintEmail(email);
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const proof = sign('sha256', Buffer.from(email), privateKey);
    console.log(`mayfly on http://127.0.0.1:${port}, development issuer ${issuer.url}`);
    console.log(`asking for a certificate for ${email} with a fresh P-256 key...\n`);
    const response = await fetch(`http://127.0.0.1:${port}/api/v2/signingCert`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        credentials: { oidcIdentityToken: token },
        publicKeyRequest: {
          publicKey: {
            algorithm: 'ECDSA',
            content: publicKey.export({ type: 'spki', format: 'pem' }),
          },
          proofOfPossession: proof.toString('base64'),
        },
      }),
    });
    const body = (await response.json()) as {
      signedCertificateDetachedSct?: { chain: { certificates: string[] } };
    };
    if (response.status !== 200 || !body.signedCertificateDetachedSct) {
      throw new Error(`mayfly answered ${response.status}: ${JSON.stringify(body)}`);
    }
    const [leafPem, ...chainPems] = body.signedCertificateDetachedSct.chain.certificates;
    const leaf = new X509Certificate(leafPem!);
    console.log(leafPem);
    console.log('\nLeaf certificate');
    console.log(`  Serial: ${leaf.serialNumber}`);
    console.log(`  Subject: ${leaf.subject || '(empty)'}`);
    console.log(`  Issuer: ${leaf.issuer.replace(/\n/g, ', ')}`);
    console.log(`  SAN: ${leaf.subjectAltName ?? ''}`);
    console.log(`  Valid: ${leaf.validFrom} -> ${leaf.validTo}`);
    console.log(
      `  Key: ${leaf.publicKey.asymmetricKeyType} ${leaf.publicKey.asymmetricKeyDetails?.namedCurve ?? ''}`,
    );
    const parsed = pkijs.Certificate.fromBER(leaf.raw);
    console.log(`  Signature algorithm: ${parsed.signatureAlgorithm.algorithmId}`);
    console.log('  Extensions:');
    for (const ext of parsed.extensions ?? []) console.log(`  ${describeExtension(ext)}`);
    console.log('\nChain');
    for (const pem of chainPems) {
      const cert = new X509Certificate(pem);
      console.log(`  ${cert.subject.replace(/\n/g, ', ')} (CA: ${cert.ca}, until ${cert.validTo})`);
    }
    const issuing = new X509Certificate(chainPems[0]!);
    console.log(`\nLeaf verifies with the issuing CA key: ${leaf.verify(issuing.publicKey)}`);
  } finally {
    server.closeAllConnections();
    server.close();
    await issuer.close();
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
