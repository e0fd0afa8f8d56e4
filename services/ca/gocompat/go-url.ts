import { isIPv4, isIPv6 } from 'node:net';

/**
 * Go's net/url (Go 1.26) as far as Fulcio uses it to build certificate SANs and to check
 * configs: `url.Parse`, `URL.JoinPath`, `URL.String`, `URL.Hostname`. A certificate's URI
 * SAN is what Fulcio's `url.Parse(x).String()` (or `JoinPath`) prints, which is not what
 * WHATWG `URL` prints: Go keeps host case, escapes a space in a path as %20 but leaves
 * `!` or `[` alone, keeps a valid raw escaping, never adds a trailing slash, and so on.
 *
 * Go strings are bytes; this module works on "byte strings" (one char per byte, as
 * `Buffer.toString('latin1')` makes them) and converts at its edges.
 */

export class GoUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoUrlError';
  }
}

const enum Mode {
  Path = 1,
  PathSegment,
  Host,
  Zone,
  UserPassword,
  QueryComponent,
  Fragment,
}

function toBytes(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function fromBytes(b: string): string {
  return Buffer.from(b, 'latin1').toString('utf8');
}

/** Go's strconv.Quote of a byte string: printable runes as they are, the rest escaped. */
export function goQuote(text: string, isBytes = false): string {
  const bytes = isBytes ? Buffer.from(text, 'latin1') : Buffer.from(text, 'utf8');
  let out = '"';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let rune: number | undefined;
    let width = 1;
    if (b < 0x80) rune = b;
    else {
      const need = b >= 0xf0 && b < 0xf5 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 0;
      if (need > 0 && i + need <= bytes.length) {
        const piece = bytes.subarray(i, i + need);
        const decoded = piece.toString('utf8');
        if ([...decoded].length === 1 && !decoded.includes('\ufffd')) {
          rune = decoded.codePointAt(0)!;
          width = need;
        }
      }
    }
    if (rune === undefined) {
      out += `\\x${b.toString(16).padStart(2, '0')}`;
    } else {
      out += quoteRune(rune);
    }
    i += width;
  }
  return `${out}"`;
}

const SIMPLE_ESCAPES: Record<number, string> = {
  7: '\\a',
  8: '\\b',
  12: '\\f',
  10: '\\n',
  13: '\\r',
  9: '\\t',
  11: '\\v',
  0x22: '\\"',
  0x5c: '\\\\',
};

function quoteRune(rune: number): string {
  const simple = SIMPLE_ESCAPES[rune];
  if (simple) return simple;
  const ch = String.fromCodePoint(rune);
  // unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
  if (rune === 0x20 || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(ch)) return ch;
  if (rune < 0x20 || rune === 0x7f) return `\\x${rune.toString(16).padStart(2, '0')}`;
  if (rune < 0x10000) return `\\u${rune.toString(16).padStart(4, '0')}`;
  return `\\U${rune.toString(16).padStart(8, '0')}`;
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9A-Fa-f]$/.test(c);
}

function isAlnum(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) ||
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x30 && code <= 0x39)
  );
}

function shouldEscape(c: string, mode: Mode): boolean {
  const code = c.charCodeAt(0);
  if (isAlnum(code)) return false;
  if (mode === Mode.Host || mode === Mode.Zone) {
    if (`!$&'()*+,;=:[]<>"`.includes(c)) return false;
  }
  if ('-_.~'.includes(c)) return false;
  if ('$&+,/:;=?@'.includes(c)) {
    switch (mode) {
      case Mode.Path:
        return c === '?';
      case Mode.PathSegment:
        return c === '/' || c === ';' || c === ',' || c === '?';
      case Mode.UserPassword:
        return c === '@' || c === '/' || c === '?' || c === ':';
      case Mode.QueryComponent:
        return true;
      case Mode.Fragment:
        return false;
      default:
        break;
    }
  }
  if (mode === Mode.Fragment && '!()*'.includes(c)) return false;
  return true;
}

function escapeError(s: string): GoUrlError {
  return new GoUrlError(`invalid URL escape ${goQuote(s, true)}`);
}

