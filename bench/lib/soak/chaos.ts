import type { DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import { SENTINEL_NAME, type RedisNode, type SentinelGroup } from './redis';
import type { Replica } from './replicas';
import type { ChaosStep } from './schedule';

/**
 * What goes wrong during the soak, and when (fractions of the run). The faults do not
 * overlap: each one's effect is visible on its own in the report's windows, and a replica
 * never starts while the JWKS endpoint is down (a fresh replica has no cached keys, so it
 * could not verify anything until the issuer came back: a real outage, not the one tested).
 */

export interface ChaosTargets {
  /** Exactly three. */
  readonly replicas: readonly Replica[];
  readonly redis: SentinelGroup;
  readonly issuer: DevIssuer;
}

const ms = (from: number) => `${Date.now() - from} ms`;

function crash(replica: Replica): () => Promise<string> {
  return async () => {
    const pid = replica.pid;
    await replica.crash();
    return `pid ${pid} killed with SIGKILL`;
  };
}

function restart(replica: Replica): () => Promise<string> {
  return async () => {
    const took = await replica.start();
    return `pid ${replica.pid} listening on :${replica.port} after ${took} ms`;
  };
}

export function chaosSteps({ replicas, redis, issuer }: ChaosTargets): ChaosStep[] {
  const [a, b, c] = replicas;
  if (!a || !b || !c) throw new Error('the chaos schedule needs three replicas');
  let jwksRequestsAtDown = 0;
  let killedRedis: RedisNode | undefined;
  return [
    { at: 0.08, label: `kill -9 ${a.name}`, run: crash(a) },
    { at: 0.16, label: `restart ${a.name}`, run: restart(a) },
    {
      at: 0.22,
      label: `SIGTERM ${b.name} (graceful drain)`,
      drains: `127.0.0.1:${b.port}`,
      run: async () => {
        const pid = b.pid;
        const took = await b.terminate();
        return `pid ${pid} drained and exited in ${took} ms`;
      },
    },
    { at: 0.3, label: `restart ${b.name}`, run: restart(b) },
    {
      at: 0.36,
      label: 'Redis: SENTINEL FAILOVER',
      run: async () => {
        const from = Date.now();
        const old = await redis.primary();
        await redis.sentinels[0]!.cli('SENTINEL', 'FAILOVER', SENTINEL_NAME);
        const next = await redis.waitForNewPrimary(old.port);
        return `primary ${old.name} :${old.port} -> ${next.name} :${next.port} in ${ms(from)}`;
      },
    },
    {
      // At least twice Sentinel's failover-timeout after the previous failover, or the
      // sentinels would refuse to fail the same group over again so soon.
      at: 0.58,
      label: 'Redis: kill -9 the primary',
      run: async () => {
        const from = Date.now();
        const old = await redis.primary();
        await old.kill('SIGKILL');
        killedRedis = old;
        const next = await redis.waitForNewPrimary(old.port);
        return `${old.name} :${old.port} killed; sentinels promoted ${next.name} :${next.port} after ${ms(from)}`;
      },
    },
    {
      at: 0.63,
      label: 'Redis: restart the killed node',
      run: async () => {
        if (!killedRedis) return 'nothing to restart';
        const from = Date.now();
        await killedRedis.start();
        await redis.waitForReplica(killedRedis);
        return `${killedRedis.name} back, replicating from the new primary after ${ms(from)}`;
      },
    },
    {
      at: 0.66,
      label: 'JWKS endpoint down (HTTP 503)',
      run: () => {
        jwksRequestsAtDown = issuer.requests.jwks;
        issuer.setJwksMode('down');
        return Promise.resolve();
      },
    },
    {
      at: 0.8,
      label: 'JWKS endpoint back',
      run: () => {
        issuer.setJwksMode('normal');
        return Promise.resolve(
          `${issuer.requests.jwks - jwksRequestsAtDown} JWKS fetches reached the issuer while it was down`,
        );
      },
    },
    { at: 0.85, label: `kill -9 ${c.name}`, run: crash(c) },
    { at: 0.93, label: `restart ${c.name}`, run: restart(c) },
  ];
}
