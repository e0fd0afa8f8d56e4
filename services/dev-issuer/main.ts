import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startDevIssuer } from './dev-issuer';

/**
 * The development OIDC issuer as its own process (`npm run dev-issuer`): discovery, a JWKS
 * and GET /token?email=… that mints an identity token for anybody who asks. It is never part
 * of the CA: the CA trusts it only when its identity config names it, which
 * `--identity-config FILE` writes (Fulcio's format, the issuer with client ID `sigstore`,
 * type `email`) for MAYFLY_IDENTITY_CONFIG. Never run it where anybody but you can reach it.
 */

const USAGE = `usage: dev-issuer [--host 127.0.0.1] [--port 5556] [--identity-config FILE]
  --host, --port        where to listen (MAYFLY_DEV_ISSUER_HOST / MAYFLY_DEV_ISSUER_PORT; port 0 = free)
  --identity-config F   write an identity config trusting this issuer to F, for MAYFLY_IDENTITY_CONFIG
`;

function fail(message: string): never {
  process.stderr.write(`dev-issuer: ${message}\n${USAGE}`);
  process.exit(2);
}

function options(argv: readonly string[], env: NodeJS.ProcessEnv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        'identity-config': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const portText = values.port ?? env.MAYFLY_DEV_ISSUER_PORT ?? '5556';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) fail(`not a port: ${JSON.stringify(portText)}`);
  return {
    host: values.host ?? env.MAYFLY_DEV_ISSUER_HOST ?? '127.0.0.1',
    port,
    identityConfig: values['identity-config'],
  };
}

/** A Fulcio identity config (YAML, which JSON is) naming the issuer. */
function identityConfigFor(url: string, clientId: string): string {
  const issuer = { 'issuer-url': url, 'client-id': clientId, type: 'email' };
  return `${JSON.stringify({ 'oidc-issuers': { [url]: issuer } }, null, 2)}\n`;
}

async function main(): Promise<void> {
  const { host, port, identityConfig } = options(process.argv.slice(2), process.env);
  const issuer = await startDevIssuer({ host, port, tokenEndpoint: true });
  if (identityConfig)
    writeFileSync(identityConfig, identityConfigFor(issuer.url, issuer.issuerConfig.clientId));
  process.stdout.write(
    `development OIDC issuer on ${issuer.url} (tokens: ${issuer.url}/token?email=you@example.com)` +
      `${identityConfig ? `; identity config written to ${identityConfig}` : ''}\n` +
      'ANYBODY WHO CAN REACH IT CAN MINT IDENTITIES: never expose it, never trust it in production\n',
  );
  const stop = () => void issuer.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `dev-issuer: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
