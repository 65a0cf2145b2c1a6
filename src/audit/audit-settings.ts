/**
 * Settings of the MX audit: config section `mx_audit`, whose schema (src/audit/config-schema.ts)
 * gives the shape and the defaults (the provider's real values).
 */
import type { z } from 'zod';
import { mxAuditConfigSchema } from './config-schema.js';

/** Everything the MX audit can be configured with. */
export type MxAuditSettings = z.output<typeof mxAuditConfigSchema>;

/** One MX record the domain must publish (host: lower case, without trailing dot). */
export type RequiredMx = MxAuditSettings['required_mx'][number];

/** The provider's real values. */
export const DEFAULT_MX_AUDIT_SETTINGS: Readonly<MxAuditSettings> = Object.freeze(mxAuditSettings());

/** Defaults overlaid with the given values (undefined values keep the default). */
export function mxAuditSettings(partial: Partial<MxAuditSettings> = {}): MxAuditSettings {
  const out = mxAuditConfigSchema.parse({});
  for (const [k, v] of Object.entries(partial)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
