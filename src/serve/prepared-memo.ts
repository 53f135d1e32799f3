// The webhook's memo of what decisions work out about an image before any pod context (core's
// Preparation): parse and index keys per image, the rules its keys reach per namespace, its candidates
// per rule. Pods reuse a small set of images, so this is what keeps the decision at the bench's rate
// (docs/decisions.md, "Webhook memory"). It lives here, not in the snapshot: core stays pure and the
// snapshot immutable; a new snapshot (or other settings) starts the memo over.

import {
  type DecisionSettings,
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
const IMAGE_LIMIT = 1024;
/** Namespaces per image whose matches are remembered (a pod's namespace is the only context they need). */
const NAMESPACES_PER_IMAGE = 16;
const CLUSTER_ONLY = '\u0000';

interface Entry {
  readonly image: PreparedImage;
  /** By namespace (CLUSTER_ONLY for none). */
  readonly matches: BoundedMemo<ScopeMatches>;
  readonly rules: Map<Rule, PreparedRule>;
}

export class PreparedMemo implements Preparation {
  #snapshot: MapSnapshot | undefined;
  #settings: DecisionSettings | undefined;
  readonly #entries: BoundedMemo<Entry>;
  /**
   * The entry image() returned last: decideImage asks for its matches and rule right after, so they
   * are found without a second lookup. Any other image is worked out afresh.
   */
  #last: Entry | undefined;

  constructor(limit = IMAGE_LIMIT) {
    this.#entries = new BoundedMemo(limit);
  }

  /** Images remembered under the current snapshot. */
  get size(): number {
    return this.#entries.size;
  }

  image(snapshot: MapSnapshot, settings: DecisionSettings, input: string): PreparedImage {
    if (snapshot !== this.#snapshot || settings !== this.#settings) {
      this.#entries.clear();
      this.#snapshot = snapshot;
      this.#settings = settings;
    }
    this.#last =
      this.#entries.get(input) ??
      this.#entries.set(input, {
        image: prepareFresh.image(snapshot, settings, input),
        matches: new BoundedMemo(NAMESPACES_PER_IMAGE),
        rules: new Map(),
      });
    return this.#last.image;
  }

  matches(snapshot: MapSnapshot, image: ReadyImage, namespace: string | undefined): ScopeMatches {
    const entry = this.#entryOf(snapshot, image);
    if (entry === undefined) return prepareFresh.matches(snapshot, image, namespace);
    const key = namespace ?? CLUSTER_ONLY;
    return entry.matches.get(key) ?? entry.matches.set(key, prepareFresh.matches(snapshot, image, namespace));
  }

  rule(snapshot: MapSnapshot, settings: DecisionSettings, image: ReadyImage, rule: Rule): PreparedRule {
    const entry = settings === this.#settings ? this.#entryOf(snapshot, image) : undefined;
    if (entry === undefined) return prepareFresh.rule(snapshot, settings, image, rule);
    let prepared = entry.rules.get(rule);
    if (prepared === undefined) {
      prepared = prepareFresh.rule(snapshot, settings, image, rule);
      entry.rules.set(rule, prepared);
    }
    return prepared;
  }

  /** Undefined for an image this memo did not just hand out under `snapshot`. */
  #entryOf(snapshot: MapSnapshot, image: ReadyImage): Entry | undefined {
    const last = this.#last;
    return snapshot === this.#snapshot && last?.image === image ? last : undefined;
  }
}
