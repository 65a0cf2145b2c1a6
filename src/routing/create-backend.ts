/**
 * Builds the configured RouteBackend. Secrets (the http backend's credentials) are read from the
 * environment here, at start; a missing one is a configuration error.
 */
import type { Logger } from 'pino';
import { ConfigError, type RoutingConfig } from '../config/config.js';
import { BgpRouteBackend } from './bgp-backend.js';
import { DryRunBackend } from './dry-run-backend.js';
import { HttpFailoverBackend } from './http-failover-backend.js';
import { LinuxAddressBackend } from './linux-address-backend.js';
import { LinuxRouteBackend } from './linux-route-backend.js';
import type { RouteBackend } from '../core/ports.js';

/** The backend named by routing.backend, with its settings. */
export function createRouteBackend(routing: RoutingConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): RouteBackend {
  switch (routing.backend) {
    case 'dry-run':
      logger.warn('routing backend is dry-run: addresses are NOT moved; DNS overlays are real');
      return new DryRunBackend({ logger });
    case 'http': {
      const h = routing.http!;
      const missing = [h.usernameEnv, h.passwordEnv].filter((k) => !env[k]);
      if (missing.length > 0) {
        throw new ConfigError('environment', missing.map((k) => ({ path: `routing.http.${k === h.usernameEnv ? 'username_env' : 'password_env'}`, message: `environment variable ${k} is not set` })));
      }
      return new HttpFailoverBackend({
        baseUrl: h.baseUrl,
        username: env[h.usernameEnv]!,
        password: env[h.passwordEnv]!,
        serverIps: { ...h.serverIps },
        serverIpv6Nets: { ...h.serverIpv6Nets },
        timeoutMs: h.timeoutMs,
      });
    }
    case 'linux-route': {
      const l = routing.linuxRoute!;
      return new LinuxRouteBackend({
        router: [...l.router],
        nextHops: Object.fromEntries(Object.entries(l.nextHops).map(([k, v]) => [k, [...v]])),
        hosts: l.hosts ? Object.fromEntries(Object.entries(l.hosts).map(([k, v]) => [k, [...v]])) : undefined,
        hostDevice: l.device,
        pinConnections: l.pinConnections,
        drainMs: l.drainMs,
      });
    }
    case 'linux-address': {
      const l = routing.linuxAddress!;
      return new LinuxAddressBackend({
        hosts: Object.fromEntries(Object.entries(l.hosts).map(([k, v]) => [k, { exec: [...v.exec], device: v.device }])),
        prefixLength: { 4: l.prefixLengthV4, 6: l.prefixLengthV6 },
        announceCount: l.announceCount,
        announceIntervalMs: l.announceIntervalMs,
      });
    }
    case 'bgp': {
      const b = routing.bgp!;
      return new BgpRouteBackend({
        api: b.api,
        nextHops: Object.fromEntries(Object.entries(b.nextHops).map(([k, v]) => [k, [...v]])),
        communities: [...b.communities],
        hosts: b.hosts ? Object.fromEntries(Object.entries(b.hosts).map(([k, v]) => [k, [...v]])) : undefined,
        verify: b.verify ? [...b.verify] : undefined,
        verifyDeadlineMs: b.verifyDeadlineMs,
      });
    }
    default:
      throw new ConfigError('config', [{ path: 'routing.backend', message: `backend ${JSON.stringify(routing.backend)} is not available in this build` }]);
  }
}
