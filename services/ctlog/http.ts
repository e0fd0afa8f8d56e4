import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../common/logger';
import { LogRequestError, LogUnavailableError, type CtLog } from './log';
import type { CtlogMetrics } from './metrics';
import type { ReadPath } from './read-path';
import { StorageUnavailableError } from './storage/storage';
import type { Root, TemporalInterval } from './submission';
import {
  MALFORMED_JSON,
  TOO_LARGE,
  failureAnswer,
  submit,
  type Endpoint,
  type SubmitAnswer,
} from './write-path';

/**
 * The only module that knows Express. RFC 6962 §4 endpoints under /ct/v1/, the
 * static-ct-api assets at the root, /log.json, health and metrics. Client mistakes are 400
 * with a fixed text message (ct-go's servers answer plain text too); details go to the log.
 */

export interface HttpDeps {
  readonly log: CtLog;
  readonly roots: readonly Root[];
  readonly temporal: TemporalInterval;
  readonly logger: Logger;
  readonly metrics: CtlogMetrics;
  readonly logJson: () => object;
  readonly ready: () => boolean;
  readonly maxBodyBytes: number;
  readonly readPath: ReadPath;
}

const UINT = /^\d{1,15}$/;

function uintParam(req: Request, name: string): number {
  const v = req.query[name];
  if (typeof v !== 'string' || !UINT.test(v)) throw new LogRequestError(`bad or missing ${name}`);
  return Number(v);
}

function b64(b: Buffer): string {
  return b.toString('base64');
}

type Handler = (req: Request, res: Response) => Promise<void>;

export function createHttpApp(deps: HttpDeps): express.Express {
  const { log, logger, metrics } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path ?? req.baseUrl ?? 'other';
      metrics.httpRequests.observe(
        {
          route: typeof route === 'string' && route ? route : 'other',
          code: String(res.statusCode),
        },
        Number(process.hrtime.bigint() - start) / 1e9,
      );
    });
    next();
  });

  const route =
    (h: Handler) =>
    (req: Request, res: Response, next: NextFunction): void => {
      h(req, res).catch(next);
    };

  const submission = (endpoint: Endpoint) =>
    route(async (req, res) => {
      let answer: SubmitAnswer;
      try {
        answer = await submit(deps, req.body, endpoint);
      } catch (err) {
        answer = failureAnswer(err, req.path, endpoint, deps);
      }
      res.status(answer.status);
      if (answer.json !== undefined) res.json(answer.json);
      else res.type('text/plain').send(answer.text);
    });

  const json = express.json({ limit: deps.maxBodyBytes, type: () => true });
  // The plain requests never get here: write-path.ts's node:http front takes them first.
  app.post('/ct/v1/add-chain', json, submission('add-chain'));
  app.post('/ct/v1/add-pre-chain', json, submission('add-pre-chain'));
  app.get('/ct/v1/get-roots', (_req, res) => {
    res.json({ certificates: deps.roots.map((r) => b64(r.der)) });
  });
  app.get(
    '/ct/v1/get-sth',
    route(async (_req, res) => {
      const sth = await log.sth();
      res.set('Cache-Control', 'no-cache').json({
        tree_size: sth.size,
        timestamp: sth.timestamp,
        sha256_root_hash: b64(sth.root),
        tree_head_signature: b64(sth.signature),
      });
    }),
  );
  app.get(
    '/ct/v1/get-sth-consistency',
    route(async (req, res) => {
      const proof = await log.consistency(uintParam(req, 'first'), uintParam(req, 'second'));
      res.json({ consistency: proof.map(b64) });
    }),
  );
  app.get(
    '/ct/v1/get-proof-by-hash',
    route(async (req, res) => {
      const hashText = req.query.hash;
      const hash = typeof hashText === 'string' ? Buffer.from(hashText, 'base64') : undefined;
      if (!hash || hash.length !== 32) throw new LogRequestError('bad or missing hash');
      const { index, path } = await log.proofByHash(hash, uintParam(req, 'tree_size'));
      res.json({ leaf_index: index, audit_path: path.map(b64) });
    }),
  );
  app.get(
    '/ct/v1/get-entries',
    route(async (req, res) => {
      const entries = await log.entries(uintParam(req, 'start'), uintParam(req, 'end'));
      res.json({
        entries: entries.map((e) => ({ leaf_input: b64(e.leaf), extra_data: b64(e.extra) })),
      });
    }),
  );
  app.get(
    '/ct/v1/get-entry-and-proof',
    route(async (req, res) => {
      const r = await log.entryAndProof(uintParam(req, 'leaf_index'), uintParam(req, 'tree_size'));
      res.json({ leaf_input: b64(r.leaf), extra_data: b64(r.extra), audit_path: r.path.map(b64) });
    }),
  );

  // The static-ct-api assets: node:http answers them before Express (read-path.ts); these
  // routes take the spellings it leaves here (Express matches case-insensitively and with a
  // trailing slash) and run the same handlers.
  app.get('/checkpoint', (_req, res) => deps.readPath.checkpoint(res));
  app.get(/^\/tile\/(.+)$/, (req, res) => deps.readPath.tile(req.path, res));
  app.get('/issuer/:fingerprint', (req, res) =>
    deps.readPath.issuer(`/issuer/${String(req.params.fingerprint)}`, res),
  );
  app.get('/log.json', (_req, res) => {
    res.json(deps.logJson());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const ok = deps.ready();
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not ready' });
  });
  app.get(
    '/metrics',
    route(async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    }),
  );

  app.use((_req: Request, res: Response) => {
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number };
    if (err instanceof LogRequestError) {
      res.status(400).type('text/plain').send(`${err.message}\n`);
      return;
    }
    if (e.type === 'entity.too.large' || e.type === 'entity.parse.failed' || e.status === 400) {
      const endpoint = req.path.endsWith('pre-chain') ? 'add-pre-chain' : 'add-chain';
      metrics.submissions.inc({ endpoint, result: 'refused' });
      res
        .status(400)
        .type('text/plain')
        .send(e.type === 'entity.too.large' ? TOO_LARGE : MALFORMED_JSON);
      return;
    }
    if (err instanceof LogUnavailableError || err instanceof StorageUnavailableError) {
      logger.warn({ err: err.message, path: req.path }, 'log unavailable');
      res.status(503).type('text/plain').send('log unavailable, retry later\n');
      return;
    }
    if (req.path.startsWith('/ct/v1/add'))
      metrics.submissions.inc({ endpoint: req.path.slice(7), result: 'error' });
    logger.error({ err, path: req.path }, 'request failed');
    res.status(500).type('text/plain').send('internal error\n');
  });
  return app;
}
