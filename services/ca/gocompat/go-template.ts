import { compareGoStrings, formatFloatG } from './go-fmt';
import { goQuote } from './go-url';

/**
 * A small, safe interpreter for the part of Go's text/template that Fulcio's
 * CIIssuerMetadata templates use: text and `{{ }}` actions with trim markers and
 * comments, fields (`.claim`, `$.claim`), `.`, literals, parenthesised pipelines, `|`,
 * `if`/`else if`/`else`/`end`, `with`/`else with`/`else`/`end`, and the predefined
 * functions `index`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `len`,
 * `slice`, `print`, `printf` (verbs %s %v %d %q %x %X %t %%), `println`, `html`, `js`,
 * `urlquery`. It runs like `template.New("").Option("missingkey=error")` over a
 * map[string]string: a missing field is an error, `index` of a missing key is "", and
 * nothing is HTML-escaped. Error messages follow Go's (`template: :1:14: executing "" at
 * <.x>: map has no entry for key "x"`), since Fulcio hands them to the client.
 *
 * Not supported (refused when the template is parsed): `range`, `define`, `template`,
 * `block`, `break`, `continue`, variable declarations (`$x := …`) and `call`. There are no
 * loops, so the work is linear in the size of the template; nothing is evaluated as code.
 */

export class GoTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoTemplateError';
  }
}

// ---------------------------------------------------------------------------------------
// Lexer (text/template/parse/lex.go)

type TokenKind =
  | 'text'
  | 'leftDelim'
  | 'rightDelim'
  | 'space'
  | 'field'
  | 'dot'
  | 'identifier'
  | 'keyword'
  | 'bool'
  | 'number'
  | 'string'
  | 'rawString'
  | 'char'
  | 'charConstant'
  | 'variable'
  | 'pipe'
  | 'leftParen'
  | 'rightParen'
  | 'assign'
  | 'declare'
  | 'nil'
  | 'eof'
  | 'error';

interface Token {
  readonly kind: TokenKind;
  readonly pos: number;
  readonly value: string;
  readonly line: number;
}

const KEYWORDS = new Set([
  'block',
  'break',
  'continue',
  'define',
  'else',
  'end',
  'if',
  'range',
  'template',
  'with',
]);

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

function isAlphaNumeric(c: string | undefined): boolean {
  return c !== undefined && (c === '_' || /^[\p{L}\p{Nd}]$/u.test(c));
}

function hasLeftTrimMarker(s: string, at: number): boolean {
  return s[at] === '-' && isSpace(s[at + 1]);
}

function hasRightTrimMarker(s: string, at: number): boolean {
  return isSpace(s[at]) && s[at + 1] === '-';
}

function formatU(c: string): string {
  const code = c.codePointAt(0)!;
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')} '${c}'`;
}

