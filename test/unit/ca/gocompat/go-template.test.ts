import { GoTemplate, GoTemplateError } from '../../../../services/ca/gocompat/go-template';

/**
 * Go's text/template, run as Fulcio runs ci-provider templates
 * (`template.New("").Option("missingkey=error")` over a map[string]string). Every expected
 * value and error text below is what Go printed for the same template and data: a PARSE
 * error comes from Parse, an EXEC error from Execute.
 */

const DATA = new Map(
  Object.entries({
    url: 'https://github.com',
    ref_type: 'branch',
    ref: 'main',
    html_claim: '<alert()/>',
    'with.dot.and/slash': 'cat',
    empty: '',
    'oidc.circleci.com/ssh-rerun': 'false',
    n: '5',
  }),
);

function run(template: string): { out: string } | { err: string } {
  let parsed: GoTemplate;
  try {
    parsed = GoTemplate.parse(template);
  } catch (err) {
    expect(err).toBeInstanceOf(GoTemplateError);
    return { err: `PARSE:${(err as Error).message}` };
  }
  try {
    return { out: parsed.execute(DATA) };
  } catch (err) {
    expect(err).toBeInstanceOf(GoTemplateError);
    return { err: `EXEC:${(err as Error).message}` };
  }
}

const GO: [string, { out: string } | { err: string }][] = [
  ['{{ .html_claim }}', { out: '<alert()/>' }],
  ['{{}}', { err: 'PARSE:template: :1: missing value for command' }],
  [
    '{{ .foo }}',
    { err: 'EXEC:template: :1:3: executing "" at <.foo>: map has no entry for key "foo"' },
  ],
  [
    'refs/{{if eq .ref_type "branch"}}heads/{{ else }}tags/{{end}}{{ .ref }}',
    { out: 'refs/heads/main' },
  ],
  ['{{(index . "with.dot.and/slash")}}', { out: 'cat' }],
  ['{{index . "missing"}}x', { out: 'x' }],
  [
    '{{if eq (index . "oidc.circleci.com/ssh-rerun") "true"}}ssh-rerun{{ else }}""{{end}}',
    { out: '""' },
  ],
  [
    '{{ .a_very_long_claim_name_indeed_missing }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <.a_very_long_claim_name_indeed_missing>: map has no entry for key "a_very_long_claim_name_indeed_missing"',
    },
  ],
  [
    '{{ eq .ref 1 }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <eq .ref 1>: error calling eq: incompatible types for comparison',
    },
  ],
  [
    '{{ .url.x }}',
    {
      err: 'EXEC:template: :1:7: executing "" at <.url.x>: can\'t evaluate field x in type string',
    },
  ],
  [
    '{{ .url "a" }}',
    { err: 'EXEC:template: :1:3: executing "" at <.url>: url is not a method but has arguments' },
  ],
  ['{{ foo }}', { err: 'PARSE:template: :1: function "foo" not defined' }],
  ['{{ if .ref }}', { err: 'PARSE:template: :1: unexpected EOF' }],
  ['{{ .x', { err: 'PARSE:template: :1: unclosed action' }],
  ['{{ "abc }}', { err: 'PARSE:template: :1: unterminated quoted string' }],
  ['{{ end }}', { err: 'PARSE:template: :1: unexpected {{end}}' }],
  ['{{ else }}', { err: 'PARSE:template: :1: unexpected {{else}}' }],
  ['{{ .ref | printf "%s-%d" }}', { out: 'main-%!d(MISSING)' }],
  ['{{ printf "%s-%v" .ref 3 }}', { out: 'main-3' }],
  ['{{ len .ref }}', { out: '4' }],
  ['{{ index .ref 1 }}', { out: '97' }],
  ['{{ slice .url 0 5 }}', { out: 'https' }],
  ['{{ and .empty .ref }}', { out: '' }],
  ['{{ or .empty .ref }}', { out: 'main' }],
  ['{{ not .empty }}', { out: 'true' }],
  ['{{ lt .ref "z" }}', { out: 'true' }],
  ['{{ 1 }}', { out: '1' }],
  ['{{ 1.5 }}', { out: '1.5' }],
  ['{{ 1e6 }}', { out: '1e+06' }],
  ['{{ 0x10 }}', { out: '16' }],
  [
    '{{ . }}',
    {
      out: 'map[empty: html_claim:<alert()/> n:5 oidc.circleci.com/ssh-rerun:false ref:main ref_type:branch url:https://github.com with.dot.and/slash:cat]',
    },
  ],
  ['{{ $.ref }}', { out: 'main' }],
  ['{{- .ref -}} x', { out: 'mainx' }],
  ['a  {{- .ref }}  b', { out: 'amain  b' }],
  ['{{/* c */}}x', { out: 'x' }],
  ['{{ html .html_claim }}', { out: '&lt;alert()/&gt;' }],
  ['{{ js .html_claim }}', { out: '\\u003Calert()/\\u003E' }],
  ['{{ urlquery .url }}', { out: 'https%3A%2F%2Fgithub.com' }],
  ['{{ print .ref 1 2 "a" 3 }}', { out: 'main1 2a3' }],
  ['{{ with .ref }}{{ . }}{{ end }}', { out: 'main' }],
  ['{{ with .empty }}a{{ else }}b{{ end }}', { out: 'b' }],
  ['{{ if .empty }}a{{ else if .ref }}b{{ end }}', { out: 'b' }],
  ['{{ eq .ref "x" "main" }}', { out: 'true' }],
  [
    '{{ eq .ref }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <eq .ref>: error calling eq: missing argument for comparison',
    },
  ],
  [
    '{{ not }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <not>: wrong number of args for not: want 1 got 0',
    },
  ],
  ['{{ .ref ) }}', { err: 'PARSE:template: :1: unexpected ")" in command' }],
  ['{{ ( .ref }}', { err: 'PARSE:template: :1: unclosed left paren' }],
  ['{{ .ref | 1 }}', { err: 'PARSE:template: :1: non executable command in pipeline stage 2' }],
  ['{{ nil }}', { err: 'EXEC:template: :1:3: executing "" at <nil>: nil is not a command' }],
  ['{{ .ref }', { err: 'PARSE:template: :1: unexpected "}" in operand' }],
  [
    'x{{ .ref }}\n{{ .nope }}',
    { err: 'EXEC:template: :2:3: executing "" at <.nope>: map has no entry for key "nope"' },
  ],
  [
    '{{ .ref.x.y }}',
    {
      err: 'EXEC:template: :1:7: executing "" at <.ref.x.y>: can\'t evaluate field x in type string',
    },
  ],
  [
    '{{ (index . "ref").x }}',
    {
      err: 'EXEC:template: :1:12: executing "" at <"ref">: can\'t evaluate field x in type string',
    },
  ],
  ['{{ ge .n "5" }}', { out: 'true' }],
  [
    '{{ lt 1 2.0 }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <lt 1 2.0>: error calling lt: incompatible types for comparison',
    },
  ],
  ['{{ "\\u00e4\\x41" }}', { out: 'äA' }],
  ['{{ `raw` }}', { out: 'raw' }],
  [
    '{{ index . 1 }}',
    {
      err: 'EXEC:template: :1:3: executing "" at <index . 1>: error calling index: value has type int; should be string',
    },
  ],
  [
    '{{ len 3 }}',
    { err: 'EXEC:template: :1:3: executing "" at <len 3>: error calling len: len of type int' },
  ],
];

