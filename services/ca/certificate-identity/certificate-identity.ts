/**
 * The identity a certificate states, as plain data. identity/ produces it from a verified
 * token; issuance/ turns it into a SAN and extensions. It lives in common/ because neither
 * of those modules may import the other.
 */

export type SanType = 'email' | 'uri' | 'otherName';

export interface CertificateExtensionValue {
  readonly oid: string;
  readonly value: string;
  /** `raw`: the string's bytes are the extnValue (Fulcio OIDs .1.1–.1.6); `utf8`: DER UTF8String. */
  readonly encoding: 'utf8' | 'raw';
}

export interface CertificateIdentity {
  readonly san: { readonly type: SanType; readonly value: string };
  readonly extensions: readonly CertificateExtensionValue[];
}

export const FULCIO_OID = {
  issuerV1: '1.3.6.1.4.1.57264.1.1',
  /** Type-id of the username otherName SAN. */
  otherNameSan: '1.3.6.1.4.1.57264.1.7',
  issuerV2: '1.3.6.1.4.1.57264.1.8',
  tokenSubject: '1.3.6.1.4.1.57264.1.24',
} as const;

/**
 * The fields of Fulcio's `certificate.Extensions`, in the order `Render()` emits them,
 * each with its Go (JSON) field name, its YAML key in a Fulcio config, its OID and the
 * encoding of its value: the raw string bytes for the deprecated .1.1–.1.6, a DER
 * UTF8String from .1.8 on. `Issuer` is both .1.1 and .1.8.
 */
export const FULCIO_EXTENSIONS = [
  { field: 'Issuer', yaml: 'issuer', oid: '1.3.6.1.4.1.57264.1.1', encoding: 'raw' },
  {
    field: 'GithubWorkflowTrigger',
    yaml: 'github-workflow-trigger',
    oid: '1.3.6.1.4.1.57264.1.2',
    encoding: 'raw',
  },
  {
    field: 'GithubWorkflowSHA',
    yaml: 'github-workflow-sha',
    oid: '1.3.6.1.4.1.57264.1.3',
    encoding: 'raw',
  },
  {
    field: 'GithubWorkflowName',
    yaml: 'github-workflow-name',
    oid: '1.3.6.1.4.1.57264.1.4',
    encoding: 'raw',
  },
  {
    field: 'GithubWorkflowRepository',
    yaml: 'github-workflow-repository',
    oid: '1.3.6.1.4.1.57264.1.5',
    encoding: 'raw',
  },
  {
    field: 'GithubWorkflowRef',
    yaml: 'github-workflow-ref',
    oid: '1.3.6.1.4.1.57264.1.6',
    encoding: 'raw',
  },
  { field: 'Issuer', yaml: 'issuer', oid: '1.3.6.1.4.1.57264.1.8', encoding: 'utf8' },
  {
    field: 'BuildSignerURI',
    yaml: 'build-signer-uri',
    oid: '1.3.6.1.4.1.57264.1.9',
    encoding: 'utf8',
  },
  {
    field: 'BuildSignerDigest',
    yaml: 'build-signer-digest',
    oid: '1.3.6.1.4.1.57264.1.10',
    encoding: 'utf8',
  },
  {
    field: 'RunnerEnvironment',
    yaml: 'runner-environment',
    oid: '1.3.6.1.4.1.57264.1.11',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryURI',
    yaml: 'source-repository-uri',
    oid: '1.3.6.1.4.1.57264.1.12',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryDigest',
    yaml: 'source-repository-digest',
    oid: '1.3.6.1.4.1.57264.1.13',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryRef',
    yaml: 'source-repository-ref',
    oid: '1.3.6.1.4.1.57264.1.14',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryIdentifier',
    yaml: 'source-repository-identifier',
    oid: '1.3.6.1.4.1.57264.1.15',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryOwnerURI',
    yaml: 'source-repository-owner-uri',
    oid: '1.3.6.1.4.1.57264.1.16',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryOwnerIdentifier',
    yaml: 'source-repository-owner-identifier',
    oid: '1.3.6.1.4.1.57264.1.17',
    encoding: 'utf8',
  },
  {
    field: 'BuildConfigURI',
    yaml: 'build-config-uri',
    oid: '1.3.6.1.4.1.57264.1.18',
    encoding: 'utf8',
  },
  {
    field: 'BuildConfigDigest',
    yaml: 'build-config-digest',
    oid: '1.3.6.1.4.1.57264.1.19',
    encoding: 'utf8',
  },
  { field: 'BuildTrigger', yaml: 'build-trigger', oid: '1.3.6.1.4.1.57264.1.20', encoding: 'utf8' },
  {
    field: 'RunInvocationURI',
    yaml: 'run-invocation-uri',
    oid: '1.3.6.1.4.1.57264.1.21',
    encoding: 'utf8',
  },
  {
    field: 'SourceRepositoryVisibilityAtSigning',
    yaml: 'source-repository-visibility-at-signing',
    oid: '1.3.6.1.4.1.57264.1.22',
    encoding: 'utf8',
  },
  {
    field: 'DeploymentEnvironment',
    yaml: 'deployment-environment',
    oid: '1.3.6.1.4.1.57264.1.23',
    encoding: 'utf8',
  },
  { field: 'Subject', yaml: 'subject', oid: '1.3.6.1.4.1.57264.1.24', encoding: 'utf8' },
] as const satisfies readonly {
  field: string;
  yaml: string;
  oid: string;
  encoding: 'raw' | 'utf8';
}[];

/** A field name of Fulcio's `certificate.Extensions` (`BuildSignerURI`, …). */
export type FulcioExtensionField = (typeof FULCIO_EXTENSIONS)[number]['field'];

/** Values for Fulcio's `certificate.Extensions`; absent or empty fields are left out. */
export type FulcioExtensionValues = Partial<Record<FulcioExtensionField, string>>;