function lex(input: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  let start = 0;
  let parenDepth = 0;
  const lineAt = (at: number): number => {
    let line = 1;
    for (let i = 0; i < at; i++) if (input.charCodeAt(i) === 10) line++;
    return line;
  };
  const emit = (kind: TokenKind, value = input.slice(start, pos)): void => {
    tokens.push({ kind, pos: start, value, line: lineAt(start) });
    start = pos;
  };
  const fail = (message: string): Token[] => {
    tokens.push({ kind: 'error', pos: start, value: message, line: lineAt(start) });
    return tokens;
  };
  const atRightDelim = (): { delim: boolean; trim: boolean } => {
    if (hasRightTrimMarker(input, pos) && input.startsWith('}}', pos + 2)) {
      return { delim: true, trim: true };
    }
    return { delim: input.startsWith('}}', pos), trim: false };
  };
  const atTerminator = (): boolean => {
    const c = input[pos];
    if (c === undefined || isSpace(c)) return true;
    if ('.,|:)('.includes(c)) return true;
    return input.startsWith('}}', pos);
  };
  const leftTrimLength = (from: number): number => {
    let n = 0;
    while (isSpace(input[from + n])) n++;
    return n;
  };

  text: for (;;) {
    // lexText
    const x = input.indexOf('{{', pos);
    if (x < 0) {
      pos = input.length;
      if (pos > start) emit('text');
      emit('eof', '');
      return tokens;
    }
    if (x > pos) {
      let end = x;
      if (hasLeftTrimMarker(input, x + 2)) while (end > start && isSpace(input[end - 1])) end--;
      if (end > start)
        tokens.push({
          kind: 'text',
          pos: start,
          value: input.slice(start, end),
          line: lineAt(start),
        });
    }
    // lexLeftDelim
    pos = x + 2;
    const trimmed = hasLeftTrimMarker(input, pos);
    const afterMarker = trimmed ? 2 : 0;
    if (input.startsWith('/*', pos + afterMarker)) {
      start = pos + afterMarker;
      pos = start + 2;
      const close = input.indexOf('*/', pos);
      if (close < 0) return fail('unclosed comment');
      pos = close + 2;
      const rd = atRightDelim();
      if (!rd.delim) return fail('comment ends before closing delimiter');
      pos += (rd.trim ? 2 : 0) + 2;
      if (rd.trim) pos += leftTrimLength(pos);
      start = pos;
      continue text;
    }
    start = x;
    tokens.push({ kind: 'leftDelim', pos: x, value: '{{', line: lineAt(x) });
    pos += afterMarker;
    start = pos;
    parenDepth = 0;
    // lexInsideAction
    for (;;) {
      const rd = atRightDelim();
      if (rd.delim) {
        if (parenDepth !== 0) return fail('unclosed left paren');
        if (rd.trim) pos += 2;
        start = pos;
        pos += 2;
        emit('rightDelim');
        if (rd.trim) pos += leftTrimLength(pos);
        start = pos;
        continue text;
      }
      const c = input[pos];
      if (c === undefined) return fail('unclosed action');
      if (isSpace(c)) {
        let n = 0;
        while (isSpace(input[pos])) {
          pos++;
          n++;
        }
        // A space before a trim-marked closing delimiter belongs to the delimiter.
        if (hasRightTrimMarker(input, pos - 1) && input.startsWith('}}', pos + 1)) {
          pos--;
          if (n === 1) continue;
        }
        emit('space');
        continue;
      }
      pos++;
      if (c === '=') emit('assign');
      else if (c === ':') {
        if (input[pos] !== '=') return fail('expected :=');
        pos++;
        emit('declare');
      } else if (c === '|') emit('pipe');
      else if (c === '"') {
        for (;;) {
          const q = input[pos++];
          if (q === '\\') {
            const r = input[pos++];
            if (r !== undefined && r !== '\n') continue;
            return fail('unterminated quoted string');
          }
          if (q === undefined || q === '\n') return fail('unterminated quoted string');
          if (q === '"') break;
        }
        emit('string');
      } else if (c === '`') {
        const close = input.indexOf('`', pos);
        if (close < 0) return fail('unterminated raw quoted string');
        pos = close + 1;
        emit('rawString');
      } else if (c === '$' || (c === '.' && !/[0-9]/.test(input[pos] ?? '0'))) {
        const kind: TokenKind = c === '$' ? 'variable' : 'field';
        if (atTerminator()) emit(kind === 'variable' ? 'variable' : 'dot');
        else {
          while (isAlphaNumeric(input[pos])) pos++;
          if (!atTerminator()) return fail(`bad character ${formatU(input[pos]!)}`);
          emit(kind);
        }
      } else if (c === "'") {
        for (;;) {
          const q = input[pos++];
          if (q === '\\') {
            const r = input[pos++];
            if (r !== undefined && r !== '\n') continue;
            return fail('unterminated character constant');
          }
          if (q === undefined || q === '\n') return fail('unterminated character constant');
          if (q === "'") break;
        }
        emit('charConstant');
      } else if (c === '.' || c === '+' || c === '-' || /[0-9]/.test(c)) {
        pos--;
        if (!scanNumber()) return fail(`bad number syntax: ${goQuote(input.slice(start, pos))}`);
        emit('number');
      } else if (isAlphaNumeric(c)) {
        while (isAlphaNumeric(input[pos])) pos++;
        const word = input.slice(start, pos);
        if (!atTerminator()) return fail(`bad character ${formatU(input[pos]!)}`);
        if (KEYWORDS.has(word)) emit('keyword');
        else if (word === 'nil') emit('nil');
        else if (word === 'true' || word === 'false') emit('bool');
        else emit('identifier');
      } else if (c === '(') {
        emit('leftParen');
        parenDepth++;
      } else if (c === ')') {
        emit('rightParen');
        parenDepth--;
        if (parenDepth < 0) return fail('unexpected right paren');
      } else if (c.charCodeAt(0) < 0x80 && c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f) {
        emit('char');
      } else {
        const full = String.fromCodePoint(input.codePointAt(pos - 1)!);
        return fail(`unrecognized character in action: ${formatU(full)}`);
      }
    }
  }

  function accept(valid: string): boolean {
    if (input[pos] !== undefined && valid.includes(input[pos]!)) {
      pos++;
      return true;
    }
    return false;
  }
  function acceptRun(valid: string): void {
    while (input[pos] !== undefined && valid.includes(input[pos]!)) pos++;
  }
  function scanNumber(): boolean {
    accept('+-');
    let digits = '0123456789_';
    if (accept('0')) {
      if (accept('xX')) digits = '0123456789abcdefABCDEF_';
      else if (accept('oO')) digits = '01234567_';
      else if (accept('bB')) digits = '01_';
    }
    acceptRun(digits);
    if (accept('.')) acceptRun(digits);
    if (digits.length === 11 && accept('eE')) {
      accept('+-');
      acceptRun('0123456789_');
    }
    if (digits.length === 23 && accept('pP')) {
      accept('+-');
      acceptRun('0123456789_');
    }
    accept('i');
    if (isAlphaNumeric(input[pos])) {
      pos++;
      return false;
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// Parse tree (text/template/parse/node.go, parse.go)

type Arg =
  | { readonly t: 'field'; readonly pos: number; readonly idents: readonly string[] }
  | { readonly t: 'dot'; readonly pos: number }
  | { readonly t: 'variable'; readonly pos: number; readonly idents: readonly string[] }
  | { readonly t: 'identifier'; readonly pos: number; readonly name: string }
  | { readonly t: 'bool'; readonly pos: number; readonly value: boolean }
  | { readonly t: 'number'; readonly pos: number; readonly text: string; readonly value: Value }
  | { readonly t: 'string'; readonly pos: number; readonly quoted: string; readonly text: string }
  | { readonly t: 'nil'; readonly pos: number }
  | { readonly t: 'pipe'; readonly pos: number; readonly pipe: Pipe }
  | {
      readonly t: 'chain';
      readonly pos: number;
      readonly node: Arg;
      readonly fields: readonly string[];
    };

interface Command {
  readonly t: 'command';
  readonly pos: number;
  readonly args: readonly Arg[];
}

interface Pipe {
  readonly pos: number;
  readonly cmds: readonly Command[];
}

type Node =
  | { readonly t: 'text'; readonly text: string }
  | { readonly t: 'action'; readonly pos: number; readonly pipe: Pipe }
  | {
      readonly t: 'if' | 'with';
      readonly pos: number;
      readonly pipe: Pipe;
      readonly list: readonly Node[];
      readonly elseList: readonly Node[] | undefined;
    };

function argString(arg: Arg | Command): string {
  switch (arg.t) {
    case 'field':
      return `.${arg.idents.join('.')}`;
    case 'dot':
      return '.';
    case 'variable':
      return arg.idents.join('.');
    case 'identifier':
      return arg.name;
    case 'bool':
      return arg.value ? 'true' : 'false';
    case 'number':
      return arg.text;
    case 'string':
      return arg.quoted;
    case 'nil':
      return 'nil';
    case 'pipe':
      return pipeString(arg.pipe);
    case 'chain': {
      const base = arg.node.t === 'pipe' ? `(${argString(arg.node)})` : argString(arg.node);
      return `${base}.${arg.fields.join('.')}`;
    }
    case 'command':
      return arg.args.map((a) => (a.t === 'pipe' ? `(${argString(a)})` : argString(a))).join(' ');
  }
}

function pipeString(pipe: Pipe): string {
  return pipe.cmds.map(argString).join(' | ');
}

const FUNCTIONS = new Set([
  'and',
  'call',
  'html',
  'index',
  'slice',
  'js',
  'len',
  'not',
  'or',
  'print',
  'printf',
  'println',
  'urlquery',
  'eq',
  'ge',
  'gt',
  'le',
  'lt',
  'ne',
]);

const MAX_DEPTH = 100;

function tokenString(token: Token): string {
  switch (token.kind) {
    case 'eof':
      return 'EOF';
    case 'error':
      return token.value;
    case 'keyword':
      return `<${token.value}>`;
    default:
      return token.value.length > 10
        ? `${goQuote(token.value.slice(0, 10))}...`
        : goQuote(token.value);
  }
}

class Parser {
  private index = 0;
  private lastLine = 1;
  private depth = 0;

  constructor(private readonly tokens: readonly Token[]) {}

  private next(): Token {
    const token = this.tokens[Math.min(this.index, this.tokens.length - 1)]!;
    this.index++;
    this.lastLine = token.line;
    return token;
  }

  private backup(): void {
    this.index--;
  }

  private peek(): Token {
    const token = this.next();
    this.backup();
    return token;
  }

  private nextNonSpace(): Token {
    let token: Token;
    do token = this.next();
    while (token.kind === 'space');
    return token;
  }

  private peekNonSpace(): Token {
    const token = this.nextNonSpace();
    this.backup();
    return token;
  }

  error(message: string): never {
    throw new GoTemplateError(`template: :${this.lastLine}: ${message}`);
  }

  private unexpected(token: Token, context: string): never {
    if (token.kind === 'error') this.error(token.value);
    this.error(`unexpected ${tokenString(token)} in ${context}`);
  }

  parse(): Node[] {
    const list: Node[] = [];
    while (this.peek().kind !== 'eof') {
      const node = this.textOrAction();
      if (node === 'end' || node === 'else') this.error(`unexpected {{${node}}}`);
      list.push(node);
    }
    return list;
  }

  private textOrAction(): Node | 'end' | 'else' {
    const token = this.nextNonSpace();
    if (token.kind === 'text') return { t: 'text', text: token.value };
    if (token.kind === 'leftDelim') return this.action();
    return this.unexpected(token, 'input');
  }

  private action(): Node | 'end' | 'else' {
    const token = this.nextNonSpace();
    if (token.kind === 'keyword') {
      switch (token.value) {
        case 'if':
        case 'with':
          return this.control(token.value);
        case 'else':
          return this.elseControl();
        case 'end':
          this.expect('rightDelim', 'end');
          return 'end';
        default:
          this.error(`{{${token.value}}} is not supported by this template engine`);
      }
    }
    this.backup();
    const pipe = this.pipeline('command', 'rightDelim');
    return { t: 'action', pos: token.pos, pipe };
  }

  private expect(kind: TokenKind, context: string): Token {
    const token = this.nextNonSpace();
    if (token.kind !== kind) this.unexpected(token, context);
    return token;
  }

  private elseControl(): 'else' {
    const peek = this.peekNonSpace();
    if (peek.kind === 'keyword' && (peek.value === 'if' || peek.value === 'with')) return 'else';
    this.expect('rightDelim', 'else');
    return 'else';
  }

  private itemList(): { list: Node[]; next: 'end' | 'else' } {
    const list: Node[] = [];
    while (this.peekNonSpace().kind !== 'eof') {
      const node = this.textOrAction();
      if (node === 'end' || node === 'else') return { list, next: node };
      list.push(node);
    }
    this.error('unexpected EOF');
  }

  private control(context: 'if' | 'with'): Node {
    if (++this.depth > MAX_DEPTH) this.error('template nesting too deep');
    const pipe = this.pipeline(context, 'rightDelim');
    const { list, next } = this.itemList();
    let elseList: Node[] | undefined;
    if (next === 'else') {
      const peek = this.peekNonSpace();
      if (peek.kind === 'keyword' && peek.value === context) {
        // {{else if …}} / {{else with …}} is {{else}}{{if …}}…{{end}}{{end}}.
        this.nextNonSpace();
        elseList = [this.control(context)];
      } else {
        const rest = this.itemList();
        if (rest.next !== 'end') this.error('expected end; found {{else}}');
        elseList = rest.list;
      }
    }
    this.depth--;
    return { t: context, pos: pipe.pos, pipe, list, elseList };
  }

  private pipeline(context: string, end: TokenKind): Pipe {
    const first = this.peekNonSpace();
    if (first.kind === 'variable') {
      // Declarations ($x := …) are Go template features this engine leaves out.
      const save = this.index;
      this.nextNonSpace();
      const after = this.nextNonSpace();
      if (after.kind === 'declare' || after.kind === 'assign' || after.value === ',') {
        this.error('template variables are not supported by this template engine');
      }
      this.index = save;
    }
    const cmds: Command[] = [];
    for (;;) {
      const token = this.nextNonSpace();
      if (token.kind === end) {
        if (cmds.length === 0) this.error(`missing value for ${context}`);
        for (let i = 1; i < cmds.length; i++) {
          const head = cmds[i]!.args[0]!;
          if (['bool', 'dot', 'nil', 'number', 'string'].includes(head.t)) {
            this.error(`non executable command in pipeline stage ${i + 1}`);
          }
        }
        return { pos: first.pos, cmds };
      }
      switch (token.kind) {
        case 'bool':
        case 'charConstant':
        case 'dot':
        case 'field':
        case 'identifier':
        case 'number':
        case 'nil':
        case 'rawString':
        case 'string':
        case 'variable':
        case 'leftParen':
          this.backup();
          cmds.push(this.command());
          break;
        default:
          this.unexpected(token, context);
      }
    }
  }

  private command(): Command {
    const pos = this.peekNonSpace().pos;
    const args: Arg[] = [];
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand) args.push(operand);
      const token = this.next();
      if (token.kind === 'space') continue;
      if (token.kind === 'rightDelim' || token.kind === 'rightParen') this.backup();
      else if (token.kind !== 'pipe') this.unexpected(token, 'operand');
      break;
    }
    if (args.length === 0) this.error('empty command');
    return { t: 'command', pos, args };
  }

  private operand(): Arg | undefined {
    const node = this.term();
    if (!node) return undefined;
    if (this.peek().kind !== 'field') return node;
    // Go places a chained field or variable at its first chained field.
    const pos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().kind === 'field') fields.push(this.next().value.slice(1));
    switch (node.t) {
      case 'field':
        return { t: 'field', pos, idents: [...node.idents, ...fields] };
      case 'variable':
        return { t: 'variable', pos, idents: [...node.idents, ...fields] };
      case 'bool':
      case 'string':
      case 'number':
      case 'nil':
      case 'dot':
        this.error(`unexpected . after term ${goQuote(argString(node))}`);
      // falls through (error() never returns)
      default:
        return { t: 'chain', pos, node, fields };
    }
  }

  private term(): Arg | undefined {
    const token = this.nextNonSpace();
    switch (token.kind) {
      case 'identifier':
        if (!FUNCTIONS.has(token.value)) this.error(`function ${goQuote(token.value)} not defined`);
        if (token.value === 'call') this.error('call is not supported by this template engine');
        return { t: 'identifier', pos: token.pos, name: token.value };
      case 'dot':
        return { t: 'dot', pos: token.pos };
      case 'nil':
        return { t: 'nil', pos: token.pos };
      case 'variable': {
        const idents = token.value.split('.');
        if (idents[0] !== '$') this.error(`undefined variable ${goQuote(idents[0]!)}`);
        return { t: 'variable', pos: token.pos, idents };
      }
      case 'field':
        return { t: 'field', pos: token.pos, idents: token.value.slice(1).split('.') };
      case 'bool':
        return { t: 'bool', pos: token.pos, value: token.value === 'true' };
      case 'charConstant':
      case 'number':
        return { t: 'number', pos: token.pos, text: token.value, value: this.number(token) };
      case 'leftParen': {
        if (++this.depth > MAX_DEPTH) this.error('max expression depth exceeded');
        const pipe = this.pipeline('parenthesized pipeline', 'rightParen');
        this.depth--;
        return { t: 'pipe', pos: pipe.pos, pipe };
      }
      case 'string':
      case 'rawString':
        return {
          t: 'string',
          pos: token.pos,
          quoted: token.value,
          text: this.unquote(token.value),
        };
      default:
        this.backup();
        return undefined;
    }
  }

  private number(token: Token): Value {
    const text = token.value;
    if (token.kind === 'charConstant') {
      const decoded = unquoteGo(text.replace(/^'|'$/g, '"').replace(/\\'/g, "'"));
      if (decoded === undefined || [...decoded].length !== 1) {
        this.error(`malformed character constant: ${text}`);
      }
      return { k: 'int', v: BigInt(decoded.codePointAt(0)!) };
    }
    const clean = text.replace(/_/g, '');
    const isHex = /^[+-]?0[xX]/.test(clean);
    if (!isHex || !/[pP]/.test(clean)) {
      const int = parseGoInt(clean);
      if (int !== undefined && !(/[.eE]/.test(clean) && !isHex)) {
        if (int > 2n ** 63n - 1n || int < -(2n ** 63n)) this.error(`${text} overflows int`);
        return { k: 'int', v: int };
      }
    }
    if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(clean)) {
      return { k: 'float', v: Number(clean) };
    }
    this.error(`illegal number syntax: ${goQuote(text)}`);
  }

  private unquote(quoted: string): string {
    if (quoted.startsWith('`')) return quoted.slice(1, -1);
    const value = unquoteGo(quoted);
    if (value === undefined) this.error('invalid syntax');
    return value;
  }
}

function parseGoInt(text: string): bigint | undefined {
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const sign = m[1] === '-' ? -1n : 1n;
  let body = m[2]!;
  if (/^0[0-7]+$/.test(body)) body = `0o${body.slice(1)}`;
  if (/^0[oO]/.test(body)) body = `0o${body.slice(2)}`;
  return sign * BigInt(body);
}

/** strconv.Unquote of a double-quoted Go string; undefined when it is not valid. */
function unquoteGo(quoted: string): string | undefined {
  if (quoted.length < 2 || quoted[0] !== '"' || quoted[quoted.length - 1] !== '"') return undefined;
  const body = quoted.slice(1, -1);
  const bytes: number[] = [];
  const pushText = (s: string) => bytes.push(...Buffer.from(s, 'utf8'));
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '"' || c === '\n') return undefined;
    if (c !== '\\') {
      const cp = body.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      pushText(ch);
      i += ch.length - 1;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11 };
    if (e === undefined) return undefined;
    if (e in simple) bytes.push(simple[e]!);
    else if (e === '\\' || e === '"') bytes.push(e.charCodeAt(0));
    else if (e === 'x') {
      const hex = body.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (/[0-7]/.test(e)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) return undefined;
      bytes.push(parseInt(oct, 8));
      i += 2;
    } else if (e === 'u' || e === 'U') {
      const n = e === 'u' ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) return undefined;
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return undefined;
      pushText(String.fromCodePoint(cp));
      i += n;
    } else return undefined;
  }
  return Buffer.from(bytes).toString('utf8');
}

