import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goObject, goString, issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import type { IssuerTypeHandler } from '../types';

/**
 * The `kubernetes` issuer type (service-account tokens of any cluster): the SAN is
 * `https://kubernetes.io/namespaces/<ns>/serviceaccounts/<name>` from the
 * `kubernetes.io` claim; as in Fulcio the two values are not checked, so a token without
 * them gets `…/namespaces//serviceaccounts/`. The proof of possession signs `sub`.
 */
export const kubernetesIssuerType: IssuerTypeHandler = {
  type: 'kubernetes',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const k8s = goObject(claims, 'kubernetes.io');
    const namespace = goString(k8s, 'namespace', '.kubernetes.io.namespace');
    const pod = goObject(k8s, 'pod', '.kubernetes.io.pod');
    goString(pod, 'name', '.kubernetes.io.pod.name');
    goString(pod, 'uid', '.kubernetes.io.pod.uid');
    const account = goObject(k8s, 'serviceaccount', '.kubernetes.io.serviceaccount');
    const accountName = goString(account, 'name', '.kubernetes.io.serviceaccount.name');
    goString(account, 'uid', '.kubernetes.io.serviceaccount.uid');
    const uri = `https://kubernetes.io/namespaces/${namespace}/serviceaccounts/${accountName}`;
    const sub = subjectOf(claims);
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('kubernetes', sub, iss, sub, () => ({
      san: uriSan(embedUrl(uri)),
      extensions: renderExtensions({ Issuer: iss, Subject: sub }),
    }));
  },
};