function unescape(s: string, mode: Mode): string {
  let n = 0;
  let hasPlus = false;
  for (let i = 0; i < s.length;) {
    const c = s[i]!;
    if (c === '%') {
      n++;
      if (i + 2 >= s.length || !isHex(s[i + 1]) || !isHex(s[i + 2])) {
        throw escapeError(s.slice(i, i + 3));
      }
      const v = parseInt(s.slice(i + 1, i + 3), 16);
      if (mode === Mode.Host && parseInt(s[i + 1]!, 16) < 8 && s.slice(i, i + 3) !== '%25') {
        throw escapeError(s.slice(i, i + 3));
      }
      if (mode === Mode.Zone) {
        if (
          s.slice(i, i + 3) !== '%25' &&
          v !== 0x20 &&
          shouldEscape(String.fromCharCode(v), Mode.Host)
        ) {
          throw escapeError(s.slice(i, i + 3));
        }
      }
      i += 3;
    } else if (c === '+') {
      hasPlus = mode === Mode.QueryComponent;
      i++;
    } else {
      if (
        (mode === Mode.Host || mode === Mode.Zone) &&
        c.charCodeAt(0) < 0x80 &&
        shouldEscape(c, mode)
      ) {
        throw new GoUrlError(`invalid character ${goQuote(c, true)} in host name`);
      }
      i++;
    }
  }
  if (n === 0 && !hasPlus) return s;
  let t = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      t += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === '+') {
      t += mode === Mode.QueryComponent ? ' ' : '+';
    } else t += c;
  }
  return t;
}

function escape(s: string, mode: Mode): string {
  let t = '';
  for (const c of s) {
    if (c === ' ' && mode === Mode.QueryComponent) t += '+';
    else if (shouldEscape(c, mode)) {
      t += `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
    } else t += c;
  }
  return t;
}

function validEncoded(s: string, mode: Mode): boolean {
  for (const c of s) {
    if (`!$&'()*+,;=:@[]%`.includes(c)) continue;
    if (shouldEscape(c, mode)) return false;
  }
  return true;
}

function validOptionalPort(port: string): boolean {
  if (port === '') return true;
  if (port[0] !== ':') return false;
  return /^[0-9]*$/.test(port.slice(1));
}

function validUserinfo(s: string): boolean {
  return /^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(s);
}

function containsCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const b = s.charCodeAt(i);
    if (b < 0x20 || b === 0x7f) return true;
  }
  return false;
}

/** Go's path.Clean. */
export function goPathClean(path: string): string {
  if (path === '') return '.';
  const rooted = path[0] === '/';
  const n = path.length;
  let out = rooted ? '/' : '';
  let r = rooted ? 1 : 0;
  let dotdot = rooted ? 1 : 0;
  while (r < n) {
    if (path[r] === '/') r++;
    else if (path[r] === '.' && (r + 1 === n || path[r + 1] === '/')) r++;
    else if (path[r] === '.' && path[r + 1] === '.' && (r + 2 === n || path[r + 2] === '/')) {
      r += 2;
      if (out.length > dotdot) {
        let w = out.length - 1;
        while (w > dotdot && out[w] !== '/') w--;
        out = out.slice(0, w);
      } else if (!rooted) {
        if (out.length > 0) out += '/';
        out += '..';
        dotdot = out.length;
      }
    } else {
      if ((rooted && out.length !== 1) || (!rooted && out.length !== 0)) out += '/';
      while (r < n && path[r] !== '/') out += path[r++];
    }
  }
  return out === '' ? '.' : out;
}

/** Go's path.Join. */
export function goPathJoin(...elems: string[]): string {
  const first = elems.findIndex((e) => e !== '');
  if (first < 0) return '';
  return goPathClean(elems.slice(first).join('/'));
}

interface Userinfo {
  readonly username: string;
  readonly password: string | undefined;
}

/** A parsed URL with Go's fields; all string fields are byte strings. */
export class GoUrl {
  scheme = '';
  opaque = '';
  user: Userinfo | undefined = undefined;
  host = '';
  path = '';
  rawPath = '';
  omitHost = false;
  forceQuery = false;
  rawQuery = '';
  fragment = '';
  rawFragment = '';

  clone(): GoUrl {
    return Object.assign(new GoUrl(), this);
  }

  /** Scheme, lower-cased as Go stores it. */
  get schemeText(): string {
    return fromBytes(this.scheme);
  }

