import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildSigningConfig } from './trust-material';

const HELP = `usage: mayfly signing-config [options]

Writes a Sigstore SigningConfig (application/vnd.dev.sigstore.signingconfig.v0.2+json)
naming the services clients sign with.

  --ca-url URL        the CA's base URL (required)
  --tsa-url URL       the TSA's base URL (its /api/v1/timestamp is named)
  --oidc-url URL      the OIDC issuer clients get tokens from
  --operator NAME     the operator named on every service (default: mayfly)
  --valid-from TIME   ISO 8601 start of the services' validity (default: now)
  --out FILE          where to write (default: standard output)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'ca-url': { type: 'string' },
      'tsa-url': { type: 'string' },
      'oidc-url': { type: 'string' },
      operator: { type: 'string' },
      'valid-from': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values['ca-url']) {
    process.stderr.write(`mayfly signing-config: --ca-url is required\n\n${HELP}`);
    return 2;
  }
  const validFrom = values['valid-from'] ? new Date(values['valid-from']) : new Date();
  if (Number.isNaN(validFrom.getTime())) {
    process.stderr.write(`mayfly signing-config: not a time: ${values['valid-from']}\n`);
    return 2;
  }
  const config = buildSigningConfig({
    caUrl: values['ca-url'],
    ...(values['tsa-url'] ? { tsaUrl: values['tsa-url'] } : {}),
    ...(values['oidc-url'] ? { oidcUrl: values['oidc-url'] } : {}),
    ...(values.operator ? { operator: values.operator } : {}),
    validFrom,
  });
  const text = `${JSON.stringify(config, null, 2)}\n`;
  if (values.out) await writeFile(values.out, text);
  else process.stdout.write(text);
  return 0;
}
