// The memory of last accepted generations: per map object, the newest generation this replica saw
// accepted, beside the one recorded in status.lastAccepted (which another replica may have written).
// What serves while a newer generation is rejected is the newer of the two.

import type { MapObject } from '../core/api/v1alpha1.ts';
import type { MapInput } from '../core/mapping/index.ts';
import { type KubeObject, objectKey } from '../kube/list-watch.ts';
import { lastAcceptedOf } from './status.ts';

/** One key per map object for this replica's bookkeeping. */
export const idOf = (o: KubeObject): string => o.metadata.uid ?? objectKey(o);

const generationOf = (o: KubeObject | undefined): number | undefined => o?.metadata.generation;

export class AcceptedGenerations {
  /** id → the newest accepted generation this replica has seen. */
  private readonly byId = new Map<string, MapObject>();

  private readonly keep: boolean;

  /** `keep`: false for `onRejectedUpdate: Undeploy`, where a rejected map serves nothing. */
  constructor(keep: boolean) {
    this.keep = keep;
  }

  /** The generation of `object` this replica holds as accepted, if any. */
  generation(object: KubeObject): number | undefined {
    return generationOf(this.byId.get(idOf(object)));
  }

  remember(object: KubeObject): void {
    this.byId.set(idOf(object), object as unknown as MapObject);
  }

  forget(object: KubeObject): void {
    this.byId.delete(idOf(object));
  }

  /** Forgets every object not in `present` (a relist brings no delete events for what went in the gap). */
  keepOnly(present: Iterable<KubeObject>): void {
    const ids = new Set([...present].map(idOf));
    for (const id of this.byId.keys()) if (!ids.has(id)) this.byId.delete(id);
  }

  /** The analysis input for `current`: itself, and the newer of the remembered and recorded generations. */
  inputOf(current: KubeObject): MapInput {
    if (!this.keep) return { current };
    const remembered = this.byId.get(idOf(current));
    const recorded = lastAcceptedOf(current);
    const useRemembered =
      remembered !== undefined &&
      (recorded === undefined || (generationOf(remembered) ?? 0) >= (generationOf(recorded) ?? 0));
    return { current, lastAccepted: useRemembered ? remembered : recorded };
  }

  get size(): number {
    return this.byId.size;
  }
}
