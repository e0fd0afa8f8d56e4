import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../common/encoding';
import type { CaSigner } from '../common/signer/signer';
import { signatureAlgorithm } from './certificates';
import { bigintInteger, cmsTime, generalizedTime, TAG, tlv, unsignedInteger } from './der-writer';
import { HASH_OIDS, type TimestampRequest } from './request';

/**
 * RFC 3161 timestamp tokens with the RFC 5816 update: a TimeStampResp whose token is a CMS
 * SignedData over a TSTInfo, signed by the TSA certificate (issuerAndSerialNumber), with the
 * signed attributes contentType, signingTime, messageDigest and signingCertificateV2
 * (ESSCertIDv2: SHA-256 of the TSA certificate, its issuer and serial). The signer only ever
 * sees the DER of the signed attributes.
 *
 * Every constant part is laid out with pkijs/asn1js once, here in the constructor; per
 * request the few primitives that change are framed with der-writer.ts (see there why).
 */

const OID = {
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
} as const;

export interface TokenOptions {
  /** Default policy of TSTInfo when the request names none. */
  readonly policy: string;
  /** TSTInfo.accuracy in whole seconds (0: no accuracy field). */
  readonly accuracySeconds: number;
  /** Put the chain's other certificates in the SignedData too when certReq is set. */
  readonly includeChain?: boolean;
}

export interface TimestampToken {
  /** DER TimeStampResp. */
  readonly der: Uint8Array;
  readonly genTime: Date;
}

function der(schema: { toBER(sizeOnly?: boolean): ArrayBuffer }): Buffer {
  return Buffer.from(schema.toBER(false));
}

function oid(value: string): Buffer {
  return der(new asn1js.ObjectIdentifier({ value }));
}

/** Whole seconds, always (sigstore-js accepts no fraction or exactly three digits). */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

export class TokenBuilder {
  private readonly hash: 'sha256' | 'sha384' | 'sha512';
  private readonly version1 = unsignedInteger(Uint8Array.of(1));
  private readonly version3 = unsignedInteger(Uint8Array.of(3));
  /** PKIStatusInfo { granted }. */
  private readonly granted = tlv(TAG.sequence, unsignedInteger(Uint8Array.of(0)));
  private readonly policies = new Map<string, Buffer>();
  private readonly imprintAlgorithms = new Map<string, Buffer>();
  private readonly accuracy: Buffer | undefined;
  /** [0] tsa GeneralName: the TSA certificate's subject as a directoryName. */
  private readonly tsaName: Buffer;
  private readonly digestAlgorithm: Buffer;
  private readonly digestAlgorithms: Buffer;
  private readonly sid: Buffer;
  private readonly signatureAlgorithm: Buffer;
  private readonly contentTypeAttr: Buffer;
  private readonly essAttr: Buffer;
  private readonly signingTimeType: Buffer;
  private readonly messageDigestType: Buffer;
  private readonly tstInfoType: Buffer;
  private readonly signedDataType: Buffer;
  /** [0] IMPLICIT CertificateSet for certReq: the TSA certificate, or the whole chain. */
  private readonly certificates: Buffer;

  constructor(
    private readonly signer: CaSigner,
    private readonly options: TokenOptions,
  ) {
    const leafDer = signer.chain[0];
    if (!leafDer) throw new Error('the TSA signer has no certificate');
    if (signer.hash === null) throw new Error('the TSA key must sign with a hash (EC or RSA)');
    this.hash = signer.hash;
    const leaf = pkijs.Certificate.fromBER(toArrayBuffer(leafDer));
    this.tsaName = tlv(
      TAG.context0,
      der(new pkijs.GeneralName({ type: 4, value: leaf.subject }).toSchema() as asn1js.Constructed),
    );
    const digestAlgorithm = new pkijs.AlgorithmIdentifier({ algorithmId: HASH_OIDS[this.hash] });
    this.digestAlgorithm = der(digestAlgorithm.toSchema());
    this.digestAlgorithms = tlv(TAG.set, this.digestAlgorithm);
    this.sid = der(
      new pkijs.IssuerAndSerialNumber({
        issuer: leaf.issuer,
        serialNumber: leaf.serialNumber,
      }).toSchema(),
    );
    this.signatureAlgorithm = der(signatureAlgorithm(signer.publicKey, signer.hash).toSchema());
    const attribute = (type: string, value: asn1js.AsnType) =>
      der(new pkijs.Attribute({ type, values: [value] }).toSchema());
    this.contentTypeAttr = attribute(
      OID.contentType,
      new asn1js.ObjectIdentifier({ value: OID.tstInfo }),
    );
    // ESSCertIDv2 { certHash (SHA-256, the default, so no hashAlgorithm), issuerSerial }.
    const issuerSerial = new asn1js.Sequence({
      value: [
        new asn1js.Sequence({
          value: [
            new asn1js.Constructed({
              idBlock: { tagClass: 3, tagNumber: 4 },
              value: [leaf.issuer.toSchema()],
            }),
          ],
        }),
        leaf.serialNumber,
      ],
    });
    const essCertId = new asn1js.Sequence({
      value: [
        new asn1js.OctetString({
          valueHex: toArrayBuffer(createHash('sha256').update(leafDer).digest()),
        }),
        issuerSerial,
      ],
    });
    this.essAttr = attribute(
      OID.signingCertificateV2,
      new asn1js.Sequence({ value: [new asn1js.Sequence({ value: [essCertId] })] }),
    );
    this.signingTimeType = oid(OID.signingTime);
    this.messageDigestType = oid(OID.messageDigest);
    this.tstInfoType = oid(OID.tstInfo);
    this.signedDataType = oid(OID.signedData);
    this.accuracy =
      options.accuracySeconds > 0
        ? der(new pkijs.Accuracy({ seconds: options.accuracySeconds }).toSchema())
        : undefined;
    const certs = options.includeChain ? signer.chain : [leafDer];
    this.certificates = tlv(TAG.context0, ...certs);
  }

