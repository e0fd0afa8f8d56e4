import {
  GoUrlError,
  goPathClean,
  goPathJoin,
  goQuote,
  parseGoUrl,
} from '../../../../services/ca/gocompat/go-url';

/**
 * Go's net/url as Fulcio uses it for SANs. The expected values were produced by Go's own
 * url.Parse / URL.String / URL.Hostname / URL.JoinPath; the IP-literal and colon rules at
 * the end are Go 1.26's (Fulcio's toolchain), read from its source.
 */

type Parsed = { out: string; hostname: string } | { err: string };

const PARSE: [string, Parsed][] = [
  ['https://github.com/', { out: 'https://github.com/', hostname: 'github.com' }],
  ['HTTPS://Example.COM/A b', { out: 'https://Example.COM/A%20b', hostname: 'Example.COM' }],
  ['https://x.y/z?q=1#frag', { out: 'https://x.y/z?q=1#frag', hostname: 'x.y' }],
  [
    'gitlab.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main',
    { out: 'gitlab.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main', hostname: '' },
  ],
  ['https://a:b@host:80/p', { out: 'https://a:b@host:80/p', hostname: 'host' }],
  ['https://host:abc/', { err: 'parse "https://host:abc/": invalid port ":abc" after host' }],
  ['https://[::1]:8080/x', { out: 'https://[::1]:8080/x', hostname: '::1' }],
  ['https://a{b}/', { err: 'parse "https://a{b}/": invalid character "{" in host name' }],
  ['https://x/%zz', { err: 'parse "https://x/%zz": invalid URL escape "%zz"' }],
  ['https://x/%zé', { err: 'parse "https://x/%zé": invalid URL escape "%z\\xc3"' }],
  ['https://x/a%2Fb', { out: 'https://x/a%2Fb', hostname: 'x' }],
  ['https://x/ä', { out: 'https://x/%C3%A4', hostname: 'x' }],
  ['https://ä.com/', { out: 'https://%C3%A4.com/', hostname: 'ä.com' }],
  ['spiffe://foo.com/bar', { out: 'spiffe://foo.com/bar', hostname: 'foo.com' }],
  ['://x', { err: 'parse "://x": missing protocol scheme' }],
  ['1a:b/x', { err: 'parse "1a:b/x": first path segment in URL cannot contain colon' }],
  ['mailto:foo@bar', { out: 'mailto:foo@bar', hostname: '' }],
  ['https://x/a#b c', { out: 'https://x/a#b%20c', hostname: 'x' }],
  ['http://x/\n', { err: 'parse "http://x/\\n": net/url: invalid control character in URL' }],
  ["https://x/!$&'()*+,;=:@[]", { out: "https://x/!$&'()*+,;=:@[]", hostname: 'x' }],
  [
    'https://x/a"b<c>d{e}f|g\\h^i`j',
    { out: 'https://x/a%22b%3Cc%3Ed%7Be%7Df%7Cg%5Ch%5Ei%60j', hostname: 'x' },
  ],
  ['https://user@host/', { out: 'https://user@host/', hostname: 'host' }],
  ['https://us er@host/', { err: 'parse "https://us er@host/": net/url: invalid userinfo' }],
  ['https:///path', { out: 'https:///path', hostname: '' }],
  ['', { out: '', hostname: '' }],
  ['https://host%41/', { err: 'parse "https://host%41/": invalid URL escape "%41"' }],
  ['https://x/a/../b', { out: 'https://x/a/../b', hostname: 'x' }],
  ['x:y', { out: 'x:y', hostname: '' }],
  ['https://x/%41', { out: 'https://x/%41', hostname: 'x' }],
  // Go 1.26: only IPv6 in brackets, and one colon (a port) in an http(s) host.
  ['https://[1.2.3.4]/', { err: 'parse "https://[1.2.3.4]/": invalid IP-literal' }],
  ['https://x[::1]/', { err: 'parse "https://x[::1]/": invalid IP-literal' }],
  ['http://a:b:c/', { err: 'parse "http://a:b:c/": invalid port ":b:c" after host' }],
  ['foo://a:b:1/', { out: 'foo://a:b:1/', hostname: 'a:b' }],
];

