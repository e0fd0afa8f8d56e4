import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { FetchLike } from './oidc-verifier';

/**
 * The HTTP client for an issuer that needs more than the default one (Fulcio's
 * httpClientForIssuer): a per-issuer extra CA certificate (CACert) added to the bundled
 * roots, and for the in-cluster Kubernetes issuer the cluster CA file plus the pod's
 * service-account token, sent as a bearer token to the issuer's own host and nowhere
 * else. It speaks just enough fetch for discovery and JWKS: GET, no redirects followed
 * (the caller decides about them), a capped body, and the caller's AbortSignal.
 */

export interface IssuerTransportOptions {
  /** PEM certificates trusted besides Node's bundled roots. */
  readonly extraCa?: readonly string[];
  /** A file of PEM certificates trusted besides them, read at each request. */
  readonly caFile?: string;
  /** A bearer token file (read at each request) and the only host (host:port) it goes to. */
  readonly bearer?: { readonly tokenFile: string; readonly host: string };
  /** Name resolution (tests point names at 127.0.0.1 with it). */
  readonly lookup?: LookupFunction;
  readonly onWarning?: (message: string) => void;
}

/** The hostnames of the in-cluster API server's issuer. */
export const IN_CLUSTER_ISSUER_HOSTS = new Set([
  'kubernetes.default.svc',
  'kubernetes.default.svc.cluster.local',
]);

/** Whether an issuer URL names the in-cluster Kubernetes API server (any port). */
export function isInClusterIssuer(issuerUrl: string): boolean {
  try {
    const url = new URL(issuerUrl);
    return url.protocol === 'https:' && IN_CLUSTER_ISSUER_HOSTS.has(url.hostname);
  } catch {
    return false;
  }
}

const MAX_BODY_BYTES = 1024 * 1024;
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

function requestUrl(input: Parameters<FetchLike>[0]): URL {
  if (input instanceof URL) return input;
  if (typeof input === 'string') return new URL(input);
  return new URL(input.url);
}

export function issuerTransport(options: IssuerTransportOptions): FetchLike {
  return (input, init) =>
    new Promise<Response>((resolve, reject) => {
      const url = requestUrl(input);
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, name) => {
        headers[name] = value;
      });
      delete headers.authorization;
      let ca: string[] | undefined;
      try {
        const extra = [...(options.extraCa ?? [])];
        if (options.caFile) extra.push(readFileSync(options.caFile, 'utf8'));
        if (extra.length > 0) ca = [...rootCertificates, ...extra];
        if (options.bearer && url.host === options.bearer.host) {
          let token: string | undefined;
          try {
            token = readFileSync(options.bearer.tokenFile, 'utf8').trim();
          } catch (err) {
            options.onWarning?.(
              `service-account token ${options.bearer.tokenFile} unreadable: ${(err as Error).message}`,
            );
          }
          if (token) headers.authorization = `Bearer ${token}`;
        }
      } catch (err) {
        reject(new Error(`unable to read cluster CA file: ${(err as Error).message}`));
        return;
      }
      const module = url.protocol === 'https:' ? https : http;
      const request = module.request(
        url,
        {
          method: init?.method ?? 'GET',
          headers,
          ...(ca ? { ca } : {}),
          minVersion: 'TLSv1.2',
          ...(options.lookup ? { lookup: options.lookup } : {}),
          ...(init?.signal ? { signal: init.signal } : {}),
          agent: false,
        },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_BODY_BYTES) {
              response.destroy(
                new Error(`response from ${url.host} larger than ${MAX_BODY_BYTES} bytes`),
              );
              return;
            }
            chunks.push(chunk);
          });
          response.on('error', reject);
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            if (status < 200 || status > 599) {
              reject(new Error(`unexpected HTTP status ${status} from ${url.host}`));
              return;
            }
            const responseHeaders = new Headers();
            for (const [name, value] of Object.entries(response.headers)) {
              if (value === undefined) continue;
              for (const item of Array.isArray(value) ? value : [value]) {
                responseHeaders.append(name, item);
              }
            }
            resolve(
              new Response(NULL_BODY_STATUSES.has(status) ? null : Buffer.concat(chunks), {
                status,
                headers: responseHeaders,
              }),
            );
          });
        },
      );
      request.on('error', reject);
      request.end();
    });
}