  /** Go's URL.Hostname(): the host without a valid port, IPv6 brackets removed. */
  hostname(): string {
    let host = this.host;
    const colon = host.lastIndexOf(':');
    if (colon !== -1 && validOptionalPort(host.slice(colon))) host = host.slice(0, colon);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    return fromBytes(host);
  }

  setPath(p: string): void {
    const path = unescape(p, Mode.Path);
    this.path = path;
    this.rawPath = escape(path, Mode.Path) === p ? '' : p;
  }

  setFragment(f: string): void {
    const frag = unescape(f, Mode.Fragment);
    this.fragment = frag;
    this.rawFragment = escape(frag, Mode.Fragment) === f ? '' : f;
  }

  escapedPath(): string {
    if (this.rawPath !== '' && validEncoded(this.rawPath, Mode.Path)) {
      try {
        if (unescape(this.rawPath, Mode.Path) === this.path) return this.rawPath;
      } catch {
        // fall through to the default encoding
      }
    }
    if (this.path === '*') return '*';
    return escape(this.path, Mode.Path);
  }

  private escapedFragment(): string {
    if (this.rawFragment !== '' && validEncoded(this.rawFragment, Mode.Fragment)) {
      try {
        if (unescape(this.rawFragment, Mode.Fragment) === this.fragment) return this.rawFragment;
      } catch {
        // fall through
      }
    }
    return escape(this.fragment, Mode.Fragment);
  }

  /**
   * Go's URL.JoinPath: the elements (taken as escaped path text) are joined to the path
   * and cleaned of `.`/`..` and repeated slashes. A join whose result is not a valid
   * escaping leaves the path as it was, as Go's method does.
   */
  joinPath(...elements: string[]): GoUrl {
    const elems = [this.escapedPath(), ...elements.map(toBytes)];
    let p: string;
    if (!elems[0]!.startsWith('/')) {
      elems[0] = `/${elems[0]!}`;
      p = goPathJoin(...elems).slice(1);
    } else {
      p = goPathJoin(...elems);
    }
    if (elems[elems.length - 1]!.endsWith('/') && !p.endsWith('/')) p += '/';
    const url = this.clone();
    try {
      url.setPath(p);
    } catch {
      // Go ignores setPath's error here and keeps the old path.
    }
    return url;
  }

  /** Go's URL.String(). */
  toString(): string {
    let buf = '';
    if (this.scheme !== '') buf += `${this.scheme}:`;
    if (this.opaque !== '') buf += this.opaque;
    else {
      if (this.scheme !== '' || this.host !== '' || this.user) {
        if (!(this.omitHost && this.host === '' && !this.user)) {
          if (this.host !== '' || this.path !== '' || this.user) buf += '//';
          if (this.user) {
            buf += escape(this.user.username, Mode.UserPassword);
            if (this.user.password !== undefined) {
              buf += `:${escape(this.user.password, Mode.UserPassword)}`;
            }
            buf += '@';
          }
          if (this.host !== '') buf += escape(this.host, Mode.Host);
        }
      }
      const path = this.escapedPath();
      if (path !== '' && path[0] !== '/' && this.host !== '') buf += '/';
      if (buf.length === 0) {
        const segment = path.split('/')[0]!;
        if (segment.includes(':')) buf += './';
      }
      buf += path;
    }
    if (this.forceQuery || this.rawQuery !== '') buf += `?${this.rawQuery}`;
    if (this.fragment !== '') buf += `#${this.escapedFragment()}`;
    return fromBytes(buf);
  }
}

function getScheme(raw: string): { scheme: string; rest: string } {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (/[a-zA-Z]/.test(c)) continue;
    if (/[0-9+\-.]/.test(c)) {
      if (i === 0) return { scheme: '', rest: raw };
      continue;
    }
    if (c === ':') {
      if (i === 0) throw new GoUrlError('missing protocol scheme');
      return { scheme: raw.slice(0, i), rest: raw.slice(i + 1) };
    }
    return { scheme: '', rest: raw };
  }
  return { scheme: '', rest: raw };
}

function invalidPort(colonPort: string): GoUrlError {
  return new GoUrlError(`invalid port ${goQuote(colonPort, true)} after host`);
}

