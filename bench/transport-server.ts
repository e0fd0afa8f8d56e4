import { createServer } from 'node:http';

/**
 * The transport floor: what node:http alone costs per signing request on this machine. It
 * reads the same request bodies to the end and answers each with a canned 200 response of
 * the size mayfly's v2 answer has (a three-certificate chain in JSON), with no
 * cryptography and no logging. mayfly's CPU per certificate minus this is what mayfly itself
 * spends. Prints `listening <port>` when ready.
 */

const RESPONSE_BYTES = Number(process.env.TRANSPORT_RESPONSE_BYTES ?? 2900);
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
