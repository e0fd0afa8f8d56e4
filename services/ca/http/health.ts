import express from 'express';
import { sendJson } from './render';

/**
 * Liveness and readiness, served on the API port and on the metrics port.
 *
 * - `/healthz` (liveness): the process answers. Nothing else: restarting a process
 *   because a dependency is down only adds an outage.
 * - `/readyz` (readiness): not draining, and every check passes — the config was loaded,
 *   the signer is usable, the trust bundle is loaded. Redis and the OIDC issuers are not
 *   checks: the limiter has its failure policy, and an issuer outage affects only that
 *   issuer's tokens; taking every replica out of the Service for either would turn a
 *   partial outage into a full one.
 */

export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
}

export interface Health {
  /** False while draining. */
  ready(): boolean;
  /** What readiness depends on besides draining. */
  checks?(): readonly ReadinessCheck[];
}

export function healthRoutes(app: express.Express, health: Health): void {
  app.get('/healthz', (_req, res) => sendJson(res, 200, { status: 'SERVING' }));
  app.get('/readyz', (_req, res) => {
    if (!health.ready()) {
      sendJson(res, 503, { status: 'NOT_SERVING', failing: ['draining'] });
      return;
    }
    const failing = (health.checks?.() ?? []).filter((c) => !c.ok).map((c) => c.name);
    if (failing.length > 0) sendJson(res, 503, { status: 'NOT_SERVING', failing });
    else sendJson(res, 200, { status: 'SERVING' });
  });
}