describe('GoTemplate matches Go text/template', () => {
  it.each(GO)('%j', (template, want) => {
    expect(run(template)).toEqual(want);
  });
});

describe("GoTemplate on Fulcio's ci-provider template cases", () => {
  const claims = new Map(
    Object.entries({
      url: 'https://github.com',
      repository: 'sigstore/fulcio',
      run_id: '42',
      run_attempt: '1',
      html_claim: '<alert()/>',
      ref_type: 'branch',
      ref_gitlab: 'main',
      ref_type_tag: 'tag',
      ref_tag: '1.0.0',
      'with.dot.and/slash': 'cat',
    }),
  );
  const render = (t: string) => GoTemplate.parse(t).execute(claims);

  it('renders a valid template', () => {
    expect(
      render('{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}'),
    ).toBe('https://github.com/sigstore/fulcio/actions/runs/42/attempts/1');
  });

  it('does not HTML-escape', () => {
    expect(render('{{ .html_claim }}')).toBe('<alert()/>');
  });

  it('refuses {{}} when parsing', () => {
    expect(() => GoTemplate.parse('{{}}')).toThrow('missing value for command');
  });

  it('refuses a missing key when executing (missingkey=error)', () => {
    expect(() => render('{{ .foo }}')).toThrow('map has no entry for key "foo"');
  });

  it('branches on eq', () => {
    const t = 'refs/{{if eq .ref_type "branch"}}heads/{{ else }}tags/{{end}}{{ .ref_gitlab }}';
    expect(render(t)).toBe('refs/heads/main');
    expect(
      render(t.replace('.ref_type ', '.ref_type_tag ').replace('.ref_gitlab', '.ref_tag')),
    ).toBe('refs/tags/1.0.0');
  });

  it('reads a key holding dots and slashes with index', () => {
    expect(render('{{(index . "with.dot.and/slash")}}')).toBe('cat');
  });
});

describe('GoTemplate bounds', () => {
  it.each([
    ['{{ range . }}{{ end }}', 'range'],
    ['{{ $x := 1 }}', 'variables'],
    ['{{ define "x" }}{{ end }}', 'define'],
    ['{{ template "x" }}', 'template'],
    ['{{ call .url }}', 'call'],
  ])('refuses %j, which it does not implement, when parsing', (template, what) => {
    expect(() => GoTemplate.parse(template)).toThrow(what);
  });

  it('refuses nesting deeper than its limit instead of recursing without end', () => {
    const deep = `{{ ${'('.repeat(200)}.url${')'.repeat(200)} }}`;
    expect(() => GoTemplate.parse(deep)).toThrow('max expression depth exceeded');
  });

  it('executes a parsed template any number of times', () => {
    const t = GoTemplate.parse('{{ .a }}');
    expect(t.execute(new Map([['a', '1']]))).toBe('1');
    expect(t.execute(new Map([['a', '2']]))).toBe('2');
  });
});
