/** Config section `state`: the state store. */
import { z } from 'zod';
import { section, text } from '../core/config-fields.js';

export const stateConfigSchema = section({
  /** The SQLite state file, relative to the config file (created with its directory). */
  path: text().default('./var/state.db'),
}).prefault({});

export type StateSection = z.output<typeof stateConfigSchema>;