// ---------------------------------------------------------------------------------------
// Execution (text/template/exec.go, funcs.go)

type Value =
  | { readonly k: 'string'; readonly v: string }
  | { readonly k: 'int'; readonly v: bigint }
  | { readonly k: 'uint8'; readonly v: number }
  | { readonly k: 'float'; readonly v: number }
  | { readonly k: 'bool'; readonly v: boolean }
  | { readonly k: 'map'; readonly v: ReadonlyMap<string, string> }
  | { readonly k: 'missing' };

const MISSING: Value = { k: 'missing' };

function formatValue(value: Value): string {
  switch (value.k) {
    case 'string':
      return value.v;
    case 'int':
      return value.v.toString();
    case 'uint8':
      return String(value.v);
    case 'float':
      return formatFloatG(value.v);
    case 'bool':
      return value.v ? 'true' : 'false';
    case 'map': {
      const keys = [...value.v.keys()].sort(compareGoStrings);
      return `map[${keys.map((k) => `${k}:${value.v.get(k)!}`).join(' ')}]`;
    }
    case 'missing':
      return '<no value>';
  }
}

function typeName(value: Value): string {
  switch (value.k) {
    case 'string':
      return 'string';
    case 'int':
      return 'int';
    case 'uint8':
      return 'uint8';
    case 'float':
      return 'float64';
    case 'bool':
      return 'bool';
    case 'map':
      return 'map[string]string';
    case 'missing':
      return '<nil>';
  }
}

