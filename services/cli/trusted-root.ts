import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  buildTrustedRoot,
  fetchCaChains,
  fetchTsaChain,
  readPemChain,
  type Chain,
  type CtLogInput,
} from './trust-material';

const HELP = `usage: mayfly trusted-root [options]

Writes a Sigstore TrustedRoot (${'application/vnd.dev.sigstore.trustedroot+json;version=0.1'})
for verifiers: the CA chains (all of them during a rotation), the TSA chain and CT logs.

  --ca-url URL        a running CA: its chains from GET /api/v2/trustBundle
  --ca-chain FILE     a CA chain as PEM, issuing certificate first (repeatable)
  --tsa-url URL       a running TSA: its chain from GET /api/v1/timestamp/certchain
  --tsa-chain FILE    a TSA chain as PEM, TSA certificate first (repeatable)
  --ctlog SPEC        a CT log: BASE_URL,PEM_KEY_FILE[,VALID_FROM] (repeatable;
                      VALID_FROM is an ISO 8601 time, default now)
  --operator NAME     the operator named on every entry
  --out FILE          where to write (default: standard output)
`;

function parseCtLog(spec: string): { baseUrl: string; keyFile: string; validFrom: Date } {
  const [baseUrl, keyFile, from] = spec.split(',');
  if (!baseUrl || !keyFile)
    throw new Error(`--ctlog wants BASE_URL,PEM_KEY_FILE[,VALID_FROM], got "${spec}"`);
  const validFrom = from ? new Date(from) : new Date();
  if (Number.isNaN(validFrom.getTime())) throw new Error(`--ctlog: not a time: ${from}`);
  return { baseUrl, keyFile, validFrom };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'ca-url': { type: 'string' },
      'ca-chain': { type: 'string', multiple: true },
      'tsa-url': { type: 'string' },
      'tsa-chain': { type: 'string', multiple: true },
      ctlog: { type: 'string', multiple: true },
      operator: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const caChains: Chain[] = [];
  if (values['ca-url']) caChains.push(...(await fetchCaChains(values['ca-url'])));
  for (const file of values['ca-chain'] ?? []) caChains.push(await readPemChain(file));
  const tsaChains: Chain[] = [];
  if (values['tsa-url']) tsaChains.push(await fetchTsaChain(values['tsa-url']));
  for (const file of values['tsa-chain'] ?? []) tsaChains.push(await readPemChain(file));
  if (caChains.length === 0) {
    process.stderr.write(`mayfly trusted-root: give --ca-url or --ca-chain\n\n${HELP}`);
    return 2;
  }
  const ctLogs: CtLogInput[] = [];
  for (const spec of values.ctlog ?? []) {
    const { baseUrl, keyFile, validFrom } = parseCtLog(spec);
    ctLogs.push({ baseUrl, publicKeyPem: await readFile(keyFile, 'utf8'), validFrom });
  }
  const root = buildTrustedRoot({
    caChains,
    ...(values['ca-url'] ? { caUri: values['ca-url'] } : {}),
    tsaChains,
    ...(values['tsa-url'] ? { tsaUri: values['tsa-url'] } : {}),
    ctLogs,
    ...(values.operator ? { operator: values.operator } : {}),
  });
  const text = `${JSON.stringify(root, null, 2)}\n`;
  if (values.out) await writeFile(values.out, text);
  else process.stdout.write(text);
  return 0;
}
