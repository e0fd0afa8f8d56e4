import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { accepts, spawnLogged, stopChild, until } from './procs';

/**
 * nginx in front of the replicas, as the load balancer a real deployment has: Debian's
 * package, run as the current user from a generated config in the scratch folder, on one
 * loopback port. Open-source nginx has only passive health checks, so a dead replica is
 * found by the requests that fail on it, and `proxy_next_upstream` sends those on.
 */

/** Debian installs nginx in /usr/sbin, which is not on a normal user's PATH. */
const SBIN = ['/usr/sbin', '/usr/local/sbin', '/sbin', '/usr/local/nginx/sbin'];

export function findNginx(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...SBIN].filter(Boolean);
  for (const dir of dirs) {
    const candidate = join(dir, 'nginx');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Finds nginx, installing Debian's package with apt-get when it is missing. */
export function ensureNginx(log: (line: string) => void): string {
  const found = findNginx();
  if (found) return found;
  const root = process.getuid?.() === 0;
  const sudo = !root && spawnSync('sudo', ['-n', 'true']).status === 0;
  if (!root && !sudo)
    throw new Error(
      'nginx is not installed and this user cannot install it: apt-get install nginx',
    );
  const asRoot = (args: string[]) =>
    execFileSync(root ? args[0]! : 'sudo', root ? args.slice(1) : args, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  log('nginx: not found, installing Debian’s nginx package');
  asRoot(['apt-get', 'update', '-qq']);
  asRoot(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'nginx']);
  const installed = findNginx();
  if (!installed) throw new Error('nginx was installed but its binary was not found');
  return installed;
}

export interface NginxConfigInput {
  readonly dir: string;
  readonly port: number;
  readonly upstreams: readonly number[];
  /**
   * Whether a 503 sends the request on to another upstream (and so counts as a failure that
   * takes the upstream out for fail_timeout). Yes for the CA replicas (a draining replica's
   * 503); no for the CT log's replicas, which share one database: a 503 there means the
   * database is away for every replica, and taking them all out for 3 s would stretch a
   * PostgreSQL restart of half a second into seconds of "no live upstreams". The CA retries
   * a 503 itself, within its CT budget.
   */
  readonly nextUpstreamOn503?: boolean;
}

export function nginxConfig({
  dir,
  port,
  upstreams,
  nextUpstreamOn503 = true,
}: NginxConfigInput): string {
  // A master started as root would run its workers as `nobody`, who cannot write the
  // scratch folder; naming the current user keeps every process as who started the soak.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : '';
  const tmp = (name: string) => join(dir, 'tmp', name);
  return `${user}worker_processes 1;
daemon off;
master_process on;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  # Debian's build points every temporary path under /var/lib/nginx.
  client_body_temp_path ${tmp('body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};
  log_format soak '$msec $status $request_time "$upstream_addr" "$upstream_status" $request_uri "$upstream_connect_time" "$upstream_header_time"';
  access_log ${join(dir, 'access.log')} soak buffer=64k flush=1s;
  # The load generator keeps its connections: nginx must not close them under it.
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  upstream mayfly {
${upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=3s;`).join('\n')}
    keepalive 32;
    # Shorter than mayfly's own keep-alive timeout (30 s), so nginx never sends a request
    # on a connection the replica is closing as idle.
    keepalive_timeout 20s;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64k;
    location / {
      proxy_pass http://mayfly;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 1s;
      proxy_send_timeout 15s;
      proxy_read_timeout 15s;
      # non_idempotent: nginx does not retry a POST once any of it was sent, and a replica
      # killed mid-request is exactly that case. Issuing a short-lived certificate twice is
      # harmless. (A draining replica cuts nothing: the report counts such attempts.)
      proxy_next_upstream error timeout http_502${nextUpstreamOn503 ? ' http_503' : ''} non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 20s;
    }
  }
}
`;
}

export interface RunningNginx {
  readonly url: string;
  readonly pid: number;
  readonly accessLog: string;
  readonly errorLog: string;
  stop(): Promise<void>;
}

export async function startNginx(binary: string, input: NginxConfigInput): Promise<RunningNginx> {
  for (const name of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(input.dir, 'tmp', name), { recursive: true });
  const conf = join(input.dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(input));
  // -e: the error log before the config is read (the default is under /var/log).
  const base = ['-p', input.dir, '-c', conf, '-e', join(input.dir, 'error.log')];
  const test = spawnSync(binary, ['-t', ...base], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stderr}`);
  const child: ChildProcess = spawnLogged(binary, base, {
    logFile: join(input.dir, 'nginx.out'),
  });
  await until('nginx to listen', async () => ((await accepts(input.port)) ? true : undefined));
  return {
    url: `http://127.0.0.1:${input.port}`,
    pid: child.pid!,
    accessLog: join(input.dir, 'access.log'),
    errorLog: join(input.dir, 'error.log'),
    // SIGQUIT: graceful, and it flushes the buffered access log.
    stop: () => stopChild(child, 'SIGQUIT', 10_000),
  };
}

