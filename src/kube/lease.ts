// Leader election on a coordination.k8s.io/v1 Lease, like client-go's: the holder renews every
// `renewIntervalMs`; another candidate takes over once it has seen the same record unchanged for
// `leaseDurationMs` (measured on its own clock, so clock skew between nodes does not matter); a leader
// that could not renew within `renewDeadlineMs` steps down before anyone else may take over.

import type { Logger } from '../observe/log.ts';
import { isStatus, type KubeClient } from './client.ts';
import { sleep } from './list-watch.ts';

export interface LeaderElectionOptions {
  readonly client: KubeClient;
  readonly namespace: string;
  readonly name: string;
  /** Unique per replica (the pod name); appears as the Lease's holderIdentity. */
  readonly identity: string;
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly renewIntervalMs?: number;
  readonly logger: Logger;
  readonly onChange?: (leading: boolean) => void;
}

export interface LeaderElection {
  isLeader(): boolean;
  /** Stops campaigning; a leader releases the Lease so another replica takes over at once. */
  stop(): Promise<void>;
}

interface LeaseObject {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** MicroTime: RFC 3339 with exactly six fractional digits. */
const microTime = (d: Date): string => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export function startLeaderElection(options: LeaderElectionOptions): LeaderElection {
  const leaseDurationMs = options.leaseDurationMs ?? 15_000;
  const renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
  const renewIntervalMs = options.renewIntervalMs ?? 2_000;
  const path = `/apis/coordination.k8s.io/v1/namespaces/${options.namespace}/leases`;
  const stopController = new AbortController();
  let leading = false;
  let lastRenew = 0;
  let observed = '';
  let observedAt = 0;
  let current: LeaseObject | undefined;

  const setLeading = (value: boolean): void => {
    if (value === leading) return;
    leading = value;
    options.logger.info(value ? 'became leader' : 'stopped leading', {
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
    options.onChange?.(value);
  };

  const desired = (previous: LeaseObject['spec'] | undefined, now: Date): LeaseObject['spec'] => {
    const mine = previous?.holderIdentity === options.identity;
    return {
      holderIdentity: options.identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      acquireTime: mine && previous?.acquireTime ? previous.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (mine || previous === undefined ? 0 : 1),
    };
  };

  /**
   * Request options: stop aborts them, and while leading none may outlast the renew deadline, so a
   * hung apiserver cannot keep this replica believing it leads after another has taken over.
   */
  const bounded = (): { signal: AbortSignal; timeoutMs?: number } =>
    leading
      ? {
          signal: stopController.signal,
          timeoutMs: Math.max(1, renewDeadlineMs - (performance.now() - lastRenew)),
        }
      : { signal: stopController.signal };

  async function tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    let lease: LeaseObject | undefined;
    try {
      lease = (await options.client.request('GET', `${path}/${options.name}`, bounded())) as LeaseObject;
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    if (!lease) {
      current = (await options.client.request('POST', path, {
        ...bounded(),
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: options.name, namespace: options.namespace },
          spec: desired(undefined, now),
        },
      })) as LeaseObject;
      return true;
    }
    const record = `${lease.spec.holderIdentity ?? ''}|${lease.spec.renewTime ?? ''}`;
    if (record !== observed) {
      observed = record;
      observedAt = performance.now();
    }
    const holder = lease.spec.holderIdentity ?? '';
    const duration = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    if (holder !== '' && holder !== options.identity && performance.now() - observedAt < duration)
      return false;
    current = (await options.client.request('PUT', `${path}/${options.name}`, {
      ...bounded(),
      body: { ...lease, spec: desired(lease.spec, now) },
    })) as LeaseObject;
    return true;
  }

  const loop = (async () => {
    const stop = stopController.signal;
    while (!stop.aborted) {
      try {
        const won = await tryAcquireOrRenew();
        if (won) lastRenew = performance.now();
        setLeading(won);
      } catch (err) {
        // 409: someone else wrote the Lease first. Anything else: keep leading only within the deadline.
        if (!isStatus(err, 409))
          options.logger.warn('lease renewal failed', {
            error: err instanceof Error ? err.message : String(err),
          });
        if (leading && (isStatus(err, 409) || performance.now() - lastRenew > renewDeadlineMs))
          setLeading(false);
      }
      await sleep(renewIntervalMs, stop);
    }
  })();

  return {
    // Leading only while the last renewal is within the deadline, even before the loop notices.
    isLeader: () => leading && performance.now() - lastRenew < renewDeadlineMs,
    async stop() {
      stopController.abort();
      await loop;
      if (leading && current) {
        setLeading(false);
        try {
          await options.client.request('PUT', `${path}/${options.name}`, {
            body: {
              ...current,
              spec: {
                ...current.spec,
                holderIdentity: null,
                leaseDurationSeconds: 1,
                renewTime: microTime(new Date()),
              },
            },
            timeoutMs: 2000,
          });
        } catch {
          // the Lease expires by itself
        }
      }
    },
  };
}