function parseHost(scheme: string, host: string): string {
  const open = host.lastIndexOf('[');
  if (open > 0) throw new GoUrlError('invalid IP-literal');
  if (open === 0) {
    const close = host.lastIndexOf(']');
    if (close < 0) throw new GoUrlError("missing ']' in host");
    const colonPort = host.slice(close + 1);
    if (!validOptionalPort(colonPort)) throw invalidPort(colonPort);
    const port = unescape(colonPort, Mode.Host);
    const hostname = host.slice(1, close);
    const zone = hostname.indexOf('%25');
    const unescaped =
      zone >= 0
        ? unescape(hostname.slice(0, zone), Mode.Host) + unescape(hostname.slice(zone), Mode.Zone)
        : unescape(hostname, Mode.Host);
    // Only an IPv6 address may stand in brackets (netip.ParseAddr, then not IPv4).
    const text = fromBytes(unescaped);
    if (isIPv4(text)) throw new GoUrlError('invalid IP-literal');
    if (!isIPv6(text)) {
      throw new GoUrlError(
        `invalid host: ParseAddr(${goQuote(unescaped, true)}): unable to parse IP`,
      );
    }
    return `[${unescaped}]${port}`;
  }
  let i = host.indexOf(':');
  if (i !== -1) {
    const last = host.lastIndexOf(':');
    // Go enforces a single colon (a port) for http and https only.
    if (last !== i && scheme !== 'http' && scheme !== 'https') i = last;
    const colonPort = host.slice(i);
    if (!validOptionalPort(colonPort)) throw invalidPort(colonPort);
  }
  return unescape(host, Mode.Host);
}

function parseAuthority(url: GoUrl, authority: string): void {
  const at = authority.lastIndexOf('@');
  url.host = parseHost(url.scheme, at < 0 ? authority : authority.slice(at + 1));
  if (at < 0) return;
  const userinfo = authority.slice(0, at);
  if (!validUserinfo(userinfo)) throw new GoUrlError('net/url: invalid userinfo');
  const colon = userinfo.indexOf(':');
  if (colon < 0)
    url.user = { username: unescape(userinfo, Mode.UserPassword), password: undefined };
  else {
    url.user = {
      username: unescape(userinfo.slice(0, colon), Mode.UserPassword),
      password: unescape(userinfo.slice(colon + 1), Mode.UserPassword),
    };
  }
}

function parseNoFragment(raw: string): GoUrl {
  if (containsCtl(raw)) throw new GoUrlError('net/url: invalid control character in URL');
  const url = new GoUrl();
  if (raw === '*') {
    url.path = '*';
    return url;
  }
  const { scheme, rest: afterScheme } = getScheme(raw);
  url.scheme = scheme.toLowerCase();
  let rest = afterScheme;
  if (rest.endsWith('?') && rest.split('?').length === 2) {
    url.forceQuery = true;
    rest = rest.slice(0, -1);
  } else {
    const q = rest.indexOf('?');
    if (q >= 0) {
      url.rawQuery = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  if (!rest.startsWith('/')) {
    if (url.scheme !== '') {
      url.opaque = rest;
      return url;
    }
    if (rest.split('/')[0]!.includes(':')) {
      throw new GoUrlError('first path segment in URL cannot contain colon');
    }
  }
  if ((url.scheme !== '' || !rest.startsWith('///')) && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    parseAuthority(url, authority);
  } else if (url.scheme !== '' && rest.startsWith('/')) {
    url.omitHost = true;
  }
  url.setPath(rest);
  return url;
}

/** Go's url.Parse; errors carry Go's message (`parse "…": …`). */
export function parseGoUrl(text: string): GoUrl {
  const raw = toBytes(text);
  const hash = raw.indexOf('#');
  const u = hash < 0 ? raw : raw.slice(0, hash);
  const frag = hash < 0 ? '' : raw.slice(hash + 1);
  let url: GoUrl;
  try {
    url = parseNoFragment(u);
  } catch (err) {
    if (err instanceof GoUrlError)
      throw new GoUrlError(`parse ${goQuote(u, true)}: ${err.message}`);
    throw err;
  }
  if (frag === '') return url;
  try {
    url.setFragment(frag);
  } catch (err) {
    if (err instanceof GoUrlError) {
      throw new GoUrlError(`parse ${goQuote(raw, true)}: ${err.message}`);
    }
    throw err;
  }
  return url;
}