function truth(value: Value): boolean {
  switch (value.k) {
    case 'string':
      return value.v.length > 0;
    case 'int':
      return value.v !== 0n;
    case 'uint8':
    case 'float':
      return value.v !== 0;
    case 'bool':
      return value.v;
    case 'map':
      return value.v.size > 0;
    case 'missing':
      return false;
  }
}

type Kind = 'bool' | 'int' | 'uint' | 'float' | 'string' | 'invalid';

function basicKind(value: Value): Kind {
  switch (value.k) {
    case 'string':
      return 'string';
    case 'int':
      return 'int';
    case 'uint8':
      return 'uint';
    case 'float':
      return 'float';
    case 'bool':
      return 'bool';
    default:
      return 'invalid';
  }
}

class FuncError extends Error {}

function numeric(value: Value): number | bigint {
  if (value.k === 'int') return value.v;
  if (value.k === 'uint8' || value.k === 'float') return value.v;
  return 0;
}

function eq(arg1: Value, rest: readonly Value[]): boolean {
  if (rest.length === 0) throw new FuncError('missing argument for comparison');
  const k1 = basicKind(arg1);
  for (const arg of rest) {
    const k2 = basicKind(arg);
    let result = false;
    if (k1 !== k2) {
      if ((k1 === 'int' && k2 === 'uint') || (k1 === 'uint' && k2 === 'int')) {
        result = BigInt(numeric(arg1)) === BigInt(numeric(arg));
      } else if (arg1.k !== 'missing' && arg.k !== 'missing') {
        throw new FuncError('incompatible types for comparison');
      }
    } else if (k1 === 'invalid') {
      if (arg1.k === 'map' || arg.k === 'map') {
        throw new FuncError(
          `non-comparable types ${formatValue(arg1)}: ${typeName(arg1)}, ${typeName(arg)}: ${formatValue(arg)}`,
        );
      }
      result = arg1.k === arg.k;
    } else {
      result = (arg1 as { v: unknown }).v === (arg as { v: unknown }).v;
    }
    if (result) return true;
  }
  return false;
}

