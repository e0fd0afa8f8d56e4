import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../../common/logger';

/** A request id on every log line: the caller's X-Request-Id if sane, else a fresh one. */

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

declare module 'express-serve-static-core' {
  interface Locals {
    requestId: string;
    log: Logger;
  }
}

/** The request id (echoed in X-Request-Id) and the logger that puts it on every line. */
export function requestIdentity(
  logger: Logger,
  incoming: string | undefined,
  res: ServerResponse,
): { requestId: string; log: Logger } {
  const requestId = incoming && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
  res.setHeader('X-Request-Id', requestId);
  return { requestId, log: logger.child({ requestId }) };
}

export function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const { requestId, log } = requestIdentity(logger, req.get('x-request-id'), res);
    res.locals.requestId = requestId;
    res.locals.log = log;
    next();
  };
}
