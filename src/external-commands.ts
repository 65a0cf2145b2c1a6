/**
 * Every external command the controller may run at run time, and the Debian package that provides
 * it. This is the one list: the Dockerfile's runtime stage installs exactly the packages of the
 * entries that are not `optional`, and scripts/test.sh installs them too (plus test-only tools);
 * test/deploy/external-commands.test.ts fails when either falls out of step with this list, or
 * when src/ runs a command that is not here.
 */

/** One external command. */
export interface ExternalCommand {
  /** The executable as the program runs it (argv[0], or the first element of a command prefix). */
  readonly command: string;
  /** The Debian (bookworm) package that provides it. */
  readonly package: string;
  /** What runs it, and when. */
  readonly usedBy: string;
  /**
   * Set when the command is never run with the config file's settings (only through a library
   * option), says why, and keeps its package out of the image and the test install.
   */
  readonly optional?: string;
}

export const EXTERNAL_COMMANDS: readonly ExternalCommand[] = [
  {
    command: 'ip',
    package: 'iproute2',
    usedBy: 'linux-route (routes on the router, make-before-break addresses on the hosts), linux-address (addresses on the hosts); `ip netns exec` prefixes',
  },
  { command: 'arping', package: 'iputils-arping', usedBy: 'linux-address: gratuitous ARP after an IPv4 address moves' },
  { command: 'ndptool', package: 'libndp-tools', usedBy: 'linux-address: unsolicited neighbour advertisements after an IPv6 address moves' },
  { command: 'nft', package: 'nftables', usedBy: 'linux-route with pin_connections: connection marks on the router' },
  { command: 'conntrack', package: 'conntrack', usedBy: 'linux-route with pin_connections: lists and drains pinned connections on the router' },
  { command: 'fping', package: 'fping', usedBy: 'health.probe {type: icmp}: the ICMP prober' },
  { command: 'ssh', package: 'openssh-client', usedBy: 'command prefixes such as ["ssh", "router"] (linux-route router/hosts, linux-address hosts.exec)' },
  {
    command: 'ndsend',
    package: 'none (upstream ndisc6 ships it; Debian\'s ndisc6 does not)',
    usedBy: 'linux-address: neighbour advertisements with LinuxAddressBackendOptions.naTool "ndsend"',
    optional: 'the config file always uses ndptool',
  },
];

/** The Debian packages the running program needs (sorted, without duplicates). */
export function runtimePackages(): string[] {
  return [...new Set(EXTERNAL_COMMANDS.filter((c) => !c.optional).map((c) => c.package))].sort();
}