describe('parseGoUrl (url.Parse, URL.String, URL.Hostname)', () => {
  it.each(PARSE)('%j', (input, want) => {
    if ('err' in want) {
      expect(() => parseGoUrl(input)).toThrow(GoUrlError);
      expect(() => parseGoUrl(input)).toThrow(want.err);
      return;
    }
    const url = parseGoUrl(input);
    expect(url.toString()).toBe(want.out);
    expect(url.hostname()).toBe(want.hostname);
  });

  it('lower-cases the scheme only', () => {
    const url = parseGoUrl('HTTPS://Host.Example/Path');
    expect(url.schemeText).toBe('https');
    expect(url.hostname()).toBe('Host.Example');
  });
});

const JOIN: [string, string[], string][] = [
  [
    'https://github.com/',
    ['sigstore/fulcio/.github/workflows/foo.yaml@refs/heads/main'],
    'https://github.com/sigstore/fulcio/.github/workflows/foo.yaml@refs/heads/main',
  ],
  ['https://github.com/', ['a/../../b'], 'https://github.com/b'],
  ['https://github.com/', ['a//b/'], 'https://github.com/a/b/'],
  ['https://github.com/', ['a b'], 'https://github.com/a%20b'],
  ['https://github.com/', ['a%20b'], 'https://github.com/a%20b'],
  ['https://github.com/', ['a%zzb'], 'https://github.com/'],
  ['https://github.com/', ['a?b'], 'https://github.com/a%3Fb'],
  ['https://github.com/', ['a#b'], 'https://github.com/a%23b'],
  ['https://github.com/', ['ä'], 'https://github.com/%C3%A4'],
  [
    'https://github.com/',
    ['sigstore/fulcio', 'actions/runs', '42', 'attempts', '1'],
    'https://github.com/sigstore/fulcio/actions/runs/42/attempts/1',
  ],
  ['https://github.com/', [''], 'https://github.com/'],
  ['https://g.codefresh.io', ['acct', 'pipe:id/pid'], 'https://g.codefresh.io/acct/pipe:id/pid'],
  ['https://g.codefresh.io?x=1#f', ['a'], 'https://g.codefresh.io/a?x=1#f'],
  ['https://issuer.enforce.dev/', ['/abc'], 'https://issuer.enforce.dev/abc'],
  ['https://gitlab.com/', ['grp/proj', '/-/jobs/', '12'], 'https://gitlab.com/grp/proj/-/jobs/12'],
  ['rel', ['x'], 'rel/x'],
  ['https://x/a', ['.', '..', '..', '..'], 'https://x/'],
  ['https://x', ['a/'], 'https://x/a/'],
];

describe('GoUrl.joinPath (URL.JoinPath)', () => {
  it.each(JOIN)('%s + %j', (base, elements, want) => {
    expect(
      parseGoUrl(base)
        .joinPath(...elements)
        .toString(),
    ).toBe(want);
  });

  it('leaves the original URL as it was', () => {
    const base = parseGoUrl('https://github.com/');
    base.joinPath('x');
    expect(base.toString()).toBe('https://github.com/');
  });
});

describe('path.Clean and path.Join', () => {
  it.each([
    ['', '.'],
    ['/', '/'],
    ['a/b/../c', 'a/c'],
    ['/../a', '/a'],
    ['../../a', '../../a'],
    ['a//b/./c/', 'a/b/c'],
  ])('Clean(%j) = %j', (input, want) => {
    expect(goPathClean(input)).toBe(want);
  });

  it('Join skips leading empty elements and returns "" for none', () => {
    expect(goPathJoin('', '', 'a', '', 'b')).toBe('a/b');
    expect(goPathJoin('', '')).toBe('');
  });
});

describe('goQuote (strconv.Quote)', () => {
  it.each([
    ['plain', '"plain"'],
    ['a"b\\c', '"a\\"b\\\\c"'],
    ['tab\there\n', '"tab\\there\\n"'],
    ['\u0001', '"\\x01"'],
    ['ä', '"ä"'],
    ['\u200b', '"\\u200b"'],
  ])('%j', (input, want) => {
    expect(goQuote(input)).toBe(want);
  });

  it('escapes bytes that are not UTF-8', () => {
    expect(goQuote('%z\xc3', true)).toBe('"%z\\xc3"');
  });
});
