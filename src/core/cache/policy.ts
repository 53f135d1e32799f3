// When the cache asks upstream again about a tag it already holds. Pure: the caller passes the clock.
// Digests name immutable content and are never revalidated; only tags move.
import { parseDuration } from '../duration.ts';
import type { WholeMatch } from '../tag-pattern.ts';

export type Refresh =
  | { readonly kind: 'Always' }
  | { readonly kind: 'Never' }
  | { readonly kind: 'Interval'; readonly ms: number };

/** "Always", "Never" or "Interval(1h)"; anything else is a message saying how to write it. */
export function parseRefresh(text: string): { ok: true; refresh: Refresh } | { ok: false; message: string } {
  if (text === 'Always' || text === 'Never') return { ok: true, refresh: { kind: text } };
  const m = /^Interval\((.{1,32})\)$/.exec(text);
  if (m) {
    const d = parseDuration(m[1] as string);
    if (!d.ok) return { ok: false, message: `Interval: ${d.message}` };
    return { ok: true, refresh: d.ms === 0 ? { kind: 'Always' } : { kind: 'Interval', ms: d.ms } };
  }
  return {
    ok: false,
    message: `${JSON.stringify(text)} is not a refresh policy; write "Always", "Never" or "Interval(1h)"`,
  };
}

export function formatRefresh(refresh: Refresh): string {
  return refresh.kind === 'Interval' ? `Interval(${refresh.ms}ms)` : refresh.kind;
}

export interface RefreshRule {
  /** Anchored over "<upstream host>/<repository>"; undefined matches every repository. */
  readonly repository: WholeMatch | undefined;
  /** Anchored over the tag; undefined matches every tag. */
  readonly tags: WholeMatch | undefined;
  readonly refresh: Refresh;
}

/** The first rule matching the repository and tag decides; none matching gives `fallback`. */
export function refreshFor(
  rules: readonly RefreshRule[],
  fallback: Refresh,
  name: string,
  tag: string,
): Refresh {
  for (const rule of rules) {
    if (rule.repository !== undefined && !rule.repository.matches(name)) continue;
    if (rule.tags !== undefined && !rule.tags.matches(tag)) continue;
    return rule.refresh;
  }
  return fallback;
}

/** Whether a tag last confirmed upstream at `checkedAtMs` must be asked about again at `nowMs`. */
export function isDue(refresh: Refresh, checkedAtMs: number, nowMs: number): boolean {
  switch (refresh.kind) {
    case 'Always':
      return true;
    case 'Never':
      return false;
    case 'Interval':
      return nowMs - checkedAtMs >= refresh.ms;
  }
}
