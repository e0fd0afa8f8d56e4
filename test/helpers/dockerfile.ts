import { readFileSync } from 'node:fs';

/**
 * A small Dockerfile reader for tests (no Docker engine on these machines): instructions
 * with their line continuations joined, comments dropped, `ARG` defaults substituted into
 * FROM, and the instructions grouped by stage.
 */

export interface Instruction {
  readonly keyword: string;
  /** The text after the keyword, continuation lines joined with a space. */
  readonly args: string;
  /** Exec form (a JSON array), when the instruction used it. */
  readonly exec?: readonly string[];
  /** `--name=value` flags (COPY --from, --chown, HEALTHCHECK --interval, ...). */
  readonly flags: Readonly<Record<string, string>>;
  readonly line: number;
}

export interface Stage {
  readonly name: string | undefined;
  /** The base image reference, ARGs substituted. */
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  readonly globalArgs: Readonly<Record<string, string>>;
  readonly stages: readonly Stage[];
}

function splitFlags(text: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = text;
  for (;;) {
    const match = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest);
    if (!match) break;
    flags[match[1]!] = match[2] ?? 'true';
    rest = rest.slice(match[0].length);
  }
  return { flags, rest };
}

export function parseDockerfile(text: string): Dockerfile {
  const logical: { text: string; line: number }[] = [];
  let current: { text: string; line: number } | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (!current && (/^\s*#/.test(line) || line.trim() === '')) return;
    if (current && /^\s*#/.test(line)) return; // comment inside a continuation
    const continued = /\\\s*$/.test(line);
    const part = continued ? line.replace(/\\\s*$/, '') : line;
    if (current) current.text += ` ${part.trim()}`;
    else current = { text: part.trim(), line: i + 1 };
    if (!continued) {
      logical.push(current);
      current = undefined;
    }
  });
  if (current) logical.push(current);

  const globalArgs: Record<string, string> = {};
  const stages: { name: string | undefined; from: string; instructions: Instruction[] }[] = [];
  for (const { text: t, line } of logical) {
    const match = /^(\S+)\s*(.*)$/.exec(t)!;
    const keyword = match[1]!.toUpperCase();
    const { flags, rest } = splitFlags(`${match[2]!} `);
    const args = rest.trim();
    let exec: string[] | undefined;
    if (args.startsWith('[')) {
      try {
        exec = JSON.parse(args) as string[];
      } catch {
        exec = undefined;
      }
    }
    const instruction: Instruction = {
      keyword,
      args,
      flags,
      line,
      ...(exec ? { exec } : {}),
    };
    if (keyword === 'FROM') {
      const [image, as, name] = args.split(/\s+/);
      const from = image!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, a?: string, b?: string) => {
        const key = (a ?? b)!;
        return globalArgs[key] ?? '';
      });
      stages.push({
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        from,
        instructions: [],
      });
      continue;
    }
    if (stages.length === 0) {
      if (keyword === 'ARG') {
        const [key, value] = args.split('=');
        globalArgs[key!] = value ?? '';
      }
      continue;
    }
    stages[stages.length - 1]!.instructions.push(instruction);
  }
  return { globalArgs, stages };
}

export function readDockerfile(path: string): Dockerfile {
  return parseDockerfile(readFileSync(path, 'utf8'));
}

/** `ENV a=b c=d` and `ENV a b` forms. */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.keyword === 'ENV')) {
    if (/^\w+\s+[^=]*$/.test(i.args) && !i.args.includes('=')) {
      const [key, ...value] = i.args.split(/\s+/);
      env[key!] = value.join(' ');
    } else {
      for (const pair of i.args.match(/\w+=("[^"]*"|\S+)/g) ?? []) {
        const [key, ...value] = pair.split('=');
        env[key!] = value.join('=').replace(/^"|"$/g, '');
      }
    }
  }
  return env;
}