/**
 * An upstream attempt that reached a replica (the connection was made, or a kept-alive one
 * reused, and the request written) and got no answer at all: no response header. A replica
 * killed mid-request does that; a draining one must not.
 */
export interface CutAttempt {
  /** The replica, as nginx names it ("127.0.0.1:port"). */
  readonly upstream: string;
  /** The whole request's span at nginx (it may hold other attempts), epoch ms. */
  readonly fromMs: number;
  readonly toMs: number;
}

export interface AccessLogSummary {
  readonly requests: number;
  readonly byStatus: Record<string, number>;
  /** Requests nginx sent to more than one replica before answering. */
  readonly retriedUpstream: number;
  /** Each upstream attempt's status that nginx moved on from ("502", "504", "-" for errors). */
  readonly abandonedAttempts: Record<string, number>;
  readonly cutAttempts: readonly CutAttempt[];
}

/** nginx's per-attempt lists: "a, b : c" (" : " separates upstream groups). */
const attemptsOf = (field: string) => field.split(/\s*,\s*|\s+:\s+/);

export function summarizeAccessLog(file: string): AccessLogSummary {
  const byStatus: Record<string, number> = {};
  const abandonedAttempts: Record<string, number> = {};
  const cutAttempts: CutAttempt[] = [];
  let requests = 0;
  let retriedUpstream = 0;
  if (!existsSync(file))
    return { requests, byStatus, retriedUpstream, abandonedAttempts, cutAttempts };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^(\S+) (\d+) (\S+) "([^"]*)" "([^"]*)" \S+ "([^"]*)" "([^"]*)"/.exec(line);
    if (!match) continue;
    requests++;
    byStatus[match[2]!] = (byStatus[match[2]!] ?? 0) + 1;
    const attempts = attemptsOf(match[5]!);
    if (attempts.length > 1) {
      retriedUpstream++;
      for (const status of attempts.slice(0, -1))
        abandonedAttempts[status] = (abandonedAttempts[status] ?? 0) + 1;
    }
    const upstreams = attemptsOf(match[4]!);
    const connect = attemptsOf(match[6]!);
    const header = attemptsOf(match[7]!);
    const toMs = Number(match[1]) * 1000;
    const fromMs = toMs - Number(match[3]) * 1000;
    upstreams.forEach((upstream, i) => {
      // Connected ("-" = the connect failed: refused, nothing sent) but no header came.
      if (connect[i] !== undefined && connect[i] !== '-' && header[i] === '-')
        cutAttempts.push({ upstream, fromMs, toMs });
    });
  }
  return { requests, byStatus, retriedUpstream, abandonedAttempts, cutAttempts };
}

/**
 * Why nginx gave up on an upstream attempt, from its error log: a refused connect is a dead
 * replica probed again after fail_timeout; a reset or an early close while reading the
 * answer is a request that was in flight on a replica when it died.
 */
export function summarizeErrorLog(file: string): Map<string, number> {
  const counts = new Map<string, number>();
  if (!existsSync(file)) return counts;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /\[(error|warn)\] \d+#\d+: \*\d+ (.+?), client:/.exec(line);
    if (!match) continue;
    const key = `${match[1]}: ${match[2]!}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