  private policy(text: string): Buffer {
    let encoded = this.policies.get(text);
    if (!encoded) {
      encoded = oid(text);
      // Only accepted policies get here (one or a few): the cache stays small.
      if (this.policies.size < 16) this.policies.set(text, encoded);
    }
    return encoded;
  }

  /** The imprint's AlgorithmIdentifier as the request had it (OID, absent or NULL params). */
  private imprintAlgorithm(algorithm: pkijs.AlgorithmIdentifier): Buffer {
    const params = algorithm.algorithmParams as asn1js.AsnType | undefined;
    const isNull = params instanceof asn1js.Null;
    if (params !== undefined && !isNull) return der(algorithm.toSchema());
    const key = `${algorithm.algorithmId}|${isNull ? 'null' : 'none'}`;
    let encoded = this.imprintAlgorithms.get(key);
    if (!encoded) {
      encoded = der(algorithm.toSchema());
      if (this.imprintAlgorithms.size < 16) this.imprintAlgorithms.set(key, encoded);
    }
    return encoded;
  }

  /** The TSTInfo DER for a request, at `genTime` (whole seconds), with `serial`. */
  tstInfo(req: TimestampRequest, genTime: Date, serial: Uint8Array): Buffer {
    const parts: Uint8Array[] = [
      this.version1,
      this.policy(req.policy ?? this.options.policy),
      tlv(TAG.sequence, this.imprintAlgorithm(req.hashAlgorithm), tlv(TAG.octetString, req.digest)),
      unsignedInteger(serial),
      generalizedTime(wholeSeconds(genTime)),
    ];
    if (this.accuracy) parts.push(this.accuracy);
    // ordering is DEFAULT FALSE: absent.
    if (req.nonce !== undefined) parts.push(bigintInteger(req.nonce));
    parts.push(this.tsaName);
    return tlv(TAG.sequence, ...parts);
  }

  async respond(req: TimestampRequest, genTime: Date, serial: Uint8Array): Promise<TimestampToken> {
    const time = wholeSeconds(genTime);
    const tst = this.tstInfo(req, time, serial);
    const attributes = [
      this.contentTypeAttr,
      tlv(TAG.sequence, this.signingTimeType, tlv(TAG.set, cmsTime(time))),
      tlv(
        TAG.sequence,
        this.messageDigestType,
        tlv(TAG.set, tlv(TAG.octetString, createHash(this.hash).update(tst).digest())),
      ),
      this.essAttr,
    ].sort(Buffer.compare); // DER orders a SET OF by its members' encodings
    // The signature covers the attributes as a SET; the SignerInfo carries them as [0].
    const signature = await this.signer.sign(tlv(TAG.set, ...attributes));
    const signerInfo = tlv(
      TAG.sequence,
      this.version1,
      this.sid,
      this.digestAlgorithm,
      tlv(TAG.context0, ...attributes),
      this.signatureAlgorithm,
      tlv(TAG.octetString, signature),
    );
    const signedData = tlv(
      TAG.sequence,
      this.version3,
      this.digestAlgorithms,
      // encapContentInfo: the TSTInfo in a primitive OCTET STRING (DER).
      tlv(TAG.sequence, this.tstInfoType, tlv(TAG.context0, tlv(TAG.octetString, tst))),
      ...(req.certReq ? [this.certificates] : []),
      tlv(TAG.set, signerInfo),
    );
    const contentInfo = tlv(TAG.sequence, this.signedDataType, tlv(TAG.context0, signedData));
    return { der: tlv(TAG.sequence, this.granted, contentInfo), genTime: time };
  }
}
