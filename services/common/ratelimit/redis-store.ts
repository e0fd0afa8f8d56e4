import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock';
import type { BucketOutcome, BucketSpend, RateLimitStore } from './store';

/**
 * GCRA in Redis: gcra.ts ported line by line to Lua, loaded with ioredis `defineCommand`
 * (EVALSHA, with EVAL on NOSCRIPT), so one request's buckets are read, decided and written
 * in one atomic round trip. The clock is Redis `TIME`, so replicas with skewed clocks still
 * share one timeline; tests may pass a clock, which then travels in ARGV[1].
 *
 * Numbers: Lua 5.1 computes in doubles, exact for the microsecond integers used here.
 * TATs are written with string.format('%.0f') because tostring() would print 1.7e+15.
 *
 * Key layout: `<prefix><limit>:{<hash of the bucket id>}`. In Redis Cluster a multi-key
 * script must stay in one slot; putting every bucket behind one shared hash tag would make
 * that true but pin the whole limiter to one shard. Instead each bucket's hash is its own
 * tag, buckets spread over the shards, and in Cluster mode every bucket is spent by its own
 * single-key script, all in parallel (so still one round trip of latency). Cross-bucket atomicity is then restored by compensation: when
 * any bucket refuses, the buckets that allowed (and so were spent) get their cost back.
 * Standalone and Sentinel run the whole batch as one script.
 */

const PROLOGUE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local function store(key, tat)
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
`;

/**
 * KEYS: the buckets. ARGV[1]: now in µs, or '' for Redis TIME; then per bucket: emission
 * interval (µs), burst offset (µs), cost. Returns per bucket: allowed (1/0), remaining,
 * retry-in (µs), reset-in (µs). Writes only when every bucket allows.
 */
export const SPEND_LUA = `${PROLOGUE}
local out = {}
local tats = {}
local all = true
for i = 1, #KEYS do
  local ei = tonumber(ARGV[3 * i - 1])
  local bo = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat <= now then tat = now end
  local new_tat = tat + cost * ei
  local diff = now - (new_tat - bo)
  local o = 4 * (i - 1)
  if diff < 0 then
    all = false
    local before = now - (tat - bo)
    local remaining = 0
    if before > 0 then remaining = math.floor(before / ei) end
    out[o + 1] = 0
    out[o + 2] = remaining
    out[o + 3] = -diff
    out[o + 4] = tat - now
  else
    out[o + 1] = 1
    out[o + 2] = math.floor(diff / ei)
    out[o + 3] = 0
    out[o + 4] = new_tat - now
  end
  tats[i] = new_tat
end
if all then
  for i = 1, #KEYS do
    if tats[i] > now then store(KEYS[i], tats[i]) end
  end
end
return out
`;

/** Same arguments as SPEND_LUA; gives each bucket its cost back (gcraRefund). */
export const REFUND_LUA = `${PROLOGUE}
for i = 1, #KEYS do
  local ei = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat ~= nil and tat > now then store(KEYS[i], tat - cost * ei) end
end
return 1
`;

const SPEND = 'mayflyGcraSpend';
const REFUND = 'mayflyGcraRefund';

type ScriptCall = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>;

export interface RedisStoreOptions {
  readonly client: Redis | Cluster;
  readonly keyPrefix: string;
  /** Tests only: the time to use instead of Redis TIME. */
  readonly clock?: Clock;
  /** Called when a compensating refund fails (the request's answer is already decided). */
  readonly onRefundError?: (err: unknown) => void;
}

export class RedisStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  private readonly spendScript: ScriptCall;
  private readonly refundScript: ScriptCall;
  private readonly clustered: boolean;

  constructor(private readonly options: RedisStoreOptions) {
    const { client } = options;
    // No numberOfKeys: the batch size varies, so the key count goes first on each call.
    client.defineCommand(SPEND, { lua: SPEND_LUA });
    client.defineCommand(REFUND, { lua: REFUND_LUA });
    const scripts = client as unknown as Record<string, ScriptCall>;
    this.spendScript = scripts[SPEND]!.bind(client);
    this.refundScript = scripts[REFUND]!.bind(client);
    this.clustered = client.isCluster;
  }

  /** The Redis key of a bucket key from the limiter. */
  redisKey(key: string): string {
    const colon = key.indexOf(':');
    return `${this.options.keyPrefix}${key.slice(0, colon)}:{${key.slice(colon + 1)}}`;
  }

  private args(buckets: readonly BucketSpend[]): (string | number)[] {
    const now = this.options.clock ? String(this.options.clock.now().getTime() * 1000) : '';
    const args: (string | number)[] = buckets.map((b) => this.redisKey(b.key));
    args.push(now);
    for (const b of buckets) args.push(b.emissionIntervalUs, b.burstOffsetUs, b.cost);
    return args;
  }

  private async run(buckets: readonly BucketSpend[]): Promise<BucketOutcome[]> {
    const reply = await this.spendScript(buckets.length, ...this.args(buckets));
    return parseReply(reply, buckets.length);
  }

  async spend(buckets: readonly BucketSpend[]): Promise<BucketOutcome[]> {
    if (buckets.length === 0) return [];
    if (!this.clustered || buckets.length === 1) return this.run(buckets);
    const outcomes = (await Promise.all(buckets.map((b) => this.run([b])))).map((o) => o[0]!);
    if (outcomes.some((o) => !o.allowed)) {
      const spent = buckets.filter((_b, i) => outcomes[i]!.allowed && buckets[i]!.cost > 0);
      // Not awaited: the answer is already "refused"; a failed refund only leaves a bucket
      // emptier than it should be until it refills.
      for (const b of spent) {
        this.refundScript(1, ...this.args([b])).catch((err: unknown) =>
          this.options.onRefundError?.(err),
        );
      }
    }
    return outcomes;
  }

  /**
   * Stops reconnecting and closes the sockets. Not QUIT: that leaves a Sentinel client's
   * failover-detector subscriptions open, and pending replies do not matter at shutdown.
   */
  close(): Promise<void> {
    this.options.client.disconnect();
    return Promise.resolve();
  }
}

function parseReply(reply: unknown, count: number): BucketOutcome[] {
  if (!Array.isArray(reply) || reply.length !== count * 4)
    throw new Error(`unexpected reply from the GCRA script: ${JSON.stringify(reply)}`);
  const numbers = reply.map(Number);
  const out: BucketOutcome[] = [];
  for (let i = 0; i < count; i++) {
    const [allowed, remaining, retryInUs, resetInUs] = numbers.slice(4 * i, 4 * i + 4) as [
      number,
      number,
      number,
      number,
    ];
    out.push({ allowed: allowed === 1, remaining, retryInUs, resetInUs });
  }
  return out;
}
