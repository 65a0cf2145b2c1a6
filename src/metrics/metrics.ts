/**
 * Every metric the controller exports, defined once, on an injected registry (never prom-client's
 * global one). Hot-path counters are kept as plain numbers by their owners and read at scrape
 * time through the `sources` set by the composition root. The README's metrics table lists them.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

/** A labelled value read at scrape time. */
export interface Sample<L extends string> {
  labels: Record<L, string>;
  value: number;
}

/** Read-outs of the migration lifecycle at scrape time. */
export interface MigrationSource {
  transitsFree(): Sample<'profile'>[];
  queueLength(): Sample<'profile'>[];
  migrations(): Sample<'state'>[];
  billableDays(): Sample<'server'>[];
}

/** Read-outs provided by the DNS server at scrape time. */
export interface DnsSource {
  queries(): Sample<'transport' | 'rcode'>[];
  dropped(): Sample<'reason'>[];
  internalErrors(): number;
  tcpConnections(): number;
  tcpRejected(): number;
  cacheEntries(): number;
}

export interface Metrics {
  registry: Registry;
  /** Set by main once the DNS server exists. */
  sources: { dns?: DnsSource; migration?: MigrationSource };
  dnsQueryDuration: Histogram;
  dnsZonesLoaded: Gauge;
  dnsZoneLoadErrors: Counter<'zone'>;
  dnsZoneSerial: Gauge<'zone'>;
  dnsRecordsLoaded: Gauge;
  dnsZoneReloads: Counter<'result'>;
  operations: Counter<'direction' | 'result'>;
  operationDuration: Histogram<'direction' | 'phase'>;
  routingErrors: Counter<'backend'>;
  overlayActive: Gauge<'server'>;
  addressOnTransit: Gauge<'server' | 'address'>;
  overlaySince: Gauge<'server'>;
  overlayMaxAge: Gauge;
  ipDowntime: Histogram<'direction' | 'backend'>;
  ipLastDowntime: Gauge<'server' | 'address' | 'direction'>;
  ipRecovered: Gauge<'server' | 'address' | 'direction'>;
  probeSuccess: Gauge<'server' | 'address'>;
  mxAudits: Counter<'verdict'>;
  accountMoveDowntime: Histogram<'direction'>;
}

