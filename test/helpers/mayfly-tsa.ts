import { X509Certificate } from 'node:crypto';
import type { RequestListener, Server } from 'node:http';
import pino from 'pino';
import type { Clock } from '../../services/common/clock';
import { silentLogger, type Logger } from '../../services/common/logger';
import type { CaSigner } from '../../services/common/signer/signer';
import { createTsaApp, listen, type TsaApp } from '../../services/tsa/app';
import { tsaConfig, type TsaConfig } from '../../services/tsa/config';

/** mayfly's own TSA, in process, listening on 127.0.0.1 (a free port). */
export interface TestTsa {
  /** Base URL without trailing slash; POST `${url}/api/v1/timestamp`. */
  readonly url: string;
  readonly app: TsaApp;
  /** TSA chain, TSA certificate first, as PEM (one block each) and DER. */
  readonly certChainPem: string[];
  readonly certChainDer: Buffer[];
  /** Audit lines written so far (parsed JSON). */
  readonly audit: Record<string, unknown>[];
  /** Timestamps answered 201 so far, by request encoding (counted at the HTTP layer). */
  readonly issued: { json: number; der: number };
  close(): Promise<void>;
}

export interface TestTsaOptions {
  readonly config?: Partial<TsaConfig>;
  readonly clock?: Clock;
  readonly signer?: CaSigner;
  readonly logger?: Logger;
}

export async function startTestTsa(options: TestTsaOptions = {}): Promise<TestTsa> {
  const audit: Record<string, unknown>[] = [];
  const auditLogger = pino(
    { level: 'info' },
    {
      write(line: string) {
        audit.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  const app = await createTsaApp(tsaConfig(options.config ?? {}), options.logger ?? silentLogger, {
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.signer ? { signer: options.signer } : {}),
    audit: auditLogger,
  });
  const issued = { json: 0, der: 0 };
  const counting: RequestListener = (req, res) => {
    res.on('finish', () => {
      if (res.statusCode !== 201) return;
      if (req.headers['content-type']?.startsWith('application/json')) issued.json++;
      else issued.der++;
    });
    app.handler(req, res);
  };
  const { server, port }: { server: Server; port: number } = await listen(counting, '127.0.0.1', 0);
  const certChainDer = app.signer.chain.map((d) => Buffer.from(d));
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    certChainDer,
    certChainPem: certChainDer.map((d) => new X509Certificate(d).toString()),
    audit,
    issued,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await app.close();
    },
  };
}
