/**
 * The configuration file's schema, composed from the sections each capability owns beside its
 * code, in the order the README's table lists them. Cross-field rules run after it
 * (src/config/config.ts).
 */
import { z } from 'zod';
import { apiConfigSchema } from '../api/config-schema.js';
import { mxAuditConfigSchema } from '../audit/config-schema.js';
import { inventorySchemas } from '../controller/inventory-schema.js';
import { billingConfigSchema } from '../core/billing-schema.js';
import { oneOf, section } from '../core/config-fields.js';
import { dnsConfigSchema } from '../dns/config-schema.js';
import { healthConfigSchema } from '../health/config-schema.js';
import { routingConfigSchema } from '../routing/config-schema.js';
import { clusterConfigSchema, stateConfigSchema } from '../store/config-schema.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Section `log`: the process's pino level. */
const logConfigSchema = section({ level: oneOf(LOG_LEVELS).default('info') }).prefault({});

export const configSchema = section({
  dns: dnsConfigSchema,
  api: apiConfigSchema,
  log: logConfigSchema,
  servers: inventorySchemas.servers,
  transits: inventorySchemas.transits,
  accounts: inventorySchemas.accounts,
  billing: billingConfigSchema,
  state: stateConfigSchema,
  cluster: clusterConfigSchema,
  routing: routingConfigSchema.optional(),
  health: healthConfigSchema,
  mx_audit: mxAuditConfigSchema,
});

export type ConfigSections = z.output<typeof configSchema>;