function lt(arg1: Value, arg2: Value): boolean {
  const k1 = basicKind(arg1);
  const k2 = basicKind(arg2);
  if (k1 === 'invalid' || k2 === 'invalid') throw new FuncError('invalid type for comparison');
  if (k1 !== k2) {
    if ((k1 === 'int' && k2 === 'uint') || (k1 === 'uint' && k2 === 'int')) {
      return BigInt(numeric(arg1)) < BigInt(numeric(arg2));
    }
    throw new FuncError('incompatible types for comparison');
  }
  if (k1 === 'bool') throw new FuncError('invalid type for comparison');
  if (k1 === 'string') {
    return compareGoStrings((arg1 as { v: string }).v, (arg2 as { v: string }).v) < 0;
  }
  return numeric(arg1) < numeric(arg2);
}

/** fmt.Sprint: spaces between operands when neither is a string. */
function sprint(args: readonly Value[]): string {
  let out = '';
  args.forEach((arg, i) => {
    if (i > 0 && arg.k !== 'string' && args[i - 1]!.k !== 'string') out += ' ';
    out += formatValue(arg);
  });
  return out;
}

function evalArgs(args: readonly Value[]): string {
  if (args.length === 1 && args[0]!.k === 'string') return args[0]!.v;
  return sprint(args);
}

