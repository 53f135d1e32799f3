// Benchmark 2: the full admission decision (planPod) for a 10-container pod against 1,000 accepted
// mappings, against the same pod with no maps at all (parsing and plumbing only).

import type { ExistenceAnswer, ExistenceFacts } from '../src/core/facts.ts';
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  type MapSnapshot,
} from '../src/core/mapping/index.ts';
import { type PodContext, planPod } from '../src/core/pod/plan.ts';
import { PreparedMemo } from '../src/serve/prepared-memo.ts';
import { type MapFixture, mapFixture, POD_NAMESPACE, TOTAL_MAPPINGS } from './map-fixture.ts';
import { type BenchResult, compareThroughput, formatRate, formatSpread, sink } from './measure.ts';

const TARGET_PODS_PER_SECOND = 50_000;
const PODS_PER_BATCH = 100;

const available: ExistenceAnswer = { outcome: 'Available', cached: true, ageMs: 1000 };
const notFound: ExistenceAnswer = { outcome: 'NotFound', status: 404, cached: true, ageMs: 1000 };

/** Cached answers as the webhook would have them: backup mirrors have everything, primaries nothing. */
const benchFacts: ExistenceFacts = (candidate) => (candidate.startsWith('backup-') ? available : notFound);

/** Builds the snapshot, refusing to benchmark a fixture the engine does not fully accept. */
function acceptedSnapshot(fixture: MapFixture): MapSnapshot {
  const analysis = analyzeMaps(fixture.objects.map((current) => ({ current })));
  const rejected = analysis.verdicts.filter((v) => v.verdict !== 'Accepted');
  if (rejected.length > 0) {
    const detail = rejected
      .map(
        (v) => `${v.name}: ${v.verdict}\n  ${v.findings.map((f) => `${f.path}: ${f.message}`).join('\n  ')}`,
      )
      .join('\n');
    throw new Error(`bench fixture is not consistent; ${rejected.length} map(s) rejected:\n${detail}`);
  }
  const rules = analysis.accepted.reduce((n, m) => n + m.rules.length, 0);
  if (rules !== TOTAL_MAPPINGS)
    throw new Error(`bench fixture compiled to ${rules} rules, expected ${TOTAL_MAPPINGS}`);
  return buildSnapshot(analysis.accepted);
}

/** Checks each container's outcome, so the timing covers the intended mix of matches. */
function checkPlan(snapshot: MapSnapshot, fixture: MapFixture, ctx: PodContext): void {
  const plan = planPod(snapshot, DEFAULT_DECISION_SETTINGS, fixture.pod, ctx, benchFacts);
  const wrong: string[] = [];
  fixture.expected.forEach((want, i) => {
    const got = plan.containers[i];
    const decision = got?.decision;
    if (
      got?.name !== want.name ||
      decision?.outcome !== want.outcome ||
      (want.map !== undefined && decision.rule?.mapName !== want.map)
    )
      wrong.push(
        `${want.name} (${want.image}): want ${want.outcome} by ${want.map ?? 'no map'}, got ${decision?.outcome} by ${decision?.rule?.mapName ?? 'no map'} [${decision?.reasons.map((r) => r.code).join(', ')}]`,
      );
  });
  if (plan.containers.length !== fixture.expected.length || wrong.length > 0)
    throw new Error(`the bench pod is not decided as designed:\n  ${wrong.join('\n  ')}`);
}

export function runDecisionBench(): BenchResult {
  const fixture = mapFixture();
  const setupStart = performance.now();
  const snapshot = acceptedSnapshot(fixture);
  const setupMs = performance.now() - setupStart;
  const empty = buildSnapshot([]);
  const ctx: PodContext = {
    namespace: POD_NAMESPACE,
    namespaceLabels: { 'kubernetes.io/metadata.name': POD_NAMESPACE },
  };
  checkPlan(snapshot, fixture, ctx);

  // Each side with a memo of its own, as the webhook keeps one (src/serve/prepared-memo.ts).
  const batch = (s: MapSnapshot) => {
    const memo = new PreparedMemo();
    return (): number => {
      let acc = 0;
      for (let i = 0; i < PODS_PER_BATCH; i++)
        acc += planPod(s, DEFAULT_DECISION_SETTINGS, fixture.pod, ctx, benchFacts, memo).patch.length;
      sink.value += acc;
      return PODS_PER_BATCH;
    };
  };
  const { subject, baseline } = compareThroughput(batch(snapshot), batch(empty), {
    warmupMs: 500,
    roundMs: 400,
    rounds: 7,
  });
  const ratio = subject.perSecond / baseline.perSecond;
  const images = fixture.expected.length;
  // The measured rounds decide one pod over and over, so after the first pod every image is in the
  // webhook's memo: the steady state of a webhook whose pods reuse their images. Deciding each pod
  // with no memo (as the CLI does) shows the first sight of an image (what a pod of never-seen images costs).
  const firstSight = compareThroughput(
    () => {
      let acc = 0;
      for (let i = 0; i < PODS_PER_BATCH; i++)
        acc += planPod(snapshot, DEFAULT_DECISION_SETTINGS, fixture.pod, ctx, benchFacts).patch.length;
      sink.value += acc;
      return PODS_PER_BATCH;
    },
    batch(snapshot),
    { warmupMs: 300, roundMs: 300, rounds: 3 },
  ).subject;

  console.log('## 2. full pod decision');
  console.log(
    `fixture    ${fixture.objects.length} maps, ${TOTAL_MAPPINGS} mappings, all Accepted (analyzeMaps + buildSnapshot ${setupMs.toFixed(0)} ms)`,
  );
  const mapped = fixture.expected.filter((c) => c.outcome === 'Mapped').length;
  console.log(
    `pod        ${images} containers: ${mapped} mapped, ${images - mapped} unchanged (mutable tag, no match, already mapped)`,
  );
  console.log(
    `pullmap    ${formatRate(subject.perSecond)} pods/s = ${formatRate(subject.perSecond * images)} images/s  (${formatSpread(subject)})`,
  );
  console.log(
    `first sight ${formatRate(firstSight.perSecond)} pods/s with every image new to the snapshot  (${formatSpread(firstSight)})`,
  );
  console.log(
    `baseline   ${formatRate(baseline.perSecond)} pods/s, empty snapshot  (${formatSpread(baseline)})`,
  );
  console.log(`RATIO      ${TOTAL_MAPPINGS} mappings/empty = ${ratio.toFixed(3)}`);
  console.log('');
  return {
    name: `pod decision, ${images} images x ${TOTAL_MAPPINGS} mappings`,
    target: `>= ${formatRate(TARGET_PODS_PER_SECOND)} pods/s`,
    measured: `${formatRate(subject.perSecond)} pods/s (first sight ${formatRate(firstSight.perSecond)})`,
    ratio: `${ratio.toFixed(3)} x empty`,
    pass: subject.perSecond >= TARGET_PODS_PER_SECOND,
  };
}
