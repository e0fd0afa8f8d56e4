import { emailIssuerType } from './email/email';
import type { IssuerTypeHandler } from './types';

/** Issuer types this build understands. The identity issue adds the rest of Fulcio's. */
export const ISSUER_TYPE_HANDLERS: ReadonlyMap<string, IssuerTypeHandler> = new Map(
  [emailIssuerType].map((handler) => [handler.type, handler]),
);