function htmlEscape(s: string): string {
  return s.replace(/[\0"'&<>]/g, (c) =>
    c === '\0'
      ? '\ufffd'
      : c === '"'
        ? '&#34;'
        : c === "'"
          ? '&#39;'
          : c === '&'
            ? '&amp;'
            : c === '<'
              ? '&lt;'
              : '&gt;',
  );
}

function jsEscape(s: string): string {
  let out = '';
  for (const c of s) {
    const code = c.codePointAt(0)!;
    if (c === '\\') out += '\\\\';
    else if (c === "'") out += "\\'";
    else if (c === '"') out += '\\"';
    else if ('<>&=`'.includes(c)) {
      out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    } else if (code < 0x20 || (code >= 0x80 && !/^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$/u.test(c))) {
      out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    } else out += c;
  }
  return out;
}

function queryEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function sprintf(format: string, args: readonly Value[]): string {
  let out = '';
  let argIndex = 0;
  for (let i = 0; i < format.length; i++) {
    const c = format[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const verb = format[++i];
    if (verb === undefined) {
      out += '%!(NOVERB)';
      break;
    }
    if (verb === '%') {
      out += '%';
      continue;
    }
    const arg = args[argIndex++];
    if (!arg) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const text = formatValue(arg);
    const bad = () => `%!${verb}(${typeName(arg)}=${text})`;
    switch (verb) {
      case 'v':
        out += text;
        break;
      case 's':
        out += arg.k === 'string' || arg.k === 'map' ? text : bad();
        break;
      case 'q':
        out += arg.k === 'string' ? goQuote(arg.v) : bad();
        break;
      case 'd':
        out += arg.k === 'int' || arg.k === 'uint8' ? text : bad();
        break;
      case 't':
        out += arg.k === 'bool' ? text : bad();
        break;
      case 'x':
      case 'X': {
        let hex: string | undefined;
        if (arg.k === 'string') hex = Buffer.from(arg.v, 'utf8').toString('hex');
        else if (arg.k === 'int' || arg.k === 'uint8') {
          const n = BigInt(numeric(arg));
          hex = (n < 0n ? '-' : '') + (n < 0n ? -n : n).toString(16);
        }
        out += hex === undefined ? bad() : verb === 'X' ? hex.toUpperCase() : hex;
        break;
      }
      default:
        out += bad();
    }
  }
  if (argIndex < args.length) {
    out += `%!(EXTRA ${args
      .slice(argIndex)
      .map((a) => `${typeName(a)}=${formatValue(a)}`)
      .join(', ')})`;
  }
  return out;
}

const ARITY: Record<string, { readonly min: number; readonly variadic: boolean }> = {
  and: { min: 1, variadic: true },
  or: { min: 1, variadic: true },
  not: { min: 1, variadic: false },
  len: { min: 1, variadic: false },
  index: { min: 1, variadic: true },
  slice: { min: 1, variadic: true },
  eq: { min: 1, variadic: true },
  ne: { min: 2, variadic: false },
  lt: { min: 2, variadic: false },
  le: { min: 2, variadic: false },
  gt: { min: 2, variadic: false },
  ge: { min: 2, variadic: false },
  html: { min: 0, variadic: true },
  js: { min: 0, variadic: true },
  print: { min: 0, variadic: true },
  println: { min: 0, variadic: true },
  urlquery: { min: 0, variadic: true },
  printf: { min: 1, variadic: true },
  call: { min: 1, variadic: true },
};

function indexArg(value: Value, cap: number): number {
  if (value.k !== 'int' && value.k !== 'uint8') {
    throw new FuncError(`cannot index slice/array with type ${typeName(value)}`);
  }
  const n = Number(numeric(value));
  if (n < 0 || n > cap) throw new FuncError(`index out of range: ${n}`);
  return n;
}

class Executor {
  private node: { pos: number; text: string } | undefined;
  private out = '';

  constructor(
    private readonly source: string,
    private readonly data: ReadonlyMap<string, string>,
  ) {}

  run(nodes: readonly Node[]): string {
    const dot: Value = { k: 'map', v: this.data };
    this.walkList(dot, nodes);
    return this.out;
  }

  private at(pos: number, text: string): void {
    this.node = { pos, text };
  }

  private fail(message: string): never {
    if (!this.node) throw new GoTemplateError(`template: : ${message}`);
    const before = Buffer.from(this.source.slice(0, this.node.pos), 'utf8').toString('latin1');
    const nl = before.lastIndexOf('\n');
    const line = before.split('\n').length;
    const column = nl < 0 ? before.length : before.length - (nl + 1);
    throw new GoTemplateError(
      `template: :${line}:${column}: executing "" at <${this.node.text}>: ${message}`,
    );
  }

  private walkList(dot: Value, nodes: readonly Node[]): void {
    for (const node of nodes) this.walk(dot, node);
  }

  private walk(dot: Value, node: Node): void {
    switch (node.t) {
      case 'text':
        this.out += node.text;
        return;
      case 'action': {
        const value = this.evalPipeline(dot, node.pipe);
        this.at(node.pos, pipeString(node.pipe));
        this.out += formatValue(value);
        return;
      }
      case 'if':
      case 'with': {
        const value = this.evalPipeline(dot, node.pipe);
        if (truth(value)) this.walkList(node.t === 'with' ? value : dot, node.list);
        else if (node.elseList) this.walkList(dot, node.elseList);
        return;
      }
    }
  }

  private evalPipeline(dot: Value, pipe: Pipe): Value {
    this.at(pipe.pos, pipeString(pipe));
    let value: Value = MISSING;
    let final: Value | undefined;
    for (const cmd of pipe.cmds) {
      value = this.evalCommand(dot, cmd, final);
      final = value;
    }
    return value;
  }

  private notAFunction(cmd: Command, final: Value | undefined): void {
    if (cmd.args.length > 1 || final !== undefined) {
      this.fail(`can't give argument to non-function ${argString(cmd.args[0]!)}`);
    }
  }

  private evalCommand(dot: Value, cmd: Command, final: Value | undefined): Value {
    const first = cmd.args[0]!;
    switch (first.t) {
      case 'field':
        return this.evalFieldChain(dot, dot, first, first.idents, cmd.args, final);
      case 'variable':
        return this.evalFieldChain(dot, this.root(), first, first.idents.slice(1), cmd.args, final);
      case 'chain':
        return this.evalChain(dot, first, cmd.args, final);
      case 'identifier':
        return this.evalFunction(dot, first, cmd, final);
      case 'pipe':
        this.notAFunction(cmd, final);
        return this.evalPipeline(dot, first.pipe);
      default:
        break;
    }
    this.at(first.pos, argString(first));
    this.notAFunction(cmd, final);
    switch (first.t) {
      case 'bool':
        return { k: 'bool', v: first.value };
      case 'dot':
        return dot;
      case 'nil':
        return this.fail('nil is not a command');
      case 'number':
        return first.value;
      case 'string':
        return { k: 'string', v: first.text };
    }
  }

  private root(): Value {
    return { k: 'map', v: this.data };
  }

  private evalChain(
    dot: Value,
    chain: Extract<Arg, { t: 'chain' }>,
    args: readonly Arg[],
    final: Value | undefined,
  ): Value {
    this.at(chain.pos, argString(chain));
    if (chain.node.t === 'nil')
      this.fail(`indirection through explicit nil in ${argString(chain)}`);
    const base = this.evalArg(dot, chain.node);
    return this.evalFieldChain(dot, base, undefined, chain.fields, args, final);
  }

  private evalFieldChain(
    dot: Value,
    receiver: Value,
    node: Arg | undefined,
    idents: readonly string[],
    args: readonly Arg[] | undefined,
    final: Value | undefined,
  ): Value {
    if (node) this.at(node.pos, argString(node));
    if (idents.length === 0) {
      // `$` alone.
      if ((args !== undefined && args.length > 1) || final !== undefined) {
        this.fail(`can't give argument to non-function ${node ? argString(node) : '$'}`);
      }
      return receiver;
    }
    let value = receiver;
    idents.forEach((name, i) => {
      const last = i === idents.length - 1;
      const hasArgs = last && ((args !== undefined && args.length > 1) || final !== undefined);
      value = this.evalField(name, value, hasArgs);
    });
    return value;
  }

  private evalField(name: string, receiver: Value, hasArgs: boolean): Value {
    if (receiver.k === 'missing') return this.fail(`nil data; no entry for key ${goQuote(name)}`);
    if (receiver.k === 'map') {
      if (hasArgs) this.fail(`${name} is not a method but has arguments`);
      const found = receiver.v.get(name);
      if (found === undefined) return this.fail(`map has no entry for key ${goQuote(name)}`);
      return { k: 'string', v: found };
    }
    return this.fail(`can't evaluate field ${name} in type ${typeName(receiver)}`);
  }

  private evalArg(dot: Value, arg: Arg): Value {
    this.at(arg.pos, argString(arg));
    switch (arg.t) {
      case 'bool':
        return { k: 'bool', v: arg.value };
      case 'dot':
        return dot;
      case 'field':
        return this.evalFieldChain(dot, dot, arg, arg.idents, [arg], undefined);
      case 'variable':
        return this.evalFieldChain(dot, this.root(), arg, arg.idents.slice(1), [arg], undefined);
      case 'chain':
        return this.evalChain(dot, arg, [arg], undefined);
      case 'identifier':
        return this.evalFunction(dot, arg, { t: 'command', pos: arg.pos, args: [arg] }, undefined);
      case 'nil':
        return this.fail('cannot assign nil to reflect.Value');
      case 'number':
        return arg.value;
      case 'string':
        return { k: 'string', v: arg.text };
      case 'pipe':
        return this.evalPipeline(dot, arg.pipe);
    }
  }

  private evalFunction(
    dot: Value,
    ident: Extract<Arg, { t: 'identifier' }>,
    cmd: Command,
    final: Value | undefined,
  ): Value {
    this.at(ident.pos, ident.name);
    const name = ident.name;
    const argNodes = cmd.args.slice(1);
    const arity = ARITY[name]!;
    const count = argNodes.length + (final === undefined ? 0 : 1);
    if (arity.variadic) {
      if (count < arity.min) {
        this.fail(
          `wrong number of args for ${name}: want at least ${arity.min} got ${argNodes.length}`,
        );
      }
    } else if (count !== arity.min) {
      this.fail(`wrong number of args for ${name}: want ${arity.min} got ${count}`);
    }
    if (name === 'and' || name === 'or') {
      let value: Value = MISSING;
      for (const node of argNodes) {
        value = this.evalArg(dot, node);
        if (truth(value) === (name === 'or')) return value;
      }
      return final ?? value;
    }
    if (name === 'printf' && argNodes[0] && argNodes[0].t !== 'string') {
      const first = argNodes[0];
      if (first.t === 'number' || first.t === 'bool') {
        this.at(first.pos, argString(first));
        this.fail(`expected string; found ${argString(first)}`);
      }
    }
    const values = argNodes.map((node) => this.evalArg(dot, node));
    if (final !== undefined) values.push(final);
    try {
      return this.call(name, values);
    } catch (err) {
      if (!(err instanceof FuncError)) throw err;
      this.at(cmd.pos, argString(cmd));
      this.fail(`error calling ${name}: ${err.message}`);
    }
  }

  private call(name: string, args: Value[]): Value {
    const a0 = args[0]!;
    switch (name) {
      case 'not':
        return { k: 'bool', v: !truth(a0) };
      case 'len':
        if (a0.k === 'string') return { k: 'int', v: BigInt(Buffer.byteLength(a0.v, 'utf8')) };
        if (a0.k === 'map') return { k: 'int', v: BigInt(a0.v.size) };
        throw new FuncError(`len of type ${typeName(a0)}`);
      case 'index': {
        let item = a0;
        for (const key of args.slice(1)) {
          if (item.k === 'map') {
            if (key.k !== 'string') {
              throw new FuncError(`value has type ${typeName(key)}; should be string`);
            }
            item = { k: 'string', v: item.v.get(key.v) ?? '' };
          } else if (item.k === 'string') {
            const bytes = Buffer.from(item.v, 'utf8');
            const i = indexArg(key, bytes.length);
            if (i >= bytes.length) throw new FuncError(`index out of range: ${i}`);
            item = { k: 'uint8', v: bytes[i]! };
          } else if (item.k === 'missing') {
            throw new FuncError('index of untyped nil');
          } else {
            throw new FuncError(`can't index item of type ${typeName(item)}`);
          }
        }
        return item;
      }
      case 'slice': {
        if (args.length === 1) return a0;
        if (a0.k !== 'string') throw new FuncError(`can't slice item of type ${typeName(a0)}`);
        if (args.length === 4) throw new FuncError('cannot 3-index slice a string');
        if (args.length > 4) throw new FuncError(`too many slice indexes: ${args.length - 1}`);
        const bytes = Buffer.from(a0.v, 'utf8');
        const from = indexArg(args[1]!, bytes.length);
        const to = args[2] ? indexArg(args[2], bytes.length) : bytes.length;
        if (from > to) throw new FuncError(`invalid slice index: ${from} > ${to}`);
        return { k: 'string', v: bytes.subarray(from, to).toString('utf8') };
      }
      case 'eq':
        return { k: 'bool', v: eq(a0, args.slice(1)) };
      case 'ne':
        return { k: 'bool', v: !eq(a0, [args[1]!]) };
      case 'lt':
        return { k: 'bool', v: lt(a0, args[1]!) };
      case 'le':
        return { k: 'bool', v: lt(a0, args[1]!) || eq(a0, [args[1]!]) };
      case 'gt':
        return { k: 'bool', v: !(lt(a0, args[1]!) || eq(a0, [args[1]!])) };
      case 'ge':
        return { k: 'bool', v: !lt(a0, args[1]!) };
      case 'print':
        return { k: 'string', v: sprint(args) };
      case 'println':
        return { k: 'string', v: `${args.map(formatValue).join(' ')}\n` };
      case 'printf':
        if (a0.k !== 'string')
          throw new FuncError(`wrong type for value; expected string; got ${typeName(a0)}`);
        return { k: 'string', v: sprintf(a0.v, args.slice(1)) };
      case 'html':
        return { k: 'string', v: htmlEscape(evalArgs(args)) };
      case 'js':
        return { k: 'string', v: jsEscape(evalArgs(args)) };
      case 'urlquery':
        return { k: 'string', v: queryEscape(evalArgs(args)) };
      default:
        throw new FuncError(`${name} is not supported by this template engine`);
    }
  }
}

/** A parsed template; `execute` may be called any number of times. */
export class GoTemplate {
  private constructor(
    private readonly source: string,
    private readonly nodes: readonly Node[],
  ) {}

  /** Parses like Go's `template.New("").Parse(text)`; throws GoTemplateError. */
  static parse(source: string): GoTemplate {
    const tokens = lex(source);
    return new GoTemplate(source, new Parser(tokens).parse());
  }

  /** Runs with missingkey=error over a map[string]string; throws GoTemplateError. */
  execute(data: ReadonlyMap<string, string>): string {
    return new Executor(this.source, data).run(this.nodes);
  }
}
