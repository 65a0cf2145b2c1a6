/** The StateStore contract, run against the etcd store: one etcd member for the whole suite, a new key prefix per test. */
import { beforeAll } from '@jest/globals';
import { openEtcdStore } from '../../src/store/etcd-store.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { describeStateStoreContract } from './state-store-contract.js';

let cluster: EtcdCluster | undefined;
let n = 0;
let last = '';

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 1 });
});

const open = (prefix: string) => openEtcdStore({ endpoints: cluster!.endpoints, prefix });

describeStateStoreContract('etcd', {
  open: () => open((last = `/fc-test-${++n}/`)),
  reopen: () => open(last),
  cleanup: async () => {
    await cluster?.stop();
  },
});