/** Defines all metrics on `registry` (with Node's default process metrics). */
export function createMetrics(registry: Registry): Metrics {
  const sources: Metrics['sources'] = {};
  collectDefaultMetrics({ register: registry });
  // these three are gauges named like counters; promtool rejects them
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }

  new Counter({
    name: 'failover_dns_queries_total',
    help: 'DNS queries answered, by transport (udp, tcp) and response code.',
    labelNames: ['transport', 'rcode'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sources.dns?.queries() ?? []) if (s.value > 0) this.inc(s.labels, s.value);
    },
  });
  new Counter({
    name: 'failover_dns_dropped_total',
    help: 'DNS packets deliberately left unanswered, by reason (short: under 12 bytes; response: QR=1).',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sources.dns?.dropped() ?? []) if (s.value > 0) this.inc(s.labels, s.value);
    },
  });
  new Counter({
    name: 'failover_dns_internal_errors_total',
    help: 'Queries that hit an internal error and were answered SERVFAIL.',
    registers: [registry],
    collect() {
      this.reset();
      const v = sources.dns?.internalErrors() ?? 0;
      if (v > 0) this.inc(v);
    },
  });
  new Gauge({
    name: 'failover_dns_tcp_connections',
    help: 'Open DNS TCP connections.',
    registers: [registry],
    collect() {
      this.set(sources.dns?.tcpConnections() ?? 0);
    },
  });
  new Counter({
    name: 'failover_dns_tcp_evicted_total',
    help: 'DNS TCP connections closed because the connection cap was reached (the one idle the longest makes room for a new one, RFC 7766 6.2.3).',
    registers: [registry],
    collect() {
      this.reset();
      const v = sources.dns?.tcpRejected() ?? 0;
      if (v > 0) this.inc(v);
    },
  });
  const gaugeFrom = <L extends string>(name: string, help: string, label: L, read: (m: MigrationSource) => Sample<L>[]) =>
    new Gauge({
      name, help, labelNames: [label] as const, registers: [registry],
      collect() {
        this.reset();
        if (sources.migration) for (const s of read(sources.migration)) this.set(s.labels, s.value);
      },
    });
  gaugeFrom('failover_transits_free', 'Transits of each profile free for the next migration.', 'profile', (m) => m.transitsFree());
  gaugeFrom('failover_migration_queue_length', 'Servers waiting for a transit, per profile.', 'profile', (m) => m.queueLength());
  gaugeFrom('failover_migrations', 'Migrations per state (completed and cancelled included).', 'state', (m) => m.migrations());
  gaugeFrom('failover_transit_billable_days', 'Billable days so far of the transit held by the server (days started past the free period).', 'server', (m) => m.billableDays());
  new Gauge({
    name: 'failover_dns_cache_entries',
    help: 'Encoded answers held in the DNS wire cache.',
    registers: [registry],
    collect() {
      this.set(sources.dns?.cacheEntries() ?? 0);
    },
  });

  return {
    registry,
    sources,
    dnsQueryDuration: new Histogram({
      name: 'failover_dns_query_duration_seconds',
      help: 'Time to answer a DNS query inside the server (1 in 64 queries sampled).',
      buckets: [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05],
      registers: [registry],
    }),
    dnsZonesLoaded: new Gauge({
      name: 'failover_dns_zones_loaded',
      help: 'Zones currently served.',
      registers: [registry],
    }),
    dnsZoneLoadErrors: new Counter({
      name: 'failover_dns_zone_load_errors_total',
      help: 'Zone files that failed to parse or check, at start or reload (zone: the file name without .zone).',
      labelNames: ['zone'] as const,
      registers: [registry],
    }),
    dnsZoneSerial: new Gauge({
      name: 'failover_dns_zone_serial',
      help: 'SOA serial of each served zone.',
      labelNames: ['zone'] as const,
      registers: [registry],
    }),
    dnsRecordsLoaded: new Gauge({
      name: 'failover_dns_records_loaded',
      help: 'Resource records held in all served zones.',
      registers: [registry],
    }),
    operations: new Counter({
      name: 'failover_operations_total',
      help: 'Cutover and cutback operations finished, by direction (cutover, cutback) and result (succeeded, failed).',
      labelNames: ['direction', 'result'] as const,
      registers: [registry],
    }),
    operationDuration: new Histogram({
      name: 'failover_operation_duration_seconds',
      help: 'Time from the request to the end of each phase of an operation (dns: overlay active; routing: routes applied; recovery: measurement ended).',
      labelNames: ['direction', 'phase'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    routingErrors: new Counter({
      name: 'failover_routing_errors_total',
      help: 'Routing attempts that failed for good (after retries), by backend.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    overlayActive: new Gauge({
      name: 'failover_dns_overlay_active',
      help: '1 while DNS answers for the server carry its transit\'s addresses.',
      labelNames: ['server'] as const,
      registers: [registry],
    }),
    addressOnTransit: new Gauge({
      name: 'failover_address_on_transit',
      help: '1 while the address is routed to a transit (confirmed by the backend).',
      labelNames: ['server', 'address'] as const,
      registers: [registry],
    }),
    overlaySince: new Gauge({
      name: 'failover_dns_overlay_since_timestamp_seconds',
      help: 'When the active DNS overlay of the server started (Unix time); absent without one.',
      labelNames: ['server'] as const,
      registers: [registry],
    }),
    overlayMaxAge: new Gauge({
      name: 'failover_dns_overlay_max_age_seconds',
      help: 'health.overlay_max_days in seconds: the age past which an active overlay is alerted on.',
      registers: [registry],
    }),
    ipDowntime: new Histogram({
      name: 'failover_ip_downtime_seconds',
      help: 'Measured downtime of each rerouted address per operation (sum of probe gaps, to the probe interval).',
      labelNames: ['direction', 'backend'] as const,
      buckets: [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    ipLastDowntime: new Gauge({
      name: 'failover_ip_last_downtime_seconds',
      help: 'Measured downtime of the address during its last cutover or cutback.',
      labelNames: ['server', 'address', 'direction'] as const,
      registers: [registry],
    }),
    ipRecovered: new Gauge({
      name: 'failover_ip_recovered',
      help: '1 when the address answered from its new host at the end of its last measurement, 0 when it never did before the deadline.',
      labelNames: ['server', 'address', 'direction'] as const,
      registers: [registry],
    }),
    probeSuccess: new Gauge({
      name: 'failover_probe_success',
      help: 'Result of the latest probe of the address while a measurement runs (1 answered by origin or target, 0 failed).',
      labelNames: ['server', 'address'] as const,
      registers: [registry],
    }),
    accountMoveDowntime: new Histogram({
      name: 'failover_account_move_downtime_seconds',
      help: 'Downtime of an account during its move (reported by the migration tool, else started to completed), by direction (transit, home).',
      labelNames: ['direction'] as const,
      buckets: [1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600],
      registers: [registry],
    }),
    mxAudits: new Counter({
      name: 'failover_mx_audits_total',
      help: 'Domains audited by the MX audit (API), by overall verdict (OK, INFO, WARN, UNKNOWN, FAIL).',
      labelNames: ['verdict'] as const,
      registers: [registry],
    }),
    dnsZoneReloads: new Counter({
      name: 'failover_dns_zone_reloads_total',
      help: 'Zone directory loads (start and SIGHUP), by result (ok, partial: some zones failed).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}
