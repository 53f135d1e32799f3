// The decisions of a Lease election as functions of the Lease object and a clock reading: whether to
// create, take over, renew or wait, what to write, and whether this replica still leads. No I/O and no
// clock of its own; lease.ts does the requests and reads performance.now().

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface LeaseObject {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

export interface Timing {
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
}

/** What this replica knows; times are readings of a monotonic clock in ms. */
export interface CampaignState {
  readonly leading: boolean;
  /** When this replica last wrote the Lease successfully. */
  readonly lastRenew: number;
  /** The holder and renew time last seen, and when it was first seen unchanged. */
  readonly observed: string;
  readonly observedAt: number;
}

export const INITIAL_STATE: CampaignState = { leading: false, lastRenew: 0, observed: '', observedAt: 0 };

/** create: no Lease yet; write: take it over or renew it; wait: another holder's record is still fresh. */
type LeaseAction = 'create' | 'write' | 'wait';

/**
 * The step for the Lease as just read (undefined: it does not exist). Another holder's record must be
 * seen unchanged for its lease duration on this clock before it is taken over, so skew does not matter.
 */
export function decide(
  lease: LeaseObject | undefined,
  state: CampaignState,
  identity: string,
  now: number,
): { action: LeaseAction; state: CampaignState } {
  if (!lease) return { action: 'create', state };
  const holder = lease.spec.holderIdentity ?? '';
  const record = `${holder}|${lease.spec.renewTime ?? ''}`;
  const seen = record === state.observed ? state : { ...state, observed: record, observedAt: now };
  const duration = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
  const fresh = holder !== '' && holder !== identity && now - seen.observedAt < duration;
  return { action: fresh ? 'wait' : 'write', state: seen };
}

/** After a create or write (won) or a wait (not won). */
export function afterAttempt(state: CampaignState, won: boolean, now: number): CampaignState {
  return won ? { ...state, leading: true, lastRenew: now } : { ...state, leading: false };
}

/** After a failed attempt: a conflict (409) ends leadership at once, anything else past the deadline. */
export function afterFailure(
  state: CampaignState,
  conflict: boolean,
  now: number,
  timing: Timing,
): CampaignState {
  const expired = now - state.lastRenew > timing.renewDeadlineMs;
  return state.leading && (conflict || expired) ? { ...state, leading: false } : state;
}

/** Leading only while the last renewal is within the deadline, even before the loop notices. */
export const isLeading = (state: CampaignState, now: number, timing: Timing): boolean =>
  state.leading && now - state.lastRenew < timing.renewDeadlineMs;

/** A request made while leading may not outlast the renew deadline; undefined: no bound of its own. */
export const requestBudget = (state: CampaignState, now: number, timing: Timing): number | undefined =>
  state.leading ? Math.max(1, timing.renewDeadlineMs - (now - state.lastRenew)) : undefined;

/** MicroTime: RFC 3339 with exactly six fractional digits. */
export const microTime = (d: Date): string => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

/** The spec this replica writes to hold the Lease, from the previous one (undefined: a new Lease). */
export function heldSpec(
  previous: LeaseSpec | undefined,
  identity: string,
  leaseDurationMs: number,
  now: Date,
): LeaseSpec {
  const mine = previous?.holderIdentity === identity;
  return {
    holderIdentity: identity,
    leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
    acquireTime: mine && previous?.acquireTime ? previous.acquireTime : microTime(now),
    renewTime: microTime(now),
    leaseTransitions: (previous?.leaseTransitions ?? 0) + (mine || previous === undefined ? 0 : 1),
  };
}

/** The spec that releases the Lease: no holder, expiring at once, so another replica takes over. */
export const releasedSpec = (spec: LeaseSpec, now: Date): LeaseSpec => ({
  ...spec,
  holderIdentity: null,
  leaseDurationSeconds: 1,
  renewTime: microTime(now),
});
