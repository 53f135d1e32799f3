// What the webhook's decision memo (src/serve/prepared-memo.ts) earns and costs, on the decision
// benchmark's fixture (1,000 mappings, a 10-container pod): pods/s with each level of it (none, images
// only, images and per-namespace matches, all three), in alternating rounds against the full memo; then
// the heap it holds per image, with matches in one namespace and in 16. Not part of `npm run bench`:
//   node --expose-gc bench/decision-memo.ts
import {
  analyzeMaps,
  buildSnapshot,
  DEFAULT_DECISION_SETTINGS,
  type Preparation,
  type PreparedImage,
  prepareFresh,
  type ScopeMatches,
} from '../src/core/mapping/index.ts';
import { BoundedMemo } from '../src/core/memo.ts';
import { planPod } from '../src/core/pod/plan.ts';
import { PreparedMemo } from '../src/serve/prepared-memo.ts';
import { mapFixture, POD_NAMESPACE } from './map-fixture.ts';
import { compareThroughput, formatRate } from './measure.ts';

const fixture = mapFixture();
const snapshot = buildSnapshot(analyzeMaps(fixture.objects.map((current) => ({ current }))).accepted);
const ctx = { namespace: POD_NAMESPACE, namespaceLabels: { 'kubernetes.io/metadata.name': POD_NAMESPACE } };
const available = { outcome: 'Available', cached: true, ageMs: 1000 } as const;
const notFound = { outcome: 'NotFound', status: 404, cached: true, ageMs: 1000 } as const;
const facts = (c: string) => (c.startsWith('backup-') ? available : notFound);

/** Images remembered; matches too when `withMatches`; candidates per rule never. */
function partial(withMatches: boolean): Preparation {
  const images = new BoundedMemo<PreparedImage>(1024);
  const matches = new Map<string, ScopeMatches>();
  return {
    image: (s, settings, input) =>
      images.get(input) ?? images.set(input, prepareFresh.image(s, settings, input)),
    matches: (s, image, ns) => {
      if (!withMatches) return prepareFresh.matches(s, image, ns);
      const key = `${image.formatted}\u0000${ns}`;
      const known = matches.get(key);
      if (known !== undefined) return known;
      const m = prepareFresh.matches(s, image, ns);
      matches.set(key, m);
      return m;
    },
    rule: prepareFresh.rule,
  };
}

const batch = (prepare: Preparation | undefined) => (): number => {
  for (let i = 0; i < 100; i++)
    planPod(snapshot, DEFAULT_DECISION_SETTINGS, fixture.pod, ctx, facts, prepare);
  return 100;
};
const plan = { warmupMs: 300, roundMs: 400, rounds: 5 };
for (const [name, prepare] of [
  ['no memo', undefined],
  ['images only', partial(false)],
  ['images + matches', partial(true)],
] as const) {
  const { subject, baseline } = compareThroughput(batch(prepare), batch(new PreparedMemo()), plan);
  console.log(
    `${name.padEnd(17)} ${formatRate(subject.perSecond)} pods/s against ${formatRate(baseline.perSecond)} with the full memo (${(subject.perSecond / baseline.perSecond).toFixed(2)}x)`,
  );
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) console.log('(run with --expose-gc for the bytes per image)');
else
  for (const namespaces of [1, 16]) {
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const memo = new PreparedMemo();
    const before = heap();
    // Every container's tag made unique per round, so each round brings new images.
    for (let round = 0; memo.size < 1000; round++) {
      const pod = structuredClone(fixture.pod) as { spec: { containers: { image: string }[] } };
      for (const c of pod.spec.containers)
        if (!c.image.includes('@')) c.image = c.image.replace(/:([^:/]+)$/, `:$1.${round}`);
      for (let k = 0; k < namespaces; k++)
        planPod(
          snapshot,
          DEFAULT_DECISION_SETTINGS,
          pod,
          { ...ctx, namespace: k === 0 ? POD_NAMESPACE : `ns-${k}` },
          facts,
          memo,
        );
    }
    const bytes = heap() - before;
    console.log(
      `${memo.size} images, matches in ${namespaces} namespace(s): ${(bytes / 1024 / 1024).toFixed(1)} MiB, ${(bytes / memo.size / 1024).toFixed(1)} KiB per image`,
    );
  }
