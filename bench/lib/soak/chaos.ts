import type { DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import type { PostgresProcess } from '../../../test/helpers/postgres';
import { findLeader, treeSize, type LogReplica } from './ctlog';
import { until } from './procs';
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
  /** With `--ct`: the two CT log replicas and their PostgreSQL. */
  readonly ct?: {
    readonly replicas: readonly LogReplica[];
    readonly postgres: PostgresProcess;
    /** The log's base URL (its nginx). */
    readonly url: string;
  };
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

/**
 * The CT log's faults, between the first Redis failover and the second (which must wait for
 * Sentinel's failover timeout anyway): the replica that sequences is killed (the other one
 * takes the lock over) and comes back as a follower; then PostgreSQL restarts under load.
 */
function ctSteps(ct: NonNullable<ChaosTargets['ct']>): ChaosStep[] {
  let killed: LogReplica | undefined;
  return [
    {
      at: 0.4,
      label: 'CT log: kill -9 the sequencer leader',
      run: async () => {
        const leader = await findLeader(ct.replicas);
        const pid = leader.pid;
        const from = Date.now();
        await leader.crash();
        killed = leader;
        const next = await findLeader(ct.replicas.filter((r) => r !== leader));
        return `${leader.name} (pid ${pid}) killed with SIGKILL; ${next.name} reports leading after ${ms(from)}`;
      },
    },
    {
      at: 0.45,
      label: 'CT log: restart the killed replica',
      run: async () => {
        if (!killed) return 'nothing to restart';
        const took = await killed.start();
        return `${killed.name} pid ${killed.pid} listening on :${killed.port} after ${took} ms`;
      },
    },
    {
      at: 0.5,
      label: 'PostgreSQL: fast restart (pg_ctl restart -m fast)',
      run: async () => {
        const before = await treeSize(ct.url);
        const from = Date.now();
        await ct.postgres.restart('fast');
        const up = ms(from);
        // Sequencing resumed: the published tree grew past its size before the restart.
        const after = await until(
          'the tree to grow again',
          async () => {
            const size = await treeSize(ct.url);
            return size > before ? size : undefined;
          },
          30_000,
          50,
        );
        const leader = await findLeader(ct.replicas);
        return `stopped and ready again after ${up}; tree ${before} -> ${after} (sequencing again) after ${ms(from)}; ${leader.name} leads`;
      },
    },
  ];
}

export function chaosSteps({ replicas, redis, issuer, ct }: ChaosTargets): ChaosStep[] {
  const [a, b, c] = replicas;
  if (!a || !b || !c) throw new Error('the chaos schedule needs three replicas');
  let jwksRequestsAtDown = 0;
  let killedRedis: RedisNode | undefined;
  const steps: ChaosStep[] = [
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
  if (ct) {
    const at = steps.findIndex((s) => s.at > 0.36);
    steps.splice(at, 0, ...ctSteps(ct));
  }
  return steps;
}
