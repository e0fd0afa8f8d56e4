import {
  KeyObject,
  X509Certificate,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  webcrypto,
} from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import pino from 'pino';
import { AuditLog, createAuditLogger } from '../services/ca/audit/audit-log';
import { certificatePem } from '../services/common/encoding';
import { systemClock } from '../services/common/clock';
import { createLogger, silentLogger } from '../services/common/logger';
import type { IdentityConfig } from '../services/ca/config/identity-config';
import { SIGNING_ALGORITHMS } from '../services/ca/config/schema';
import { parseJsonBody, parseV2Request } from '../services/ca/http/dto';
import { IssuerPool } from '../services/ca/identity/issuer-pool';
import { createEphemeralChain } from '../services/ca/issuance/ephemeral-chain';
import { CertificateAuthority } from '../services/ca/issuance/certificate-authority';
import {
  assembleCertificate,
  signatureAlgorithmFor,
  subjectKeyIdOf,
  subjectNameDer,
} from '../services/ca/issuance/der';
import { buildLeafTbs } from '../test/helpers/leaf';
import { children, readTlv, type Tlv } from '../services/ca/issuance/der-codec';
import { LeafTemplate } from '../services/ca/issuance/leaf-template';
import { lintCertificate } from '../services/ca/issuance/lint';
import { randomSerial } from '../services/ca/issuance/serial';
import { leafKeyId, readSpki } from '../services/ca/issuance/spki';
import { AlgorithmPolicy } from '../services/ca/pop/algorithms';
import { verifyProof } from '../services/ca/pop/proof';
import { importPublicKey, parsePublicKey } from '../services/ca/pop/public-key';
import { RegistrationAuthority } from '../services/ca/ra/registration-authority';
import { generateEphemeralKey } from '../services/common/signer/signer';
import type { DevIssuer } from '../services/dev-issuer/dev-issuer';
import type { Fixture } from './lib/fixtures';

/**
 * Each step of the signing pipeline, in-process, one at a time: CPU microseconds per
 * operation (all threads: jose's WebCrypto runs on libuv's pool) and operations per second.
 * Then the floor — the unavoidable work for one certificate — and whole pipelines.
 */

export interface MicroResult {
  readonly group: string;
  readonly name: string;
  /** CPU µs per operation, all threads of this process. */
  readonly cpuUs: number;
  readonly opsPerSecond: number;
  readonly note?: string;
}

type Step = () => unknown;

async function measure(step: Step, ms: number): Promise<{ cpuUs: number; opsPerSecond: number }> {
  const isAsync = step() instanceof Promise;
  const run = async (count: number) => {
    if (isAsync) for (let i = 0; i < count; i++) await step();
    else for (let i = 0; i < count; i++) step();
  };
  // Warm up (JIT, caches), then measure whole batches until the time is up.
  const warmUntil = Date.now() + Math.max(50, ms / 5);
  while (Date.now() < warmUntil) await run(10);
  let ops = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const until = t0 + BigInt(Math.round(ms * 1e6));
  while (process.hrtime.bigint() < until) {
    await run(10);
    ops += 10;
  }
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / ops, opsPerSecond: ops / wallSeconds };
}

function cycle<T>(items: readonly T[]): () => T {
  let i = 0;
  return () => items[i++ % items.length]!;
}

export interface MicroReport {
  readonly steps: MicroResult[];
  /** The floor: token signature check + key import + PoP check + one CA signature. */
  readonly floor: MicroResult;
  /** The same with jose's jwtVerify as the token check (what the library costs). */
  readonly floorJose: MicroResult;
}

