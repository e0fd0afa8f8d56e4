import { formatFloatF, formatFloatG, formatGoValue } from '../../../../services/ca/gocompat/go-fmt';
import { flattenClaims } from '../../../../services/ca/identity/claims';

/**
 * Fulcio's ci-provider claim strings (mapValuesToString, PR #2406): a JSON number is
 * printed with strconv.FormatFloat(x, 'f', -1, 64), anything else with `%v`. Each
 * expected string is what Go printed for the JSON value on the left.
 */
const GO_FLATTEN: [string, string][] = [
  ['1', '1'],
  ['1.0', '1'],
  ['1.4', '1.4'],
  ['1.7', '1.7'],
  ['1000000.0', '1000000'],
  ['1753000000.0', '1753000000'],
  ['1e21', '1000000000000000000000'],
  ['1e23', '100000000000000000000000'],
  ['123456789012345678901234567890', '123456789012345680000000000000'],
  ['0.000001', '0.000001'],
  ['-0', '-0'],
  ['-1.5', '-1.5'],
  ['0.1', '0.1'],
  ['12345678901234567890', '12345678901234567000'],
  ['2.5e-7', '0.00000025'],
  ['true', 'true'],
  ['false', 'false'],
  ['null', '<nil>'],
  ['"s"', 's'],
  ['[1,"a",null,true,1e6]', '[1 a <nil> true 1e+06]'],
  ['{"b":1,"a":[2],"c":{"z":null}}', 'map[a:[2] b:1 c:map[z:<nil>]]'],
  ['1e-7', '0.0000001'],
  ['123456.0', '123456'],
  ['1234567.0', '1234567'],
  ['0.0001', '0.0001'],
  ['0.00001', '0.00001'],
  ['[]', '[]'],
  ['{}', 'map[]'],
  ['{"é":1,"z":2,"A":3}', 'map[A:3 z:2 é:1]'],
];

describe('flattenClaims (Fulcio mapValuesToString)', () => {
  it.each(GO_FLATTEN)('%s → %j', (json, want) => {
    const claims = JSON.parse(`{"v":${json}}`) as Record<string, unknown>;
    expect(flattenClaims(claims).get('v')).toBe(want);
  });

  it("passes Fulcio's TestGetTokenClaims cases", () => {
    const flat = flattenClaims({
      claim_string: 'bar',
      claim_string_empty: '',
      claim_bool: true,
      claim_int: 1,
      claim_float_zero: 1.0,
      claim_float_low: 1.4,
      claim_float_high: 1.7,
      claim_float_million: 1000000.0,
      claim_float_ts: 1753000000.0,
    });
    expect(Object.fromEntries(flat)).toEqual({
      claim_string: 'bar',
      claim_string_empty: '',
      claim_bool: 'true',
      claim_int: '1',
      claim_float_zero: '1',
      claim_float_low: '1.4',
      claim_float_high: '1.7',
      claim_float_million: '1000000',
      claim_float_ts: '1753000000',
    });
  });

  it('fails on a number a float64 cannot hold, as Go does when decoding the claims', () => {
    expect(() => flattenClaims({ big: Number.POSITIVE_INFINITY })).toThrow('cannot unmarshal');
  });
});

describe('Go float formatting', () => {
  it.each([
    [1e6, '1e+06'],
    [123456, '123456'],
    [1234567, '1.234567e+06'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [1e100, '1e+100'],
    [-2.5, '-2.5'],
  ])('%%v of %p is %j', (x, want) => {
    expect(formatFloatG(x)).toBe(want);
    expect(formatGoValue(x)).toBe(want);
  });

  it.each([
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, '+Inf'],
    [Number.NEGATIVE_INFINITY, '-Inf'],
  ])('FormatFloat of %p is %j', (x, want) => {
    expect(formatFloatF(x)).toBe(want);
  });
});
