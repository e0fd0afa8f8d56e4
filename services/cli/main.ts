#!/usr/bin/env node
/**
 * `mayfly <command> [options]`: operator commands. Each command lives in its own file and
 * exports `run(argv): Promise<number>` (the exit status); this table is the only dispatch.
 */
import * as ca from './ca';
import * as serve from './serve';
import * as signingConfig from './signing-config';
import * as trustedRoot from './trusted-root';

type Command = { readonly summary: string; run(argv: string[]): Promise<number> };

const COMMANDS: Readonly<Record<string, Command>> = {
  ca: {
    summary: 'key ceremony: create the root and intermediate (HSM or files), rotate, promote',
    run: ca.run,
  },
  'trusted-root': {
    summary: 'write a Sigstore TrustedRoot (CA chains, TSA chain, CT logs) for verifiers',
    run: trustedRoot.run,
  },
  'signing-config': {
    summary: 'write a Sigstore SigningConfig (v0.2) naming the CA and TSA URLs',
    run: signingConfig.run,
  },
  serve: {
    summary: 'start the CA and the TSA, each in its own process, on embedded defaults',
    run: serve.run,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(16)} ${c.summary}`);
  return `usage: mayfly <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'mayfly <command> --help' describes a command.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`mayfly: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  return command.run(rest);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`mayfly: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
