// The webhook's memo of what decisions work out about an image before any pod context (core's
// Preparation): parse and index keys per image, the rules its keys reach per namespace, its candidates
// per rule. Pods reuse a small set of images, so this is what keeps the decision at the bench's rate
// (docs/decisions.md, "Webhook memory"). It lives here, not in the snapshot: core stays pure and the
// snapshot immutable; a new snapshot starts the memo over.

import {
  type MapSnapshot,
  type Preparation,
  type PreparedImage,
  type PreparedRule,
  prepareFresh,
  type ReadyImage,
  type Rule,
  type ScopeMatches,
} from '../core/mapping/index.ts';
import { BoundedMemo } from '../core/memo.ts';

/**
 * Distinct images remembered: 2.6 KiB each with matches in one namespace, 6.3 KiB in 16 (the bench's
 * 1,000-mapping fixture), so at most about 6.5 MiB.
 */
export const IMAGE_LIMIT = 1024;
/** Namespaces per image whose matches are remembered (a pod's namespace is the only context they need). */
const NAMESPACES_PER_IMAGE = 16;
const CLUSTER_ONLY = '\u0000';

interface Extras {
  readonly matches: BoundedMemo<ScopeMatches>;
  readonly rules: Map<Rule, PreparedRule>;
}

export class PreparedMemo implements Preparation {
  #snapshot: MapSnapshot | undefined;
  readonly #images: BoundedMemo<PreparedImage>;
  /** By formatted reference: inputs that name one image share what depends on the reference only. */
  readonly #extras: BoundedMemo<Extras>;

  constructor(limit = IMAGE_LIMIT) {
    this.#images = new BoundedMemo(limit);
    this.#extras = new BoundedMemo(limit);
  }

  /** Images remembered under the current snapshot. */
  get size(): number {
    return this.#images.size;
  }

  image(snapshot: MapSnapshot, input: string): PreparedImage {
    if (snapshot !== this.#snapshot) {
      this.#images.clear();
      this.#extras.clear();
      this.#snapshot = snapshot;
    }
    return this.#images.get(input) ?? this.#images.set(input, prepareFresh.image(snapshot, input));
  }

  matches(snapshot: MapSnapshot, image: ReadyImage, namespace: string | undefined): ScopeMatches {
    const extras = this.#extrasOf(snapshot, image);
    if (extras === undefined) return prepareFresh.matches(snapshot, image, namespace);
    const key = namespace ?? CLUSTER_ONLY;
    return (
      extras.matches.get(key) ?? extras.matches.set(key, prepareFresh.matches(snapshot, image, namespace))
    );
  }

  rule(snapshot: MapSnapshot, image: ReadyImage, rule: Rule): PreparedRule {
    const extras = this.#extrasOf(snapshot, image);
    if (extras === undefined) return prepareFresh.rule(snapshot, image, rule);
    let prepared = extras.rules.get(rule);
    if (prepared === undefined) {
      prepared = prepareFresh.rule(snapshot, image, rule);
      extras.rules.set(rule, prepared);
    }
    return prepared;
  }

  /** Undefined for an image of another snapshot (worked out afresh, not remembered). */
  #extrasOf(snapshot: MapSnapshot, image: ReadyImage): Extras | undefined {
    if (snapshot !== this.#snapshot) return undefined;
    const known = this.#extras.get(image.formatted);
    if (known !== undefined) return known;
    return this.#extras.set(image.formatted, {
      matches: new BoundedMemo(NAMESPACES_PER_IMAGE),
      rules: new Map(),
    });
  }
}
