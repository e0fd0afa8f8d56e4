import { createHash, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../common/encoding';
import type { CaSigner } from '../common/signer/signer';
import { signatureAlgorithm } from './certificates';
import { HASH_OIDS, type TimestampRequest } from './request';

/**
 * RFC 3161 timestamp tokens with the RFC 5816 update: a TimeStampResp whose token is a CMS
 * SignedData over a TSTInfo, signed by the TSA certificate (issuerAndSerialNumber), with the
 * signed attributes contentType, signingTime, messageDigest and signingCertificateV2
 * (ESSCertIDv2, SHA-256 of the TSA certificate plus its issuer and serial). The signature
 * comes from the signer, which only ever sees the DER of the signed attributes.
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

function attribute(type: string, value: asn1js.AsnType): pkijs.Attribute {
  return new pkijs.Attribute({ type, values: [value] });
}

function encode(schema: { toBER(sizeOnly?: boolean): ArrayBuffer }): Uint8Array {
  return new Uint8Array(schema.toBER(false));
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * Whole seconds, always: pkijs writes GeneralizedTime fractions minimally ("…52.1Z"), and
 * sigstore-js accepts exactly three fraction digits or none.
 */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

export class TokenBuilder {
  private readonly leaf: pkijs.Certificate;
  private readonly chainCerts: pkijs.Certificate[];
  private readonly sid: pkijs.IssuerAndSerialNumber;
  private readonly signingCertificateV2: pkijs.Attribute;
  private readonly digestAlgorithm: pkijs.AlgorithmIdentifier;
  private readonly signatureAlgorithm: pkijs.AlgorithmIdentifier;
  private readonly hash: 'sha256' | 'sha384' | 'sha512';
  private readonly accuracy: pkijs.Accuracy | undefined;
  private readonly tsaName: pkijs.GeneralName;

  constructor(
    private readonly signer: CaSigner,
    private readonly options: TokenOptions,
  ) {
    const leafDer = signer.chain[0];
    if (!leafDer) throw new Error('the TSA signer has no certificate');
    this.chainCerts = signer.chain.map((d) => pkijs.Certificate.fromBER(toArrayBuffer(d)));
    this.leaf = this.chainCerts[0]!;
    this.sid = new pkijs.IssuerAndSerialNumber({
      issuer: this.leaf.issuer,
      serialNumber: this.leaf.serialNumber,
    });
    if (signer.hash === null) throw new Error('the TSA key must sign with a hash (EC or RSA)');
    this.hash = signer.hash;
    this.digestAlgorithm = new pkijs.AlgorithmIdentifier({ algorithmId: HASH_OIDS[this.hash] });
    this.signatureAlgorithm = signatureAlgorithm(signer.publicKey, signer.hash);
    // ESSCertIDv2 { certHash (SHA-256, the default, so no hashAlgorithm), issuerSerial }.
    const issuerSerial = new asn1js.Sequence({
      value: [
        new asn1js.Sequence({
          value: [
            new asn1js.Constructed({
              idBlock: { tagClass: 3, tagNumber: 4 },
              value: [this.leaf.issuer.toSchema()],
            }),
          ],
        }),
        this.leaf.serialNumber,
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
    this.signingCertificateV2 = attribute(
      OID.signingCertificateV2,
      new asn1js.Sequence({ value: [new asn1js.Sequence({ value: [essCertId] })] }),
    );
    this.accuracy =
      options.accuracySeconds > 0
        ? new pkijs.Accuracy({ seconds: options.accuracySeconds })
        : undefined;
    this.tsaName = new pkijs.GeneralName({ type: 4, value: this.leaf.subject });
    // The leaf must still parse the way we read it (a changed pkijs would show here).
    void new X509Certificate(leafDer);
  }

  /** The TSTInfo DER for a request, at `genTime` (whole seconds), with `serial`. */
  tstInfo(req: TimestampRequest, genTime: Date, serial: Uint8Array): Uint8Array {
    const info = new pkijs.TSTInfo({
      version: 1,
      policy: req.policy ?? this.options.policy,
      messageImprint: new pkijs.MessageImprint({
        hashAlgorithm: req.hashAlgorithm,
        hashedMessage: new asn1js.OctetString({ valueHex: toArrayBuffer(req.digest) }),
      }),
      serialNumber: new asn1js.Integer({ valueHex: toArrayBuffer(serial) }),
      genTime: wholeSeconds(genTime),
      ...(this.accuracy ? { accuracy: this.accuracy } : {}),
      ...(req.nonce === undefined ? {} : { nonce: asn1js.Integer.fromBigInt(req.nonce) }),
      // The TSA's name, as the reference writes it: the TSA certificate's subject.
      tsa: this.tsaName,
    });
    return encode(info.toSchema());
  }

  /**
   * pkijs's constructor turns a primitive eContent into a constructed (BER) OCTET STRING;
   * DER, which sigstore-js and Go's parsers read, wants the primitive one, so it is set after.
   */
  private encapsulate(tst: Uint8Array): pkijs.EncapsulatedContentInfo {
    const info = new pkijs.EncapsulatedContentInfo({ eContentType: OID.tstInfo });
    info.eContent = new asn1js.OctetString({ valueHex: toArrayBuffer(tst) });
    return info;
  }

  async respond(req: TimestampRequest, genTime: Date, serial: Uint8Array): Promise<TimestampToken> {
    const time = wholeSeconds(genTime);
    const tst = this.tstInfo(req, time, serial);
    const attributes = [
      attribute(OID.contentType, new asn1js.ObjectIdentifier({ value: OID.tstInfo })),
      attribute(OID.signingTime, new asn1js.UTCTime({ valueDate: time })),
      attribute(
        OID.messageDigest,
        new asn1js.OctetString({
          valueHex: toArrayBuffer(createHash(this.hash).update(tst).digest()),
        }),
      ),
      this.signingCertificateV2,
    ];
    // DER orders a SET OF by the encodings of its members; the signature covers that SET.
    const sorted = attributes
      .map((a) => ({ a, der: encode(a.toSchema()) }))
      .sort((x, y) => compareBytes(x.der, y.der));
    const signedAttrsDer = encode(new asn1js.Set({ value: sorted.map((s) => s.a.toSchema()) }));
    const signature = await this.signer.sign(signedAttrsDer);
    const signerInfo = new pkijs.SignerInfo({
      version: 1,
      sid: this.sid,
      digestAlgorithm: this.digestAlgorithm,
      signedAttrs: new pkijs.SignedAndUnsignedAttributes({
        type: 0,
        attributes: sorted.map((s) => s.a),
      }),
      signatureAlgorithm: this.signatureAlgorithm,
      signature: new asn1js.OctetString({ valueHex: toArrayBuffer(signature) }),
    });
    const certificates = req.certReq
      ? this.options.includeChain
        ? this.chainCerts
        : [this.leaf]
      : undefined;
    const signedData = new pkijs.SignedData({
      version: 3,
      digestAlgorithms: [this.digestAlgorithm],
      encapContentInfo: this.encapsulate(tst),
      ...(certificates ? { certificates } : {}),
      signerInfos: [signerInfo],
    });
    const response = new pkijs.TimeStampResp({
      status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.granted }),
      timeStampToken: new pkijs.ContentInfo({
        contentType: OID.signedData,
        content: signedData.toSchema(true),
      }),
    });
    return { der: encode(response.toSchema()), genTime: time };
  }
}
