import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { generousLimitsFile, makeFixtures } from './lib/fixtures';
import { machineFacts } from './lib/proc';
import { makeSoakCa } from './lib/soak/ca';
import { chaosSteps } from './lib/soak/chaos';
import {
  buildInclusionChecker,
  checkInclusion,
  startSoakLog,
  treeSize,
  type InclusionCheck,
} from './lib/soak/ctlog';
import { summarizeLogs } from './lib/soak/logs';
import { emptyStats, runSoakLoad } from './lib/soak/client';
import { ensureNginx, startNginx, summarizeAccessLog, summarizeErrorLog } from './lib/soak/nginx';
import { parseOptions, type SoakOptions } from './lib/soak/options';
import { stablePort, until } from './lib/soak/procs';
import { SENTINEL_NAME, startSentinelGroup } from './lib/soak/redis';
import { Replica } from './lib/soak/replicas';
import {
  countCuts,
  renderReport,
  verdict,
  type CtOutcome,
  type ReplicaRow,
} from './lib/soak/report';
import { Schedule } from './lib/soak/schedule';
import { CertificateChecker } from './lib/soak/verify';

/**
 * `npm run soak`: a chaos soak of a small mayfly deployment on this machine. Three replicas
 * (the compiled service, one process each, one shared file CA) behind nginx, rate limits in
 * Redis behind Sentinel, the development OIDC issuer in this process; a steady open-loop
 * load of v2 and v1 signing requests with client retries; meanwhile replicas are killed and
 * drained, Redis fails over twice and the JWKS endpoint goes down. Every certificate is
 * checked. Writes bench/results/soak-<time>.md and soak-latest.md, prints the report, and
 * exits 1 when under 99.99 % of requests got a certificate or any certificate was wrong.
 *
 *   npm run soak -- --duration 60s --rate 50      (or SOAK_DURATION=60s SOAK_RATE=50)
 *   flags: --duration, --rate, --target, --identities, --retries, --out DIR, --keep, --ct
 *
 * `--ct` (or SOAK_CT=1) adds mayfly's CT log: PostgreSQL, two log replicas behind an nginx
 * of their own, the CA replicas embedding its SCTs; the log's sequencer leader is killed and
 * PostgreSQL restarted during the load, every certificate must carry a verified SCT, and at
 * the end certificate-transparency-go checks each one's entry in the log's tree.
 */

const repoRoot = resolve(__dirname, '..', '..');
const mainJs = join(repoRoot, 'dist/services/ca/main.js');
const ctlogMainJs = join(repoRoot, 'dist/services/ctlog/main.js');

function log(line: string): void {
  process.stderr.write(`soak: ${line}\n`);
}

function version(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '?';
}

const load3 = () => loadavg().map((x) => Math.round(x * 100) / 100);

function requireTools(): void {
  for (const tool of ['redis-server', 'redis-cli'])
    if (spawnSync(tool, ['--version']).status !== 0)
      throw new Error(`${tool} is needed (Debian: apt-get install redis-server)`);
  if (!existsSync(mainJs))
    throw new Error(`${mainJs} is missing: run \`npm run soak\` (it builds first)`);
}

