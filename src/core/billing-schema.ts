/** Config section `billing`: the transit's free period and the currency of monthly prices. */
import { z } from 'zod';
import { int, section, text, valid } from './config-fields.js';

export const billingConfigSchema = section({
  free_days: int(0, 3650).default(14),
  /** ISO 4217 code of servers[].monthly_price. */
  currency: text().check(valid((v) => /^[A-Z]{3}$/.test(v), (v) => `${JSON.stringify(v)} is not an ISO 4217 currency code`)).default('EUR'),
}).prefault({}).transform((b) => ({ freeDays: b.free_days, currency: b.currency }));

export type BillingSection = z.output<typeof billingConfigSchema>;
