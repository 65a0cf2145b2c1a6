/** Config section `health`: how downtime is measured during operations (no probe: not measured). */
import { z } from 'zod';
import { describe, int, section, text, valid } from '../core/config-fields.js';

const port = int(1, 65535);

const httpProbe = section({
  type: z.literal('http'),
  port,
  path: text().check(valid((v) => v.startsWith('/'), (v) => `${JSON.stringify(v)} must start with "/"`)).default('/'),
  /** Host header sent (default: the address). */
  host: text().optional(),
  /** Response header naming the host that answered (lower-cased). */
  identity_header: text().transform((h) => h.toLowerCase()).optional(),
  /** Regular expression the origin's body matches and the transit's does not. */
  body_pattern: text().check(valid((v) => regexError(v) === undefined, (v) => `is not a regular expression: ${regexError(v)}`)).optional(),
}).superRefine((p, ctx) => {
  if (p.identity_header === undefined && p.body_pattern === undefined) {
    ctx.addIssue({ code: 'custom', path: [], message: 'an http probe needs identity_header or body_pattern, to tell the origin from the transit' });
  }
}, { when: (payload) => typeof payload.value === 'object' && payload.value !== null })
  .transform((p) => ({
    type: p.type, port: p.port, path: p.path,
    ...(p.host === undefined ? {} : { host: p.host }),
    ...(p.identity_header === undefined ? {} : { identityHeader: p.identity_header }),
    ...(p.body_pattern === undefined ? {} : { bodyPattern: p.body_pattern }),
  }));

const tcpProbe = section({ type: z.literal('tcp'), port }, { unknownKey: 'is not a setting of a tcp probe' });
const icmpProbe = section({ type: z.literal('icmp') }, { unknownKey: 'is not a setting of a icmp probe' });

const TYPES = 'http, tcp, icmp';
const probeSchema = z.discriminatedUnion('type', [httpProbe, tcpProbe, icmpProbe], {
  error: (iss) => {
    if (iss.code !== 'invalid_union') return `must be a mapping, not ${describe(iss.input)}`;
    const type = (iss.input as { type?: unknown } | undefined)?.type;
    return type === undefined ? `is required (one of ${TYPES})` : `must be one of ${TYPES}, not ${describe(type)}`;
  },
});

function regexError(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export const healthConfigSchema = section({
  /** Probe cadence per address. */
  interval_ms: int(10, 60_000).default(20),
  timeout_ms: int(1, 60_000).default(200),
  /** Give up waiting for recovery. */
  deadline_s: int(1, 86_400).default(600),
  /** Consecutive answers from the target that end a measurement. */
  recovery_probes: int(1, 1000).default(3),
  /** Exported for the overlay-age alert. */
  overlay_max_days: int(1, 3650).default(14),
  probe: probeSchema.optional(),
}).superRefine((h, ctx) => {
  if (h.timeout_ms > h.deadline_s * 1000) ctx.addIssue({ code: 'custom', path: ['timeout_ms'], message: 'must not exceed deadline_s' });
}).prefault({}).transform((h) => ({
  intervalMs: h.interval_ms,
  timeoutMs: h.timeout_ms,
  deadlineMs: h.deadline_s * 1000,
  recoveryProbes: h.recovery_probes,
  overlayMaxDays: h.overlay_max_days,
  probe: h.probe ?? null,
}));

/** health.*, as the controller uses it. */
export type HealthConfig = z.output<typeof healthConfigSchema>;
export type ProbeConfig = NonNullable<HealthConfig['probe']>;
