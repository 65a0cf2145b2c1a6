/** Shared tables for the zone-parser tests (master-file.test.ts and bind-compare.test.ts). */

/** A minimal valid zone head for origin example.com. (4 lines); test bodies follow it. */
export const HEAD = '$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n NS ns1\nns1 A 192.0.2.1\n';
export const HEAD_LINES = 4;

export interface ErrorCase {
  /** Lines after HEAD (or the whole file when noHead). */
  body: string;
  /** 1-based line within body where the error must be reported. */
  line: number;
  /** The exact reason in the message. */
  reason: string;
  /** Whether named-compilezone rejects the same file (false: a deliberate difference). */
  bind: boolean;
  noHead?: boolean;
}

const L64 = 'a'.repeat(64);

export const ERROR_CASES: ErrorCase[] = [
  { body: 'a A 1.2.3', line: 1, reason: 'bad IPv4 address "1.2.3"', bind: true },
  { body: 'a A 1.2.3.256', line: 1, reason: 'bad IPv4 address "1.2.3.256"', bind: true },
  { body: 'a A 01.2.3.4', line: 1, reason: 'bad IPv4 address "01.2.3.4"', bind: true },
  { body: 'a A 1.2.3.4.5', line: 1, reason: 'bad IPv4 address "1.2.3.4.5"', bind: true },
  { body: 'a A', line: 1, reason: 'missing IPv4 address', bind: true },
  { body: 'a A 1.2.3.4 5.6.7.8', line: 1, reason: 'unexpected "5.6.7.8" after the A data', bind: true },
  { body: 'a AAAA 1::2::3', line: 1, reason: 'bad IPv6 address "1::2::3"', bind: true },
  { body: 'a AAAA fe80::1%eth0', line: 1, reason: 'bad IPv6 address "fe80::1%eth0"', bind: true },
  { body: 'a AAAA 1.2.3.4', line: 1, reason: 'bad IPv6 address "1.2.3.4"', bind: true },
  { body: 'a AAAA 1:2:3:4:5:6:7:8:9', line: 1, reason: 'bad IPv6 address "1:2:3:4:5:6:7:8:9"', bind: true },
  { body: 'a AAAA 12345::1', line: 1, reason: 'bad IPv6 address "12345::1"', bind: true },
  { body: 'a FOO 1', line: 1, reason: 'unknown type "FOO"', bind: true },
  { body: 'a 60', line: 1, reason: 'missing type', bind: true },
  { body: 'a CH A 1.2.3.4', line: 1, reason: 'class "CH" is not supported (only IN)', bind: true },
  { body: 'a 60 HS A 1.2.3.4', line: 1, reason: 'class "HS" is not supported (only IN)', bind: true },
  { body: 'a OPT \\# 0', line: 1, reason: 'type OPT cannot appear in a zone', bind: true },
  { body: 'a TYPE200 \\# 0', line: 1, reason: 'type TYPE200 cannot appear in a zone', bind: true },
  { body: 'ok A 192.0.2.9\na ( A\n 1.2.3.4', line: 2, reason: 'unbalanced parenthesis: "(" is never closed', bind: true },
  { body: 'a A 1.2.3.4 )', line: 1, reason: 'unbalanced parenthesis: ")" without "("', bind: true },
  { body: 'a TXT "abc', line: 1, reason: 'unterminated string', bind: true },
  { body: 'a TXT "abc\ndef"', line: 1, reason: 'unterminated string', bind: true },
  { body: 'a TXT', line: 1, reason: 'missing TXT string', bind: true },
  { body: 'a TXT "\\256"', line: 1, reason: 'bad escape in TXT string "\\256" (\\256 is over 255)', bind: true },
  { body: 'a MX x mail', line: 1, reason: 'bad MX preference "x" (0-65535)', bind: true },
  { body: 'a MX 65536 mail', line: 1, reason: 'bad MX preference "65536" (0-65535)', bind: true },
  { body: 'a MX (\n 10\n x..y )', line: 3, reason: 'bad MX exchange: empty label in "x..y"', bind: true },
  { body: 'a SRV 1 2 3', line: 1, reason: 'missing SRV target', bind: true },
  { body: 'a CNAME b..c', line: 1, reason: 'bad CNAME target: empty label in "b..c"', bind: true },
  { body: 'a NS "quoted"', line: 1, reason: 'bad NS target "quoted" (must not be quoted)', bind: true },
  { body: 'a CAA 0 issue', line: 1, reason: 'missing CAA value', bind: true },
  { body: 'a CAA 0 is-sue "x"', line: 1, reason: 'bad CAA tag "is-sue" (letters and digits only)', bind: true },
  { body: 'a CAA 256 issue "x"', line: 1, reason: 'bad CAA flags "256" (0-255)', bind: true },
  { body: 'a DS 1 8 2 abcd', line: 1, reason: 'bad DS digest length 2 for digest type 2 (want 32)', bind: true },
  { body: 'a SSHFP 1 1', line: 1, reason: 'missing SSHFP fingerprint', bind: true },
  { body: 'a SSHFP 1 1 abc', line: 1, reason: 'bad SSHFP fingerprint (odd number of hex digits)', bind: true },
  { body: 'a SOA ns1 hostmaster 1 2 3 4', line: 1, reason: 'missing SOA minimum', bind: true },
  { body: 'a HINFO "x"', line: 1, reason: 'missing HINFO OS', bind: true },
  { body: 'a 1h30 A 1.2.3.4', line: 1, reason: 'bad TTL "1h30"', bind: true },
  { body: 'a 1x A 1.2.3.4', line: 1, reason: 'bad TTL "1x"', bind: true },
  { body: '$TTL 1y', line: 1, reason: 'bad TTL "1y"', bind: true },
  { body: '$TTL', line: 1, reason: '$TTL needs a TTL', bind: true },
  { body: '$ORIGIN', line: 1, reason: '$ORIGIN needs a domain name', bind: true },
  { body: '$FOO bar', line: 1, reason: 'unknown directive "$FOO"', bind: true },
  { body: 'a TYPE65280 \\# 4 0a0000', line: 1, reason: 'RFC 3597 data is 3 bytes but the length says 4', bind: true },
  { body: 'a TYPE65280 \\# 1', line: 1, reason: 'RFC 3597 data is 0 bytes but the length says 1', bind: true },
  { body: 'a TYPE65280 \\# x', line: 1, reason: 'bad RFC 3597 data length "x"', bind: true },
  { body: 'a TYPE65280 \\# 2 0g00', line: 1, reason: 'bad RFC 3597 data "0g00" (not hex)', bind: true },
  { body: 'a A \\# 3 0a0000', line: 1, reason: 'bad RFC 3597 data for type A: A RDATA must be 4 bytes, not 3', bind: true },
  { body: 'a MX \\# 2 000a', line: 1, reason: 'bad RFC 3597 data for type MX: truncated', bind: true },
  { body: 'sub SOA ns1 hostmaster 1 2 3 4 5', line: 1, reason: 'SOA record not at top of zone', bind: true },
  { body: 'a..b A 1.2.3.4', line: 1, reason: 'bad owner name: empty label in "a..b"', bind: true },
  { body: `${L64} A 1.2.3.4`, line: 1, reason: `bad owner name: label longer than 63 bytes in "${L64}"`, bind: true },
  { body: '"q" A 1.2.3.4', line: 1, reason: 'bad owner name "q" (must not be quoted)', bind: false },
  { body: 'a A 1.2.3.4\\', line: 1, reason: 'backslash at end of line', bind: true },
  { body: ' A 192.0.2.1', line: 1, reason: 'no current owner name (the first record starts with white space)', bind: true, noHead: true },
  { body: 'a.example.com. A 192.0.2.1\n@ SOA ns1 hostmaster 1 2 3 4 5', line: 1, reason: 'no TTL specified (add a $TTL directive or an explicit TTL)', bind: true, noHead: true },
  // deliberate differences from BIND (stricter):
  { body: 'a.other. A 1.2.3.4', line: 1, reason: 'name "a.other." is outside the zone "example.com."', bind: false },
  { body: 'a 2147483648 A 1.2.3.4', line: 1, reason: 'TTL 2147483648 is over the maximum 2147483647', bind: false },
  { body: '$INCLUDE other.zone', line: 1, reason: '$INCLUDE is not supported here', bind: false },
  { body: 'a HTTPS 1 . alpn=h2', line: 1, reason: 'type HTTPS is only supported in RFC 3597 form (\\# <length> <hex>)', bind: false },
];

/** Full file text and absolute error line of an error case. */
export function errorCaseFile(c: ErrorCase): { text: string; line: number } {
  return c.noHead
    ? { text: c.body + '\n', line: c.line }
    : { text: HEAD + c.body + '\n', line: HEAD_LINES + c.line };
}
