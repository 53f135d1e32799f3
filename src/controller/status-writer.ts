// Writes map status (PUT …/status with the resourceVersion seen, so a stale write fails instead of
// overwriting) and an Event for each Ready transition. Writes are queued per object (the newest desired
// status wins) and run with bounded concurrency; nothing is written when the status would not change.

import { resourcePath } from '../core/api/crd.ts';
import type { MapKind } from '../core/api/v1alpha1.ts';
import type { MapVerdict } from '../core/mapping/index.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { type KubeObject, objectKey } from '../kube/list-watch.ts';
import type { Logger } from '../observe/log.ts';
import { desiredStatus, type MapStatus, readyOf, type StatusContext, statusDiffers } from './status.ts';

interface Pending {
  object: KubeObject;
  status: MapStatus;
}

interface StatusWriterOptions {
  readonly client: KubeClient;
  readonly logger: Logger;
  readonly concurrency: number;
  readonly now: () => Date;
  /** Checked before each write: only the leader writes. */
  readonly mayWrite: () => boolean;
  /** Counters the source exports as metrics. */
  readonly stats: { statusWrites: number; events: number };
  /** How this installation runs, for the notes status gives beside Ready. */
  readonly context?: StatusContext;
  /** First retry delay after a failed write that may succeed later; doubles up to a minute. */
  readonly retryMs?: number;
}

/** Answers that no retry changes: the object or the request itself is wrong (RBAC, schema, size). */
const PERMANENT = [400, 403, 413, 422];
const MAX_RETRY_MS = 60_000;

/** Condition and event timestamps: RFC 3339 to the second. */
const timestamp = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');

export class StatusWriter {
  private readonly options: StatusWriterOptions;
  private readonly pending = new Map<string, Pending>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly busy = new Set<string>();
  /** Failed writes waiting for their retry. */
  private readonly waiting = new Map<string, NodeJS.Timeout>();
  /** Failures in a row per map, until a write of it succeeds: the retry delay doubles with each. */
  private readonly failures = new Map<string, number>();
  private closed = false;

  constructor(options: StatusWriterOptions) {
    this.options = options;
  }

  /** Queues a write if `verdict` changes the object's status. */
  offer(object: KubeObject, verdict: MapVerdict): void {
    if (this.closed) return;
    const key = `${object.kind}/${objectKey(object)}`;
    const status = desiredStatus(object, verdict, timestamp(this.options.now()), this.options.context);
    if (!statusDiffers(object, status)) {
      this.pending.delete(key);
      return;
    }
    this.pending.set(key, { object, status });
    this.pump();
  }

  private pump(): void {
    for (const [key, item] of this.pending) {
      if (this.inFlight.size >= this.options.concurrency) return;
      if (this.busy.has(key) || this.waiting.has(key)) continue;
      this.pending.delete(key);
      this.busy.add(key);
      const run = this.write(key, item).finally(() => {
        this.busy.delete(key);
        this.inFlight.delete(run);
        this.pump();
      });
      this.inFlight.add(run);
    }
  }

  private retryLater(key: string, item: Pending): void {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    const delay = Math.min(MAX_RETRY_MS, (this.options.retryMs ?? 2000) * 2 ** (failures - 1));
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      if (!this.pending.has(key)) this.pending.set(key, item); // a newer offer wins
      this.pump();
    }, delay);
    timer.unref();
    this.waiting.set(key, timer);
  }

  private async write(key: string, item: Pending): Promise<void> {
    if (!this.options.mayWrite()) return;
    const { object, status } = item;
    const path = resourcePath(object.kind as MapKind, object.metadata.namespace, object.metadata.name);
    try {
      await this.options.client.request('PUT', `${path}/status`, { body: { ...object, status } });
      this.options.stats.statusWrites++;
      this.failures.delete(key);
    } catch (err) {
      // Conflict: the object changed; its watch event brings the newer version and a new offer.
      if (isStatus(err, 409) || isStatus(err, 404)) return;
      const error = err instanceof Error ? err.message : String(err);
      if (PERMANENT.some((code) => isStatus(err, code))) {
        this.options.logger.error('status write refused; not retried until the map changes', {
          map: key,
          error,
        });
        return;
      }
      if (this.closed) return;
      this.options.logger.warn('status write failed; retrying', { map: key, error });
      this.retryLater(key, item);
      return;
    }
    const before = readyOf(object);
    const after = status.conditions[0]!;
    if (before?.status !== after.status || before?.reason !== after.reason) {
      await this.event(object, after.reason, after.status === 'True' ? 'Normal' : 'Warning', after.message);
      this.options.stats.events++;
    }
  }

  /** A core/v1 Event on the map (ClusterImageMaps' go to "default"), shown by kubectl describe. */
  private async event(object: KubeObject, reason: string, type: string, message: string): Promise<void> {
    const namespace = object.metadata.namespace ?? 'default';
    const time = timestamp(this.options.now());
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

  /** Stops taking and retrying writes, and waits for those in flight. */
  async drain(): Promise<void> {
    this.closed = true;
    this.pending.clear();
    for (const timer of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }
}