async function soak(options: SoakOptions, command: string): Promise<boolean> {
  requireTools();
  const nginxBinary = ensureNginx(log);
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-soak-'));
  const started = new Date();
  const loadBefore = load3();
  log(`scratch ${dir}; ${options.durationMs / 1000} s at ${options.rate}/s`);

  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const ca = await makeSoakCa(dir);
  // Tokens outlive the run: a token that expired mid-soak would be a client bug, not chaos.
  const expiresIn = Math.ceil(options.durationMs / 1000) + 3600;
  const rsa = Math.floor(options.identities / 5);
  const es = await makeFixtures(issuer, options.identities - rsa, 'ES256', 'soak-es', expiresIn);
  const rs = await makeFixtures(issuer, rsa, 'RS256', 'soak-rs', expiresIn);
  // Interleaved (every fifth is RS256), so both token algorithms run all through the run.
  const fixtures = es.flatMap((f, i) => (i % 4 === 3 && rs.length ? [f, rs.pop()!] : [f]));
  fixtures.push(...rs);
  log(`${fixtures.length} identities, each with a token, a P-256 key and its proof`);

  const redis = await startSentinelGroup(join(dir, 'redis'));
  log(
    `Redis: primary :${redis.nodes[0]!.port}, replica :${redis.nodes[1]!.port}, sentinels ${redis.sentinelAddresses.join(' ')}`,
  );

  const ctLog = options.ct
    ? await startSoakLog({
        dir,
        mainJs: ctlogMainJs,
        cwd: repoRoot,
        nginxBinary,
        root: ca.chain[ca.chain.length - 1]!,
      })
    : undefined;
  // Built before the load (a first build would compete with it for the CPU).
  const inclusionChecker = ctLog ? buildInclusionChecker(repoRoot) : undefined;
  if (ctLog)
    log(
      `CT log: ${ctLog.postgresVersion} on :${ctLog.postgres.port}; replicas ${ctLog.replicas.map((r) => `:${r.port}`).join(' ')} behind ${ctLog.url}`,
    );

  const env: Record<string, string> = {
    MAYFLY_LOG_LEVEL: 'info',
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
    MAYFLY_CA: 'file',
    MAYFLY_CA_CERT: ca.chainFile,
    MAYFLY_CA_KEY: ca.keyFile,
    // Limits no request reaches (distinct identities, too): what is measured is whether
    // the limiter's Redis round-trips survive the faults, not the limits themselves.
    MAYFLY_RATELIMITS: generousLimitsFile(dir),
    MAYFLY_REDIS_SENTINELS: redis.sentinelAddresses.join(','),
    MAYFLY_REDIS_SENTINEL_NAME: SENTINEL_NAME,
    // nginx is the client's hop: its X-Forwarded-For names the client for per-IP limits.
    MAYFLY_TRUSTED_PROXIES: 'loopback',
    MAYFLY_SHUTDOWN_GRACE_MS: '10000',
    ...(ctLog
      ? { MAYFLY_CT_LOG_URL: ctLog.url, MAYFLY_CT_LOG_PUBLIC_KEY_FILE: ctLog.key.publicKeyFile }
      : {}),
  };
  const replicas: Replica[] = [];
  for (const name of ['replica-a', 'replica-b', 'replica-c']) {
    replicas.push(
      new Replica(name, await stablePort(), {
        mainJs,
        cwd: repoRoot,
        dir,
        env: { ...env, MAYFLY_AUDIT_LOG_FILE: join(dir, `${name}-audit.log`) },
      }),
    );
  }
  await Promise.all(replicas.map((r) => r.start()));
  log(`replicas on ${replicas.map((r) => `:${r.port}`).join(' ')}`);

  const nginx = await startNginx(nginxBinary, {
    dir: join(dir, 'nginx'),
    port: await stablePort(),
    upstreams: replicas.map((r) => r.port),
  });
  log(`nginx on ${nginx.url}`);

  // Warm-up: a few requests straight to each replica (keys fetched, code paths compiled),
  // checked like the rest, before any figure is taken.
  for (const replica of replicas) {
    const warm = await runSoakLoad({
      url: `http://127.0.0.1:${replica.port}`,
      fixtures,
      rate: 20,
      durationMs: 500,
      retries: 0,
      checker: new CertificateChecker(ca.chain, ctLog?.key.key),
      windowOf: () => 0,
    });
    if (warm.succeeded !== warm.requests)
      throw new Error(
        `warm-up of ${replica.name} failed: ${JSON.stringify([...warm.finalFailures])} ${warm.wrongExamples.join('; ')}`,
      );
    replica.current!.rssAtStartMb = replica.rssMb();
  }
  const startRows = replicas.map((r) => ({ pid: r.pid, rss: r.current!.rssAtStartMb }));

  const schedule = new Schedule(
    chaosSteps({
      replicas,
      redis,
      issuer,
      ...(ctLog
        ? { ct: { replicas: ctLog.replicas, postgres: ctLog.postgres, url: ctLog.url } }
        : {}),
    }),
  );
  const checker = new CertificateChecker(ca.chain, ctLog?.key.key);
  const stats = emptyStats();
  const loadSamples: number[] = [];
  const origin = performance.now();
  // nginx logs wall-clock times; the schedule counts from `origin`.
  const originWallMs = Date.now();
  const every = Math.max(5000, Math.min(30_000, options.durationMs / 20));
  const progress = setInterval(() => {
    loadSamples.push(loadavg()[0]!);
    log(
      `t=${Math.round(schedule.elapsed() / 1000)}s requests ${stats.requests}, certificates ${stats.succeeded}, failed ${stats.failed}, retries ${stats.retries}, in flight ${stats.inFlight}, load ${load3()[0]}`,
    );
  }, every);
  const [, loadDone] = await Promise.all([
    schedule.run(origin, options.durationMs, log),
    runSoakLoad(
      {
        url: nginx.url,
        fixtures,
        rate: options.rate,
        durationMs: options.durationMs,
        retries: options.retries,
        checker,
        windowOf: () => schedule.window(),
      },
      stats,
    ).then(() => performance.now()),
  ]);
  clearInterval(progress);
  const loadAfter = load3();
  const loadSeconds = (loadDone - origin) / 1000;

  const rows: ReplicaRow[] = replicas.map((r, i) => ({
    name: r.name,
    port: r.port,
    startPid: startRows[i]!.pid,
    startRssMb: startRows[i]!.rss,
    firstStopRssMb: r.incarnations[0]!.rssAtStopMb,
    firstLifeSeconds:
      r.incarnations[0]!.stoppedAt === undefined
        ? undefined
        : (r.incarnations[0]!.stoppedAt - r.incarnations[0]!.startedAt) / 1000,
    endPid: r.pid,
    endRssMb: r.rssMb(),
    endPeakRssMb: r.peakRssMb(),
    starts: r.incarnations.length,
  }));

  // Proof that the limiter's state really lived in Redis, and where it ended up.
  const finalPrimary = await redis.primary().catch(() => undefined);
  const redisKeys = await finalPrimary?.cli('DBSIZE').catch(() => '?');

  // The CT log's final check, through its nginx, while everything still runs.
  let ctChecked:
    | { inclusion: InclusionCheck; published: boolean; figures: CertificateChecker['ctFigures'] }
    | undefined;
  if (ctLog && inclusionChecker) {
    const f = checker.ctFigures;
    log(`CT: checking ${f.leaves.length} certificates' entries in the log with ct-go`);
    // Every leaf_index seen is sequenced, so it is in a checkpoint; get-sth may lag a second.
    const size = await until(
      'the log to publish every entry',
      async () => ((await treeSize(ctLog.url)) > f.maxLeafIndex ? true : undefined),
      30_000,
      500,
    ).catch(() => false);
    const inclusion = await checkInclusion(
      inclusionChecker,
      ctLog.url,
      ctLog.key,
      ca.chain,
      f.leaves,
    );
    log(
      `CT: ${inclusion.included} of ${inclusion.checked} entries included (tree ${inclusion.treeSize}) in ${inclusion.ms} ms${inclusion.failures.length ? `; ${inclusion.failures.join('; ')}` : ''}`,
    );
    ctChecked = { inclusion, published: size === true, figures: f };
  }

  await nginx.stop();
  const access = summarizeAccessLog(nginx.accessLog);
  const cuts = countCuts(
    access.cutAttempts,
    schedule.records,
    originWallMs,
    new Map(replicas.map((r) => [`127.0.0.1:${r.port}`, r.name])),
  );
  const nginxErrors = summarizeErrorLog(nginx.errorLog);
  await Promise.all(replicas.map((r) => r.terminate()));
  await redis.stop();
  await issuer.close();
  let ct: CtOutcome | undefined;
  if (ctLog && ctChecked) {
    const logReplicas = ctLog.replicas.map((r) => ({
      name: r.name,
      port: r.port,
      pids: [...r.pids],
      leaderships: r.leadershipsTaken(),
    }));
    await ctLog.stop();
    const f = ctChecked.figures;
    ct = {
      sctVerified: f.sctVerified,
      maxLeafIndex: f.maxLeafIndex,
      skewMs: [f.minSkewMs, f.maxSkewMs],
      published: ctChecked.published,
      inclusion: ctChecked.inclusion,
      logReplicas,
      access: summarizeAccessLog(ctLog.nginx.accessLog),
      logLines: summarizeLogs(ctLog.replicas.map((r) => r.logFile)),
    };
  }

  const root = ca.chain[ca.chain.length - 1]!;
  const report = {
    started,
    command,
    options,
    loadSeconds,
    machine: machineFacts(),
    loadAverage: {
      before: loadBefore,
      after: loadAfter,
      duringMean: loadSamples.length
        ? loadSamples.reduce((a, b) => a + b, 0) / loadSamples.length
        : NaN,
      duringMax: loadSamples.length ? Math.max(...loadSamples) : NaN,
    },
    setup: [
      [
        'replicas',
        `3 × \`node dist/services/ca/main.js\` (one process each, no cluster) on ${replicas.map((r) => `:${r.port}`).join(', ')}; file CA; info logs and audit log to files`,
      ],
      [
        'load balancer',
        `${version(nginxBinary, ['-v'])} on ${nginx.url}: upstream keepalive 32, max_fails=1 fail_timeout=3s, proxy_next_upstream error timeout http_502 http_503 non_idempotent, 3 tries`,
      ],
      [
        'Redis',
        `${version('redis-server', ['--version'])}: a primary, a replica and 3 sentinels (quorum 2, down-after 1 s) on loopback; mayfly connects through the sentinels; failure policy fail-open`,
      ],
      [
        'OIDC issuer',
        `services/dev-issuer in the soak process, ${issuer.url}; ${fixtures.length} identities (${fixtures.length - rsa} ES256, ${rsa} RS256 tokens), each with its own P-256 key and proof, used in turn`,
      ],
      [
        'CA',
        `one file CA for all replicas: ${ca.chain.map((c) => c.subject.replace(/\n/g, ', ')).join(' ← ')}; root SHA-256 ${root.fingerprint256}`,
      ],
      ...(ctLog
        ? ([
            [
              'CT log',
              `2 × \`node dist/services/ctlog/main.js\` (${ctLog.replicas.map((r) => `${r.name} :${r.port}`).join(', ')}) on one ${ctLog.postgresVersion} (initdb in a temporary folder, loopback :${ctLog.postgres.port}); one sequencer elected by advisory lock, default sequencing interval (100 ms); one P-256 log key (PKCS#8 PEM) for both; accepts the soak root only`,
            ],
            [
              'CT log front',
              `a second nginx on ${ctLog.url}, the same config except that a 503 of a log replica (its database away) goes back to the CA instead of on to the other replica; the CA replicas have MAYFLY_CT_LOG_URL=${ctLog.url} and the log's public key (MAYFLY_CT_MIN_SCTS 1, MAYFLY_CT_TIMEOUT_MS 10000 by default)`,
            ],
          ] as [string, string][])
        : []),
      ['rate limits', 'on, through Redis, with limits no request reaches (bench/lib/fixtures.ts)'],
      [
        'Redis at the end',
        finalPrimary
          ? `primary ${finalPrimary.name} :${finalPrimary.port}, holding ${redisKeys} keys`
          : 'no primary named by the sentinels',
      ],
    ] as [string, string][],
    stats,
    nginx: access,
    cuts,
    nginxErrors,
    replicas: rows,
    schedule: schedule.records,
    windowLabel: (i: number) => schedule.windowLabel(i),
    certificatesChecked: checker.checked,
    replicaLogs: summarizeLogs(replicas.map((r) => r.logFile)),
    ...(ct ? { ct } : {}),
    scratch: dir,
  };
  const markdown = renderReport(report);
  const result = verdict(report);
  mkdirSync(options.outDir, { recursive: true });
  const stamp = started
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  // A run with the CT log has its own name, and leaves soak-latest.md to the plain soak.
  const file = join(options.outDir, `soak-${options.ct ? 'ct-' : ''}${stamp}.md`);
  writeFileSync(file, markdown);
  writeFileSync(
    join(options.outDir, options.ct ? 'soak-ct-latest.md' : 'soak-latest.md'),
    markdown,
  );
  process.stdout.write(markdown);
  log(`report: ${file}`);
  log(result.pass ? 'PASS' : `FAIL: ${result.reasons.join('; ')}`);
  if (result.pass && !options.keep) rmSync(dir, { recursive: true, force: true });
  return result.pass;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let options: SoakOptions;
  try {
    options = parseOptions(argv, process.env, repoRoot);
  } catch (err) {
    process.stderr.write(
      `soak: ${(err as Error).message}\nusage: npm run soak -- [--duration 10m] [--rate 100] [--target 0.9999] [--identities 1000] [--retries 2] [--out DIR] [--keep] [--ct]\n`,
    );
    process.exit(2);
  }
  // Ctrl-C: the exit hook in lib/soak/procs.ts kills every child.
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      log(`${signal}: stopping`);
      process.exit(130);
    });
  const command = `npm run soak${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const pass = await soak(options, command);
  process.exit(pass ? 0 : 1);
}

main().catch((err: unknown) => {
  log(`error: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
