import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

/**
 * `mayfly serve`: what a user needs to sign and verify, on embedded defaults: the CA and the
 * TSA, each its own process on its own port (they share nothing but HTTP). The supervisor
 * forwards SIGTERM/SIGINT to both, waits for them to drain, and stops the other when one
 * exits. Settings pass through the environment (MAYFLY_* for the CA, MAYFLY_TSA_* for the TSA).
 */

const HELP = `usage: mayfly serve

Starts the CA (MAYFLY_PORT, default 8080) and the TSA (MAYFLY_TSA_PORT, default 3000) as
two processes, prints where each listens, forwards SIGTERM and SIGINT, and exits when both
have stopped. Then: mayfly trusted-root --ca-url … --tsa-url … --out trusted_root.json
`;

interface Deployable {
  readonly name: string;
  readonly entry: string;
  readonly url: string;
}

async function waitReady(url: string, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dist = resolve(__dirname, '..');
  const local = (host: string | undefined) =>
    !host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const env = process.env;
  const deployables: Deployable[] = [
    {
      name: 'ca',
      entry: resolve(dist, 'ca/main.js'),
      url: `http://${local(env.MAYFLY_HOST)}:${env.MAYFLY_PORT ?? '8080'}`,
    },
    {
      name: 'tsa',
      entry: resolve(dist, 'tsa/main.js'),
      url: `http://${local(env.MAYFLY_TSA_HOST)}:${env.MAYFLY_TSA_PORT ?? '3000'}`,
    },
  ];
  const children = deployables.map((d) => ({
    d,
    child: spawn(process.execPath, [d.entry], { stdio: 'inherit', env }),
  }));
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const { child } of children) if (child.exitCode === null) child.kill(signal);
  };
  const onSignal = (signal: NodeJS.Signals) => () => {
    if (stopping) {
      // A second signal: stop at once.
      for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL');
      return;
    }
    stopAll(signal);
  };
  process.on('SIGTERM', onSignal('SIGTERM'));
  process.on('SIGINT', onSignal('SIGINT'));
  const exits = children.map(
    ({ d, child }) =>
      new Promise<number>((done) => {
        child.on('exit', (code, signal) => {
          if (!stopping) {
            process.stderr.write(
              `mayfly serve: the ${d.name} stopped (${signal ?? `status ${code}`}); stopping the rest\n`,
            );
            stopAll('SIGTERM');
          }
          done(code ?? 1);
        });
      }),
  );
  const ready = await Promise.all(children.map(({ d, child }) => waitReady(d.url, child, 60_000)));
  if (ready.every(Boolean)) {
    const [ca, tsa] = deployables;
    process.stdout.write(
      `mayfly serve: CA on ${ca!.url}, TSA on ${tsa!.url} (${tsa!.url}/api/v1/timestamp)\n` +
        `  trusted root: mayfly trusted-root --ca-url ${ca!.url} --tsa-url ${tsa!.url} --out trusted_root.json\n`,
    );
  }
  const statuses = await Promise.all(exits);
  return statuses.every((s) => s === 0) ? 0 : 1;
}
