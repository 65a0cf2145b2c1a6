/**
 * Routes of the MX audit (mounted under /v1, after the bearer-token check):
 *   GET  /v1/mx-audit/:domain            -> the domain's AuditResult
 *   POST /v1/mx-audit {"domains":[...]}  -> {"results":[AuditResult...], "counts":{verdict:n}}
 * Up to 10,000 domains per POST; names that are not domain names come back per item with
 * verdict INVALID and error.code INVALID_DOMAIN (never looked up); an item that is not a string is
 * shown by its kind and size (`an array (1 item)`), never echoed or walked.
 */
import { Router, type Request, type Response } from 'express';
import type { AuditResult, AuditVerdict, MxAuditor } from '../../audit/mx-audit.js';
import { invalidResult, validateDomain } from '../../audit/mx-audit.js';
import { ApiError } from '../errors.js';
import { describeValue } from '../json-body.js';
import { MAX_AUDIT_DOMAINS, mxAuditBody, parseBody } from '../schemas.js';

export { MAX_AUDIT_DOMAINS } from '../schemas.js';

/** The router; `onVerdict` is called once per audited (valid) domain, e.g. to count failover_mx_audits_total{verdict}. */
export function mxAuditRoutes(auditor: MxAuditor, onVerdict?: (verdict: AuditVerdict) => void): Router {
  const r = Router();
  const count = (x: AuditResult) => {
    if (x.verdict !== 'INVALID') onVerdict?.(x.verdict);
  };

  r.get('/mx-audit/:domain', async (req: Request, res: Response) => {
    const raw = String(req.params.domain);
    const v = validateDomain(raw);
    if (!v.ok) throw new ApiError('BAD_REQUEST', `invalid domain name: ${v.reason}`);
    const result = await auditor.audit(v.domain);
    count(result);
    res.json(result);
  });

  r.post('/mx-audit', async (req: Request, res: Response) => {
    const raw = (req.body as { domains?: unknown } | undefined)?.domains;
    if (Array.isArray(raw) && raw.length > MAX_AUDIT_DOMAINS) {
      throw new ApiError('PAYLOAD_TOO_LARGE', `at most ${MAX_AUDIT_DOMAINS} domains per request (got ${raw.length})`);
    }
    const { domains } = parseBody(req, mxAuditBody);
    // only strings are looked up; any other item is INVALID as it is, described without walking it
    const names = domains.filter((d): d is string => typeof d === 'string');
    const audited = await auditor.auditMany(names);
    let next = 0;
    const results = domains.map((d) => (typeof d === 'string' ? audited[next++] : invalidResult(describeValue(d), 'not a string')));
    const counts: Record<string, number> = {};
    for (const x of results) {
      count(x);
      counts[x.verdict] = (counts[x.verdict] ?? 0) + 1;
    }
    res.json({ results, counts });
  });

  r.all('/mx-audit', (req: Request) => {
    throw new ApiError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on /v1/mx-audit (use POST)`);
  });
  return r;
}
