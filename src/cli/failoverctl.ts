#!/usr/bin/env node
/**
 * failoverctl: the controller's command line. Exit codes: 0 ok, 1 failed, 2 usage or config error.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/config.js';
import { startController } from '../main.js';
import { client, clientHelp, runOperationCommand, runStatusCommand, UsageError, CLIENT_HELP } from './commands.js';
import { mailInventoryOf, MX_AUDIT_USAGE, runMxAuditCommand } from './mx-audit-command.js';
import { mxAuditSettings } from '../audit/audit-settings.js';

const USAGE = `failoverctl: DNS and IP failover controller

Usage:
  failoverctl serve --config FILE                  run the controller (authoritative DNS + HTTP API)
  failoverctl cutover SERVER --transit T [--wait]  cut a server over to a transit (API client)
  failoverctl cutback SERVER [--wait]              route a server's addresses back (API client)
  failoverctl status [SERVER]                      where each address is routed, overlays, operations
  failoverctl mx-audit [--config FILE] DOMAIN...   check MX records of domains on external DNS
                       (--server SERVER / --all-accounts: the accounts' mail domains)
  failoverctl secondaries-config nsd --config FILE the NSD zone: entries of every served zone
  failoverctl help [COMMAND]                       show help

Options for every command:
  -h, --help                        show help for the command

Exit codes: 0 ok, 1 failed, 2 usage or config error.
`;

const HELP: Record<string, string> = {
  serve: `Usage: failoverctl serve --config FILE

Runs the controller: loads the zones of dns.zones, answers DNS on every dns.listen address
(UDP and TCP) and serves the HTTP API on api.listen. SIGHUP reloads the zones; SIGTERM or
SIGINT stop gracefully.

Options:
  -c, --config FILE   the YAML configuration (required)
  --check             validate the configuration and the zones, print the result, and exit
  -h, --help          show this help

Exit codes: 0 stopped cleanly (or --check passed), 1 failed at run time, 2 usage or config error.
`,
  'secondaries-config': `Usage: failoverctl secondaries-config nsd --config FILE [--pattern NAME]

Prints a zone: entry for every zone the controller serves (the zone files of dns.zones), each
including the pattern of deploy/secondaries/nsd.conf ("hidden-primary" unless --pattern says
otherwise), for NSD secondaries, which have no catalog zones. Include the output in nsd.conf
(include: "/etc/nsd/failover-zones.conf") and run "nsd-control reconfig" after a zone is added.
Knot and BIND secondaries read the catalog zone (dns.catalog) instead. The configuration is
validated except the TSIG secrets (dns.tsig_keys[].secret_env need not be set).

Exit codes: 0 printed, 1 a zone file failed to load (listed on stderr), 2 usage or config error.
`,
};

/** Prints NSD zone: entries for every served zone. */
async function secondariesConfig(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, pattern: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(HELP['secondaries-config']);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== 'nsd') throw new UsageError('secondaries-config: the kind is required and must be "nsd" (Knot and BIND use the catalog zone)');
  if (!values.config) throw new UsageError('secondaries-config: --config FILE is required');
  const pattern = values.pattern ?? 'hidden-primary';
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(pattern)) throw new UsageError(`secondaries-config: --pattern ${JSON.stringify(pattern)} is not a pattern name`);
  // the zone list needs no TSIG secret: checked by serve (and serve --check), not here
  const config = loadConfig(values.config, process.env, { secrets: false });
  const { ZoneDirectory } = await import('../dns/zone/zone-loader.js');
  const r = await new ZoneDirectory(config.dns.zones, { maxZoneBytes: config.dns.maxZoneFileBytes }).load();
  const names = r.zones.map((z) => z.origin).sort();
  process.stdout.write(`# failoverctl secondaries-config nsd: ${names.length} zones of ${config.file}\n`);
  for (const name of names) process.stdout.write(`zone:\n  name: "${name.replace(/\.$/, '') || '.'}"\n  include-pattern: "${pattern}"\n`);
  for (const e of r.errors) process.stderr.write(`error ${e.file}${e.line ? ':' + e.line : ''}: ${e.reason}\n`);
  return r.errors.length > 0 ? 1 : 0;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP.serve);
    return 0;
  }
  if (!values.config) throw new UsageError('serve: --config FILE is required');
  const config = loadConfig(values.config);
  if (values.check) {
    const { ZoneDirectory } = await import('../dns/zone/zone-loader.js');
    const r = await new ZoneDirectory(config.dns.zones, { maxZoneBytes: config.dns.maxZoneFileBytes }).load();
    for (const z of r.zones) process.stdout.write(`ok    ${z.origin} serial ${z.serial}, ${z.recordCount} records\n`);
    for (const e of r.errors) process.stdout.write(`error ${e.file}${e.line ? ':' + e.line : ''}: ${e.reason}\n`);
    return r.errors.length > 0 ? 1 : 0;
  }
  const ctl = await startController(config);
  const log = ctl.logger.child({ component: 'main' });
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading zones');
    ctl.reload().catch((err) => log.error({ err }, 'zone reload failed'));
  });
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'stopping');
      const force = setTimeout(() => resolveExit(1), 10_000);
      force.unref();
      ctl.stop().then(() => resolveExit(0), (err) => {
        log.error({ err }, 'error while stopping');
        resolveExit(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'help') {
    const topic = rest[0];
    if (topic === 'mx-audit') {
      process.stdout.write(MX_AUDIT_USAGE);
      return 0;
    }
    if (topic && topic in CLIENT_HELP) {
      process.stdout.write(clientHelp(topic as keyof typeof CLIENT_HELP));
      return 0;
    }
    process.stdout.write(topic && HELP[topic] ? HELP[topic] : USAGE);
    return topic && !HELP[topic] ? 2 : 0;
  }
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'cutover':
    case 'cutback':
      return runOperationCommand(cmd, rest);
    case 'status':
      return runStatusCommand(rest);
    case 'secondaries-config':
      return secondariesConfig(rest);
    case 'mx-audit':
      return runMxAuditCommand(rest, (file) => (file ? loadConfig(file, process.env, { secrets: false }).mxAudit : mxAuditSettings()), {
        loadInventory: async ({ configFile, api }) => {
          if (api) return mailInventoryOf((await client({ api: api.url, 'token-env': api.tokenEnv, 'token-file': api.tokenFile }).request('GET', '/v1/inventory')).body);
          if (!configFile) throw new Error('--server and --all-accounts read the accounts of the controller (--api URL) or of its config file (--config FILE)');
          const c = loadConfig(configFile, process.env, { secrets: false });
          return { servers: c.servers.map((x) => x.name), accounts: c.accounts };
        },
      });
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`failoverctl: invalid configuration:\n${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`failoverctl: ${(err as Error).message}\nRun "failoverctl --help" for usage.\n`);
      process.exit(2);
    }
    if ((err as Error)?.name === 'ZoneDirectoryError') {
      process.stderr.write(`failoverctl: ${(err as Error).message}\n`);
      process.exit(2);
    }
    if (['StateLockedError', 'StateFileError', 'StateUnavailableError'].includes((err as Error)?.name)) {
      process.stderr.write(`failoverctl: ${(err as Error).message}\n`);
      process.exit(1);
    }
    process.stderr.write(`failoverctl: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
