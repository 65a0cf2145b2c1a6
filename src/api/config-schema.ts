/** Config section `api`: where the HTTP API listens and where its bearer token comes from. */
import { z } from 'zod';
import { envName, hostPort, section, text } from '../core/config-fields.js';

export const apiConfigSchema = section({
  listen: hostPort(),
  /** Environment variable holding the bearer token for /v1. */
  token_env: envName().default('FAILOVER_API_TOKEN'),
  /** Where a generated token is written when the variable is unset (relative to the config file). */
  token_file: text().default('api-token'),
}).transform((a) => ({ listen: a.listen, tokenEnv: a.token_env, tokenFile: a.token_file }));

export type ApiSection = z.output<typeof apiConfigSchema>;
