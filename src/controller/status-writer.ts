// Writes map status (PUT …/status with the resourceVersion seen, so a stale write fails instead of
// overwriting) and an Event for each Ready transition. Writes are queued per object (the newest desired
// status wins) and run with bounded concurrency; nothing is written when the status would not change.

import { namesOf } from '../core/api/crd.ts';
import { GROUP, type MapKind, VERSION } from '../core/api/v1alpha1.ts';
import type { MapVerdict } from '../core/mapping/index.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { type KubeObject, objectKey } from '../kube/list-watch.ts';
import type { Logger } from '../observe/log.ts';
import { desiredStatus, type MapStatus, readyOf, statusDiffers } from './status.ts';

interface Pending {
  object: KubeObject;
  status: MapStatus;
}

export interface StatusWriterOptions {
  readonly client: KubeClient;
  readonly logger: Logger;
  readonly concurrency: number;
  readonly now: () => Date;
  /** Checked before each write: only the leader writes. */
  readonly mayWrite: () => boolean;
  /** Retry delay after a failed write that was not a conflict. */
  readonly retryMs?: number;
}

export const objectPath = (object: KubeObject): string => {
  const names = namesOf(object.kind as MapKind);
  const ns = object.metadata.namespace;
  return `/apis/${GROUP}/${VERSION}/${ns ? `namespaces/${ns}/` : ''}${names.plural}/${object.metadata.name}`;
};

export class StatusWriter {
  private readonly options: StatusWriterOptions;
  private readonly pending = new Map<string, Pending>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly busy = new Set<string>();

  constructor(options: StatusWriterOptions) {
    this.options = options;
  }

  /** Queues a write if `verdict` changes the object's status. */
  offer(object: KubeObject, verdict: MapVerdict, stats: { statusWrites: number; events: number }): void {
    const key = `${object.kind}/${objectKey(object)}`;
    const status = desiredStatus(
      object,
      verdict,
      this.options
        .now()
        .toISOString()
        .replace(/\.\d+Z$/, 'Z'),
    );
    if (!statusDiffers(object, status)) {
      this.pending.delete(key);
      return;
    }
    this.pending.set(key, { object, status });
    this.pump(stats);
  }

  private pump(stats: { statusWrites: number; events: number }): void {
    for (const [key, item] of this.pending) {
      if (this.inFlight.size >= this.options.concurrency) return;
      if (this.busy.has(key)) continue;
      this.pending.delete(key);
      this.busy.add(key);
      const run = this.write(key, item, stats).finally(() => {
        this.busy.delete(key);
        this.inFlight.delete(run);
        this.pump(stats);
      });
      this.inFlight.add(run);
    }
  }

  private async write(
    key: string,
    item: Pending,
    stats: { statusWrites: number; events: number },
  ): Promise<void> {
    if (!this.options.mayWrite()) return;
    const { object, status } = item;
    try {
      await this.options.client.request('PUT', `${objectPath(object)}/status`, {
        body: { ...object, status },
      });
      stats.statusWrites++;
    } catch (err) {
      // Conflict: the object changed; its watch event brings the newer version and a new offer.
      if (isStatus(err, 409) || isStatus(err, 404)) return;
      this.options.logger.warn('status write failed; retrying', {
        map: key,
        error: err instanceof Error ? err.message : String(err),
      });
      setTimeout(() => {
        if (!this.pending.has(key)) {
          this.pending.set(key, item);
          this.pump(stats);
        }
      }, this.options.retryMs ?? 2000).unref();
      return;
    }
    const before = readyOf(object);
    const after = status.conditions[0]!;
    if (before?.status !== after.status || before?.reason !== after.reason) {
      await this.event(object, after.reason, after.status === 'True' ? 'Normal' : 'Warning', after.message);
      stats.events++;
    }
  }

  /** A core/v1 Event on the map (ClusterImageMaps' go to "default"), shown by kubectl describe. */
  private async event(object: KubeObject, reason: string, type: string, message: string): Promise<void> {
    const namespace = object.metadata.namespace ?? 'default';
    const time = this.options
      .now()
      .toISOString()
      .replace(/\.\d+Z$/, 'Z');
    try {
      await this.options.client.request('POST', `/api/v1/namespaces/${namespace}/events`, {
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${object.metadata.name}.`, namespace },
          involvedObject: {
            apiVersion: object.apiVersion,
            kind: object.kind,
            name: object.metadata.name,
            ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}),
            uid: object.metadata.uid,
            resourceVersion: object.metadata.resourceVersion,
          },
          reason,
          type,
          message: message.length > 1024 ? `${message.slice(0, 1023)}…` : message,
          source: { component: 'pullmap-controller' },
          firstTimestamp: time,
          lastTimestamp: time,
          count: 1,
        },
      });
    } catch (err) {
      this.options.logger.warn('event not recorded', {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** Waits for writes in flight. */
  async drain(): Promise<void> {
    this.pending.clear();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }
}
