/** The routing port lives in the core (src/core/ports.ts); kept here for old import paths only. */
export { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';
