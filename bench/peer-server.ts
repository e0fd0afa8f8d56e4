import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
// The Fulcio part only: the package's index also loads nock, which patches node:http.
import { fulcioHandler, initializeCA } from '@sigstore/mock/dist/fulcio';

/**
 * The peer: @sigstore/mock's Fulcio handler (the only other TypeScript Fulcio) served over
 * plain node:http on loopback, the way mayfly's fast path serves its signing routes. It
 * decodes the token without verifying it and does not check the proof of possession.
 * Prints `listening <port>` when ready.
 */

async function main(): Promise<void> {
  const keyPair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ca = await initializeCA(keyPair);
  const handler = fulcioHandler(ca);
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== handler.path) {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      handler
        .fn(Buffer.concat(chunks).toString('utf8'))
        .then(({ statusCode, response, contentType }) => {
          res.writeHead(statusCode, { 'content-type': contentType ?? 'text/plain' });
          res.end(response);
        })
        .catch(() => res.writeHead(500).end());
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(
      `listening ${typeof address === 'object' && address ? address.port : 0}\n`,
    );
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

void main();
