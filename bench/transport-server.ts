import { createServer } from 'node:http';

/**
 * The transport floor: what node:http alone costs per signing request on this machine. It
 * reads the same request bodies to the end and answers each with a canned 200 response of
 * the size mayfly's v2 answer has (a three-certificate chain in JSON), with no cryptography
 * and no logging. Before answering it burns TRANSPORT_BURN_US of CPU, so that it serves at a
 * CA's pace: at twenty times the rate the load generator never sleeps and every write is
 * cheaper than it is for a CA. Its CPU per request minus the burn is the transport's cost.
 * Prints `listening <port>` when ready.
 */

const RESPONSE_BYTES = Number(process.env.TRANSPORT_RESPONSE_BYTES ?? 2900);
/** CPU to burn per request before answering (µs), to serve at a CA's pace. */
const BURN_US = Number(process.env.TRANSPORT_BURN_US ?? 0);

function burn(): void {
  if (BURN_US <= 0) return;
  const started = process.cpuUsage();
  for (;;) {
    const used = process.cpuUsage(started);
    if (used.user + used.system >= BURN_US) return;
  }
}

const answer = Buffer.from(
  JSON.stringify({
    signedCertificateDetachedSct: {
      chain: { certificates: ['x'.repeat(Math.max(0, RESPONSE_BYTES - 90))] },
      signedCertificateTimestamp: '',
    },
  }),
);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    // Parsed, as every server must, so the JSON cost of the body is in the floor too.
    JSON.parse(Buffer.concat(chunks).toString('utf8'));
    burn();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
    res.end(answer);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
