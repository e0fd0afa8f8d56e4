import type express from 'express';
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

/** The answer to a health path (`/healthz`, `/readyz`), or undefined for any other path. */
export function healthAnswer(
  path: string,
  health: Health,
): { status: number; body: object } | undefined {
  if (path === '/healthz') return { status: 200, body: { status: 'SERVING' } };
  if (path !== '/readyz') return undefined;
  if (!health.ready())
    return { status: 503, body: { status: 'NOT_SERVING', failing: ['draining'] } };
  const failing = (health.checks?.() ?? []).filter((c) => !c.ok).map((c) => c.name);
  return failing.length > 0
    ? { status: 503, body: { status: 'NOT_SERVING', failing } }
    : { status: 200, body: { status: 'SERVING' } };
}

export function healthRoutes(app: express.Express, health: Health): void {
  for (const path of ['/healthz', '/readyz']) {
    app.get(path, (_req, res) => {
      const answer = healthAnswer(path, health)!;
      sendJson(res, answer.status, answer.body);
    });
  }
}
