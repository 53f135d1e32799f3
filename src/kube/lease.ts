// Leader election on a coordination.k8s.io/v1 Lease, like client-go's: the holder renews every
// `renewIntervalMs`; another candidate takes over once it has seen the same record unchanged for
// `leaseDurationMs` (measured on its own clock, so clock skew between nodes does not matter); a leader
// that could not renew within `renewDeadlineMs` steps down before anyone else may take over. The
// decisions are lease-decision.ts's (pure, tested without a cluster); this file does the requests.

import { messageOf } from '../core/errors.ts';
import type { Logger } from '../observe/log.ts';
import { isStatus, type KubeClient } from './client.ts';
import {
  afterAttempt,
  afterFailure,
  type CampaignState,
  decide,
  heldSpec,
  INITIAL_STATE,
  isLeading,
  type LeaseObject,
  releasedSpec,
  requestBudget,
  type Timing,
} from './lease-decision.ts';
import { sleep } from './list-watch.ts';

interface LeaderElectionOptions {
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

export function startLeaderElection(options: LeaderElectionOptions): LeaderElection {
  const timing: Timing = {
    leaseDurationMs: options.leaseDurationMs ?? 15_000,
    renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
  };
  const renewIntervalMs = options.renewIntervalMs ?? 2_000;
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${options.namespace}/leases`;
  const path = `${collection}/${options.name}`;
  const stopController = new AbortController();
  let state = INITIAL_STATE;
  /** The Lease as last written by this replica, to release it on stop. */
  let current: LeaseObject | undefined;

  const update = (next: CampaignState): void => {
    const changed = next.leading !== state.leading;
    state = next;
    if (!changed) return;
    options.logger.info(next.leading ? 'became leader' : 'stopped leading', {
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
    options.onChange?.(next.leading);
  };

  /**
   * Request options: stop aborts them, and while leading none may outlast the renew deadline, so a
   * hung apiserver cannot keep this replica believing it leads after another has taken over.
   */
  const bounded = (): { signal: AbortSignal; timeoutMs?: number } => {
    const timeoutMs = requestBudget(state, performance.now(), timing);
    return timeoutMs === undefined
      ? { signal: stopController.signal }
      : { signal: stopController.signal, timeoutMs };
  };

  async function read(): Promise<LeaseObject | undefined> {
    try {
      return (await options.client.request('GET', path, bounded())) as LeaseObject;
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** One round: read the Lease, then create, write or wait as decided; resolves with whether it won. */
  async function attempt(): Promise<boolean> {
    const now = new Date();
    const lease = await read();
    const step = decide(lease, state, options.identity, performance.now());
    state = step.state;
    if (step.action === 'wait') return false;
    const spec = heldSpec(lease?.spec, options.identity, timing.leaseDurationMs, now);
    current = (
      lease
        ? await options.client.request('PUT', path, { ...bounded(), body: { ...lease, spec } })
        : await options.client.request('POST', collection, {
            ...bounded(),
            body: {
              apiVersion: 'coordination.k8s.io/v1',
              kind: 'Lease',
              metadata: { name: options.name, namespace: options.namespace },
              spec,
            },
          })
    ) as LeaseObject;
    return true;
  }

  const loop = (async () => {
    const stop = stopController.signal;
    while (!stop.aborted) {
      try {
        const won = await attempt();
        update(afterAttempt(state, won, performance.now()));
      } catch (err) {
        // 409: someone else wrote the Lease first. Anything else: keep leading only within the deadline.
        const conflict = isStatus(err, 409);
        if (!conflict) options.logger.warn('lease renewal failed', { error: messageOf(err) });
        update(afterFailure(state, conflict, performance.now(), timing));
      }
      await sleep(renewIntervalMs, stop);
    }
  })();

  async function release(lease: LeaseObject): Promise<void> {
    try {
      await options.client.request('PUT', path, {
        body: { ...lease, spec: releasedSpec(lease.spec, new Date()) },
        timeoutMs: 2000,
      });
    } catch {
      // the Lease expires by itself
    }
  }

  return {
    isLeader: () => isLeading(state, performance.now(), timing),
    async stop() {
      stopController.abort();
      await loop;
      if (!state.leading || !current) return;
      update({ ...state, leading: false });
      await release(current);
    },
  };
}
