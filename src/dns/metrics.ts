/** The DNS server's metrics (listed in src/dns/README.md). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Sample } from '../metrics/registry.js';

/** Read-outs of the DNS server's own counters at scrape time. */
export interface DnsSource {
  queries(): Sample<'transport' | 'rcode'>[];
  dropped(): Sample<'reason'>[];
  internalErrors(): number;
  tcpConnections(): number;
  tcpRejected(): number;
  cacheEntries(): number;
}

export interface DnsMetrics {
  queryDuration: Histogram;
  zonesLoaded: Gauge;
  zoneLoadErrors: Counter<'zone'>;
  zoneSerial: Gauge<'zone'>;
  recordsLoaded: Gauge;
  zoneReloads: Counter<'result'>;
  /** Zone transfers asked of the controller and signed queries (kind query), by secondary (or "other"), kind and result. */
  transfers: Counter<'secondary' | 'kind' | 'result'>;
  /** NOTIFY messages, by secondary and outcome. */
  notifies: Counter<'secondary' | 'result'>;
  propagation: Histogram<'secondary'>;
  secondarySerial: Gauge<'secondary' | 'zone'>;
  secondaryBehind: Gauge<'secondary' | 'zone'>;
}

/** Defines the DNS metrics; `source()` is read at each scrape (undefined before the listeners exist). */
export function createDnsMetrics(registry: Registry, source: () => DnsSource | undefined): DnsMetrics {
  const counter = (name: string, help: string, read: (s: DnsSource) => number) => new Counter({
    name, help, registers: [registry],
    collect() {
      this.reset();
      const s = source();
      const v = s ? read(s) : 0;
      if (v > 0) this.inc(v);
    },
  });
  const labelled = <L extends string>(name: string, help: string, labelNames: L[], read: (s: DnsSource) => Sample<L>[]) => new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      const s = source();
      for (const x of s ? read(s) : []) if (x.value > 0) this.inc(x.labels as never, x.value);
    },
  });
  const gauge = (name: string, help: string, read: (s: DnsSource) => number) => new Gauge({
    name, help, registers: [registry],
    collect() {
      const s = source();
      this.set(s ? read(s) : 0);
    },
  });
  labelled('failover_dns_queries_total', 'DNS queries answered, by transport (udp, tcp) and response code.', ['transport', 'rcode'], (s) => s.queries());
  labelled('failover_dns_dropped_total', 'DNS packets deliberately left unanswered, by reason (short: under 12 bytes; response: QR=1).', ['reason'], (s) => s.dropped());
  counter('failover_dns_internal_errors_total', 'Queries that hit an internal error and were answered SERVFAIL.', (s) => s.internalErrors());
  gauge('failover_dns_tcp_connections', 'Open DNS TCP connections.', (s) => s.tcpConnections());
  counter('failover_dns_tcp_evicted_total', 'DNS TCP connections closed because the connection cap was reached (the one idle the longest makes room for a new one, RFC 7766 6.2.3).', (s) => s.tcpRejected());
  gauge('failover_dns_cache_entries', 'Encoded answers held in the DNS wire cache.', (s) => s.cacheEntries());
  return {
    queryDuration: new Histogram({
      name: 'failover_dns_query_duration_seconds',
      help: 'Time to answer a DNS query inside the server (1 in 64 queries sampled).',
      buckets: [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05],
      registers: [registry],
    }),
    zonesLoaded: new Gauge({ name: 'failover_dns_zones_loaded', help: 'Zones currently served.', registers: [registry] }),
    zoneLoadErrors: new Counter({
      name: 'failover_dns_zone_load_errors_total',
      help: 'Zone files that failed to parse or check, at start or reload (zone: the file name without .zone).',
      labelNames: ['zone'] as const,
      registers: [registry],
    }),
    zoneSerial: new Gauge({ name: 'failover_dns_zone_serial', help: 'SOA serial of each served zone.', labelNames: ['zone'] as const, registers: [registry] }),
    recordsLoaded: new Gauge({ name: 'failover_dns_records_loaded', help: 'Resource records held in all served zones.', registers: [registry] }),
    transfers: new Counter({
      name: 'failover_dns_transfers_total',
      help: 'Zone transfer requests and the TSIG-signed queries before them, by secondary ("other": not a configured one), kind (axfr, ixfr, ixfr_full: the whole zone for an IXFR, soa: IXFR answered with the SOA, query: a signed query such as the SOA query of Knot and BIND) and result (ok; refused; notauth: a TSIG error, or a transfer of a zone not served; failed).',
      labelNames: ['secondary', 'kind', 'result'] as const,
      registers: [registry],
    }),
    notifies: new Counter({
      name: 'failover_dns_notifies_total',
      help: 'NOTIFY messages to secondaries, by outcome: acked, retried (sent again), refused (a TSIG error answered, or an error answered and no try acknowledged), gave_up (never answered).',
      labelNames: ['secondary', 'result'] as const,
      registers: [registry],
    }),
    propagation: new Histogram({
      name: 'failover_dns_propagation_seconds',
      help: 'From a change of a zone to the first answer of a secondary with its new serial.',
      labelNames: ['secondary'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    secondarySerial: new Gauge({
      name: 'failover_dns_secondary_serial',
      help: 'The SOA serial a secondary last answered for a zone.',
      labelNames: ['secondary', 'zone'] as const,
      registers: [registry],
    }),
    secondaryBehind: new Gauge({
      name: 'failover_dns_secondary_behind',
      help: '1 while a secondary has not served a zone\'s current serial for 60 s after the change.',
      labelNames: ['secondary', 'zone'] as const,
      registers: [registry],
    }),
    zoneReloads: new Counter({
      name: 'failover_dns_zone_reloads_total',
      help: 'Zone directory loads (start and SIGHUP), by result (ok, partial: some zones failed).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}
