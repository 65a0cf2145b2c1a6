/**
 * Domain names as the MX audit takes them (and the inventory's `accounts[].mail_domains`): checked
 * and normalised, without any lookup.
 */
import { domainToASCII } from 'node:url';

/** Result of {@link validateDomain}. */
export type DomainValidation = { ok: true; domain: string } | { ok: false; reason: string };

/**
 * Checks and normalises a domain name: lower case, no trailing dot, IDNs to their A-label form;
 * host-name syntax (letters, digits, hyphens; labels of 1-63 bytes; 253 in all), at least two
 * labels, and a top-level label that is not all digits (so IP addresses are refused).
 */
export function validateDomain(input: unknown): DomainValidation {
  if (typeof input !== 'string') return { ok: false, reason: 'not a string' };
  let d = input.trim();
  if (d === '') return { ok: false, reason: 'empty name' };
  if (d.endsWith('.')) d = d.slice(0, -1);
  if (/[^\x00-\x7f]/.test(d)) {
    const a = domainToASCII(d);
    if (!a) return { ok: false, reason: `"${input}" is not a valid internationalised domain name` };
    d = a;
  }
  d = d.toLowerCase();
  if (d.length > 253) return { ok: false, reason: 'longer than 253 characters' };
  const labels = d.split('.');
  if (labels.length < 2) return { ok: false, reason: `"${input}" has a single label (a registered domain is needed)` };
  for (const l of labels) {
    if (l.length === 0) return { ok: false, reason: `"${input}" has an empty label` };
    if (l.length > 63) return { ok: false, reason: `label "${l.slice(0, 20)}..." is longer than 63 characters` };
    if (!/^[a-z0-9-]+$/.test(l)) return { ok: false, reason: `label "${l}" has characters other than letters, digits and hyphens` };
    if (l.startsWith('-') || l.endsWith('-')) return { ok: false, reason: `label "${l}" starts or ends with a hyphen` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return { ok: false, reason: `"${input}" looks like an IP address, not a domain` };
  return { ok: true, domain: d };
}