export async function runMicro(
  issuer: DevIssuer,
  fixtures: readonly Fixture[],
  rsaFixtures: readonly Fixture[],
  msPerStep: number,
  progress: (line: string) => void = () => undefined,
): Promise<MicroReport> {
  const steps: MicroResult[] = [];
  const add = async (group: string, name: string, step: Step, note?: string) => {
    const result = await measure(step, msPerStep);
    const row = { group, name, ...result, ...(note ? { note } : {}) };
    steps.push(row);
    progress(`  ${name}: ${result.cpuUs.toFixed(1)} µs CPU, ${Math.round(result.opsPerSecond)}/s`);
    return row;
  };

  // --- the CA and the identity stack, as mayfly wires them
  const signer = await createEphemeralChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    systemClock,
  );
  const ca = new CertificateAuthority(signer);
  const identityConfig: IdentityConfig = {
    oidcIssuers: new Map([[issuer.url, issuer.issuerConfig]]),
    metaIssuers: new Map(),
    ciIssuerMetadata: new Map(),
  };
  const pool = new IssuerPool(identityConfig, {
    discoveryTimeoutMs: 10_000,
    jwksCooldownMs: 30_000,
    maxTokenBytes: 32_768,
    clock: systemClock,
    logger: silentLogger,
  });
  const ra = new RegistrationAuthority({
    identity: pool,
    ca,
    algorithms: new AlgorithmPolicy([...SIGNING_ALGORITHMS]),
    clock: systemClock,
    lifetimeSeconds: 600,
    logger: silentLogger,
  });

  // --- token checks
  const nextFixture = cycle(fixtures);
  const nextRsa = cycle(rsaFixtures);
  const es = await generateKeyPair('ES256');
  const rs = await generateKeyPair('RS256');
  const localJwks = createLocalJWKSet({
    keys: [
      { ...(await exportJWK(es.publicKey)), kid: 'es', alg: 'ES256' },
      { ...(await exportJWK(rs.publicKey)), kid: 'rs', alg: 'RS256' },
    ],
  });
  const claims = { email: 'ci@builds.example.com', email_verified: true, sub: 'ci' };
  const mint = (alg: 'ES256' | 'RS256', key: typeof es.privateKey) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: alg === 'ES256' ? 'es' : 'rs' })
      .setIssuer('https://issuer.example.com')
      .setAudience('sigstore')
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(key);
  const esToken = await mint('ES256', es.privateKey);
  const rsToken = await mint('RS256', rs.privateKey);
  const verifyOptions = {
    issuer: 'https://issuer.example.com',
    audience: 'sigstore',
    requiredClaims: ['exp'],
    clockTolerance: 300,
  };
  progress('token checks');
  await add('token', 'jose jwtVerify ES256, local JWKS', () =>
    jwtVerify(esToken, localJwks, { ...verifyOptions, algorithms: ['ES256'] }),
  );
  await add('token', 'jose jwtVerify RS256, local JWKS', () =>
    jwtVerify(rsToken, localJwks, { ...verifyOptions, algorithms: ['RS256'] }),
  );
  const esKey = createPublicKey({ key: await exportJWK(es.publicKey), format: 'jwk' });
  const [h, p, s] = esToken.split('.') as [string, string, string];
  const signingInput = Buffer.from(`${h}.${p}`);
  const jwsSignature = Buffer.from(s, 'base64url');
  const tokenSignature = () =>
    verify('sha256', signingInput, { key: esKey, dsaEncoding: 'ieee-p1363' }, jwsSignature);
  await add(
    'token',
    'ES256 JWS signature check, node:crypto (floor)',
    tokenSignature,
    'signature only',
  );
  await pool.warmUp();
  await add('token', 'mayfly IssuerPool.authenticate, ES256', () =>
    pool.authenticate(nextFixture().token),
  );
  await add('token', 'mayfly IssuerPool.authenticate, RS256', () =>
    pool.authenticate(nextRsa().token),
  );

  // --- key parse
  progress('key parse');
  await add('key', 'createPublicKey(PEM) P-256', () => createPublicKey(nextFixture().pem));
  const jwkOf = (spki: Buffer) => ({
    kty: 'EC',
    crv: 'P-256',
    x: spki.subarray(27, 59).toString('base64url'),
    y: spki.subarray(59, 91).toString('base64url'),
  });
  const jwkImport = () => createPublicKey({ key: jwkOf(nextFixture().spki), format: 'jwk' });
  await add('key', 'createPublicKey(JWK) P-256', jwkImport);
  // The cheapest import that still checks the point is on the curve (SEC1 decoding).
  const rawImport = async (spki: Buffer): Promise<KeyObject> =>
    KeyObject.from(
      await webcrypto.subtle.importKey(
        'raw',
        spki.subarray(26),
        { name: 'ECDSA', namedCurve: 'P-256' },
        true,
        ['verify'],
      ),
    );
  await add('key', 'WebCrypto raw-point import P-256 (floor)', () => rawImport(nextFixture().spki));
  await add('key', 'mayfly parsePublicKey(PEM) P-256 (JWK import)', () =>
    parsePublicKey(nextFixture().pem),
  );
  await add('key', 'mayfly importPublicKey(PEM) P-256 (raw-point import, as served)', () =>
    importPublicKey(nextFixture().pem),
  );

  // --- proof of possession
  progress('proof of possession');
  const parsedKeys = fixtures.slice(0, 64).map((f) => ({ f, key: parsePublicKey(f.pem) }));
  const nextParsed = cycle(parsedKeys);
  await add('pop', 'mayfly verifyProof, P-256 (floor)', () => {
    const { f, key } = nextParsed();
    return verifyProof(key, f.proof, f.email);
  });

  // --- certificate
  progress('certificate');
  const issuingDer = signer.chain[0]!;
  const algorithm = signatureAlgorithmFor(signer.publicKey, signer.hash);
  const algorithmDer = new Uint8Array(algorithm.toSchema().toBER(false));
  const issuerName = subjectNameDer(issuingDer);
  const authorityKeyId = subjectKeyIdOf(issuingDer)!;
  const template = new LeafTemplate({
    issuerName,
    authorityKeyId,
    signatureAlgorithm: algorithmDer,
  });
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const identity = (await pool.authenticate(fixtures[0]!.token)).certificateIdentity();
  const fields = () => {
    const spki = nextFixture().spki;
    return {
      serial: randomSerial(),
      notBefore: now,
      notAfter: new Date(now.getTime() + 600_000),
      spki,
      subjectKeyId: leafKeyId(readSpki(spki)),
      identity,
    };
  };
  const caKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const sampleTbs = template.tbs(fields());
  await add('certificate', `ECDSA P-256 sign of the ${sampleTbs.length}-byte TBS (floor)`, () =>
    sign('sha256', sampleTbs, { key: caKey, dsaEncoding: 'der' }),
  );
  const pkijsTbs = () =>
    buildLeafTbs({ ...fields(), issuerName, authorityKeyId, signatureAlgorithm: algorithm });
  await add('certificate', 'leaf TBS built with pkijs objects', pkijsTbs);
  await add('certificate', 'leaf TBS from the DER template', () => template.tbs(fields()));
  const caSign = (tbs: Uint8Array) =>
    sign('sha256', tbs, { key: caKey, dsaEncoding: 'der' }) as Uint8Array;
  await add('certificate', 'pkijs build + assemble + sign', () => {
    const tbs = pkijsTbs();
    return assembleCertificate(tbs, algorithm, caSign(tbs));
  });
  await add('certificate', 'DER template + sign', () => {
    const tbs = template.tbs(fields());
    return template.certificate(tbs, caSign(tbs));
  });
  const issued = await ca.issue({ ...fields(), publicKey: fixtures[0]!.spki });
  const issuing = new X509Certificate(issuingDer);
  await add(
    'certificate',
    'final check before: X509Certificate parse + verify + key export',
    () => {
      const cert = new X509Certificate(issued.der);
      cert.verify(issuing.publicKey);
      return cert.publicKey.export({ format: 'der', type: 'spki' });
    },
  );
  const lintIssuer = {
    name: issuerName,
    keyId: authorityKeyId,
    publicKey: issuing.publicKey,
    hash: signer.hash,
    signatureAlgorithm: algorithmDer,
    notAfter: new Date(Date.parse(issuing.validTo)),
  };
  const expectation = {
    identity,
    spki: fixtures[0]!.spki,
    subjectKeyId: leafKeyId(readSpki(fixtures[0]!.spki)),
    serial: new Uint8Array(0),
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
    issuer: lintIssuer,
  };
  const issuedSerial = Buffer.from(issued.serial.padStart(40, '0'), 'hex');
  await add('certificate', 'final check now: DER walk + signature verify', () =>
    lintCertificate(issued.der, { ...expectation, serial: issuedSerial }),
  );
  const outer = readTlv(issued.der, 0);
  const [tbsTlv, , signatureTlv] = children(issued.der, outer) as [Tlv, Tlv, Tlv];
  const issuedTbs = issued.der.subarray(tbsTlv.start, tbsTlv.end);
  const issuedSignature = issued.der.subarray(signatureTlv.contentStart + 1, signatureTlv.end);
  await add('certificate', 'of which: signature verify with the issuing key', () =>
    verify('sha256', issuedTbs, { key: issuing.publicKey, dsaEncoding: 'der' }, issuedSignature),
  );
  await add(
    'certificate',
    'mayfly CertificateAuthority.issue (recheck + template + sign + check)',
    () => ca.issue({ ...fields(), publicKey: nextFixture().spki }),
  );

  // --- around the pipeline: what every HTTP request also does
  progress('request glue');
  const chain = [issued.der, ...issued.chain];
  await add('glue', 'JSON body + DTO parse (v2)', () =>
    parseV2Request(parseJsonBody(Buffer.from(nextFixture().v2Body)), undefined),
  );
  await add('glue', 'PEM chain + JSON response body', () =>
    JSON.stringify({
      signedCertificateDetachedSct: {
        chain: { certificates: chain.map((d) => certificatePem(d).trim()) },
        signedCertificateTimestamp: '',
      },
    }),
  );
  const devNull = () => pino.destination({ dest: '/dev/null', sync: true });
  const logger = createLogger('info', devNull());
  await add('glue', 'request logger child + one info line (pino)', () =>
    logger
      .child({ requestId: 'f4a1c1e2-0000-4000-8000-000000000000' })
      .info(
        { issuer: issuer.url, issuerType: 'email', notAfter: now.toISOString() },
        'signing certificate issued',
      ),
  );
  const audit = new AuditLog(createAuditLogger({ destination: devNull() }));
  const principal = await pool.authenticate(fixtures[0]!.token);
  const auditRecord = {
    der: issued.der,
    serial: issued.serial,
    identity: principal.certificateIdentity(),
    issuer: principal.issuer,
    issuerType: principal.issuerType,
    subject: principal.subject,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
  const who = { requestId: 'r', route: '/api/v2/signingCert', clientIp: '127.0.0.1' };
  await add('glue', 'audit line, key facts from the request (as served)', () =>
    audit.issued(who, {
      ...auditRecord,
      publicKey: { spki: fixtures[0]!.spki, algorithm: 'ecdsa-P-256' },
    }),
  );
  await add('glue', 'audit line, parsing the certificate back (before)', () =>
    audit.issued(who, auditRecord),
  );

  // --- the floor and whole pipelines
  progress('floor and pipelines');
  const caTbs = template.tbs(fields());
  const floorStep = async () => {
    const f = nextFixture();
    tokenSignature();
    const key = await rawImport(f.spki);
    verify('sha256', Buffer.from(f.email), { key, dsaEncoding: 'der' }, f.proof);
    return caSign(caTbs);
  };
  const floor = await add(
    'pipeline',
    'FLOOR: ES256 token signature + P-256 raw-point import + PoP verify + CA sign',
    floorStep,
  );
  const floorJose = await add(
    'pipeline',
    'floor with jose jwtVerify as the token check',
    async () => {
      await jwtVerify(esToken, localJwks, { ...verifyOptions, algorithms: ['ES256'] });
      const f = nextFixture();
      const key = await rawImport(f.spki);
      verify('sha256', Buffer.from(f.email), { key, dsaEncoding: 'der' }, f.proof);
      return caSign(caTbs);
    },
  );
  await add('pipeline', 'mayfly RA.createSigningCertificate (whole pipeline, in-process)', () => {
    const f = nextFixture();
    return ra.createSigningCertificate({
      token: f.token,
      key: { kind: 'publicKey', content: f.pem, proof: f.proof },
    });
  });
  await add(
    'pipeline',
    'the same pipeline as first written (pkijs build, OpenSSL PEM/DER decode, X509 check)',
    async () => {
      const f = nextFixture();
      const principal = await pool.authenticate(f.token);
      const key = createPublicKey(f.pem);
      const spki = key.export({ format: 'der', type: 'spki' });
      verify('sha256', Buffer.from(principal.name), { key, dsaEncoding: 'der' }, f.proof);
      createPublicKey({ key: spki, format: 'der', type: 'spki' }); // the CA's recheck
      const tbs = buildLeafTbs({
        ...fields(),
        spki,
        identity: principal.certificateIdentity(),
        issuerName,
        authorityKeyId,
        signatureAlgorithm: algorithm,
      });
      const der = assembleCertificate(tbs, algorithm, caSign(tbs));
      const cert = new X509Certificate(der);
      cert.verify(issuing.publicKey);
      return cert.publicKey.export({ format: 'der', type: 'spki' });
    },
  );
  return { steps, floor, floorJose };
}
