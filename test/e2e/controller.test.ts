// The cluster map source and controller against a real etcd + kube-apiserver: the generated CRDs
// install and refuse bad objects; conflicts, fixes, broken updates, precedence and deletion reach both
// the snapshot the webhook reads and the status users read; the source survives API server restarts;
// two replicas elect one status writer; `pullmap check` and the controller agree on examples/.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { formatVerdict } from '../../src/cli/check.ts';
import type { ClusterMapSourceOptions } from '../../src/controller/map-source.ts';
import { type ClusterMapSource, startClusterMapSource } from '../../src/controller/map-source.ts';
import { reviewMapAdmission } from '../../src/controller/validate.ts';
import { parseReview } from '../../src/core/api/admission.ts';
import { DEFAULT_DECISION_SETTINGS, decideImage, type MapVerdict } from '../../src/core/mapping/index.ts';
import { loadMapsFromText } from '../../src/core/mapping/load.ts';
import { kubeClient } from '../../src/kube/client.ts';
import type { MapState } from '../../src/sources/map-source.ts';
import { installCrds, type Kube, startKube } from '../harness/kube.ts';

const ROOT = join(import.meta.dirname, '..', '..');
let kube: Kube;
const sources: ClusterMapSource[] = [];

before(async () => {
  kube = await startKube();
  await installCrds(kube);
});

// A failed test must not leave a source writing status into the next one.
afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.close()));
});

after(async () => {
  await kube?.stop();
});

function source(options: Partial<ClusterMapSourceOptions> = {}): ClusterMapSource {
  const s = startClusterMapSource({
    kubeConfig: kube.kubeConfig(),
    // Short timings so a test exercises restarts and stalls quickly; the defaults are for production.
    watch: { backoffInitialMs: 50, backoffMaxMs: 1000, stallTimeoutMs: 5000 },
    ...options,
  });
  sources.push(s);
  return s;
}

async function stop(s: ClusterMapSource): Promise<void> {
  await s.close();
  sources.splice(sources.indexOf(s), 1);
}

/** Waits (bounded, so a hang fails the test) until the source's state satisfies `ok`. */
function until(s: ClusterMapSource, what: string, ok: (state: MapState) => boolean): Promise<MapState> {
  return new Promise((resolve, reject) => {
    const check = (state: MapState): boolean => {
      if (!ok(state)) return false;
      clearTimeout(timer);
      unsubscribe();
      resolve(state);
      return true;
    };
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`gave up waiting for: ${what}`));
    }, 60_000);
    const unsubscribe = s.subscribe(check);
    const now = s.current();
    if (now) check(now);
  });
}

const verdictOf = (state: MapState, name: string): MapVerdict | undefined =>
  state.analysis.verdicts.find((v) => v.name === name);

const mapped = (state: MapState, namespace: string | undefined, image: string): string =>
  decideImage(
    state.snapshot,
    DEFAULT_DECISION_SETTINGS,
    image,
    { namespace, namespaceLabels: {}, podLabels: {} },
    () => undefined,
  ).image;

async function apply(objects: object[]): Promise<void> {
  await kube.kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));
}

const imageMap = (namespace: string, name: string, mappings: object[]): object => ({
  apiVersion: 'pullmap.dev/v1alpha1',
  kind: 'ImageMap',
  metadata: { name, namespace },
  spec: { mappings },
});

interface Stored {
  metadata: { resourceVersion: string; generation: number };
  status?: {
    observedGeneration?: number;
    servingGeneration?: number;
    mappings?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
    lastAccepted?: { generation: number };
  };
}

async function get(kind: string, name: string, namespace?: string): Promise<Stored> {
  return JSON.parse(
    await kube.kubectl(['get', kind, name, ...(namespace ? ['-n', namespace] : []), '-o', 'json']),
  ) as Stored;
}

/** Polls (bounded) until the stored object satisfies `ok`; returns it. */
async function statusUntil(
  what: string,
  read: () => Promise<Stored>,
  ok: (o: Stored) => boolean,
): Promise<Stored> {
  let last: Stored | undefined;
  for (let i = 0; i < 300; i++) {
    last = await read();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gave up waiting for ${what}; last seen: ${JSON.stringify(last?.status)}`);
}

const ready = (o: Stored) => o.status?.conditions?.find((c) => c.type === 'Ready');

test('the generated CRDs install, print readable columns, and the schema refuses bad objects', async () => {
  const ns = await kube.createNamespace({ prefix: 'crd' });
  await assert.rejects(
    apply([imageMap(ns, 'empty', [])]),
    /spec\.mappings in body should have at least 1 items/,
  );
  await assert.rejects(
    apply([
      {
        ...imageMap(ns, 'typo', [{ from: 'docker.io/', to: 'mirror.example/docker.io/' }]),
        spec: {
          mappings: [{ from: 'docker.io/', to: 'mirror.example/docker.io/', when: 'Sometimes' }],
        },
      },
    ]),
    /spec\.mappings\[0\]\.when: Unsupported value: "Sometimes": supported values: "Always", "IfExists"/,
  );
  await assert.rejects(
    apply([{ ...imageMap(ns, 'unknown', []), spec: { mappings: [{ from: 'a/', to: 'b/', extra: 1 }] } }]),
    /unknown field "spec\.mappings\[0\]\.extra"/,
  );
  const s = source();
  await apply([imageMap(ns, 'ok', [{ from: 'docker.io/', to: 'mirror.example/docker.io/' }])]);
  await statusUntil(
    'Ready',
    () => get('imagemap', 'ok', ns),
    (o) => ready(o)?.status === 'True',
  );
  const table = await kube.kubectl(['get', 'im', '-n', ns]);
  assert.match(table, /^NAME\s+MAPPINGS\s+READY\s+REASON\s+AGE\n/);
  assert.match(table, /\nok\s+1\s+True\s+Accepted\s+\d+s\n/);
  const resources = await kube.kubectl(['api-resources', '--api-group=pullmap.dev', '-o', 'wide']);
  assert.match(
    resources,
    /\nclusterimagemaps\s+cim\s+pullmap\.dev\/v1alpha1\s+false\s+ClusterImageMap\s.*\spullmap\n/,
  );
  assert.match(resources, /\nimagemaps\s+im\s+pullmap\.dev\/v1alpha1\s+true\s+ImageMap\s.*\spullmap\n/);
  const described = await kube.kubectl(['describe', 'imagemap', 'ok', '-n', ns]);
  assert.match(described, /Type:\s+Ready/);
  assert.match(described, /Normal\s+Accepted\s+.*pullmap-controller/);
  await stop(s);
});

test('two tenants in one namespace: the later map is rejected with a precise message until fixed', async () => {
  const s = source();
  const ns = await kube.createNamespace({ prefix: 'tenants' });
  await apply([
    imageMap(ns, 'a-team', [{ from: 'docker.io/library/nginx', to: 'registry.a.example/nginx' }]),
  ]);
  await until(s, 'a-team accepted', (st) => verdictOf(st, `ImageMap/${ns}/a-team`)?.verdict === 'Accepted');
  await apply([
    imageMap(ns, 'b-team', [
      { from: 'quay.io/', to: 'registry.b.example/quay.io/' },
      { from: 'nginx', to: 'registry.b.example/nginx' },
    ]),
  ]);
  const state = await until(s, 'b-team judged', (st) => verdictOf(st, `ImageMap/${ns}/b-team`) !== undefined);
  const b = verdictOf(state, `ImageMap/${ns}/b-team`)!;
  assert.equal(b.verdict, 'Conflict');
  // Pods created now use only the accepted map.
  assert.equal(mapped(state, ns, 'nginx:1.27'), 'registry.a.example/nginx:1.27');
  assert.equal(mapped(state, ns, 'quay.io/x/y:1'), 'quay.io/x/y:1');

  const stored = await statusUntil(
    'b-team Conflict',
    () => get('im', 'b-team', ns),
    (o) => ready(o) !== undefined,
  );
  const condition = ready(stored)!;
  assert.equal(condition.status, 'False');
  assert.equal(condition.reason, 'Conflict');
  assert.equal(
    condition.message,
    `spec.mappings[1]: maps "nginx" to "registry.b.example/nginx", but ImageMap/${ns}/a-team spec.mappings[0] (accepted earlier) maps "docker.io/library/nginx" to "registry.a.example/nginx"; make the two entries agree or remove one (no generation of this map is serving)`,
  );
  assert.equal(stored.status?.servingGeneration, undefined);
  // `pullmap check` says the same about the same maps.
  const lines = formatVerdict(b);
  assert.ok(condition.message.startsWith(lines[1]!.trim()), lines.join('\n'));

  // The validating webhook refuses the same object with the same words.
  const envelope = parseReview({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u1',
      kind: { group: 'pullmap.dev', version: 'v1alpha1', kind: 'ImageMap' },
      operation: 'UPDATE',
      namespace: ns,
      object: JSON.parse(await kube.kubectl(['get', 'im', 'b-team', '-n', ns, '-o', 'json'])),
    },
  });
  assert.ok(envelope.ok);
  const review = reviewMapAdmission(envelope.request, {
    inputs: s.inputs()!,
    verdicts: s.current()!.analysis.verdicts,
  });
  assert.equal(review.allowed, false);
  assert.equal(review.status?.message, `ImageMap/${ns}/b-team is rejected (Conflict): ${lines[1]!.trim()}`);

  const aBefore = await get('im', 'a-team', ns);
  await apply([
    imageMap(ns, 'b-team', [
      { from: 'quay.io/', to: 'registry.b.example/quay.io/' },
      { from: 'nginx', to: 'registry.a.example/nginx' },
    ]),
  ]);
  const fixed = await until(
    s,
    'b-team accepted',
    (st) => verdictOf(st, `ImageMap/${ns}/b-team`)?.verdict === 'Accepted',
  );
  assert.equal(mapped(fixed, ns, 'quay.io/x/y:1'), 'registry.b.example/quay.io/x/y:1');
  const b2 = await statusUntil(
    'b-team Ready',
    () => get('im', 'b-team', ns),
    (o) => ready(o)?.status === 'True',
  );
  assert.equal(b2.status?.servingGeneration, 2);
  assert.equal(ready(b2)?.reason, 'Accepted');
  const aAfter = await get('im', 'a-team', ns);
  assert.equal(aAfter.metadata.resourceVersion, aBefore.metadata.resourceVersion, 'a-team was not touched');
  const events = await kube.kubectl([
    'get',
    'events',
    '-n',
    ns,
    '--field-selector',
    'involvedObject.name=b-team',
  ]);
  assert.match(events, /Warning\s+Conflict/);
  assert.match(events, /Normal\s+Accepted/);
  await stop(s);
});

test('an update that breaks an accepted map: the last accepted generation keeps serving, even after a restart', async () => {
  let s = source();
  const ns = await kube.createNamespace({ prefix: 'broken' });
  const name = `ImageMap/${ns}/app`;
  await apply([imageMap(ns, 'app', [{ from: 'ghcr.io/', to: 'mirror.example/ghcr.io/' }])]);
  await statusUntil(
    'app gen 1 accepted',
    () => get('im', 'app', ns),
    (o) => o.status?.lastAccepted?.generation === 1,
  );
  // Two candidates without when: IfExists is invalid (the schema cannot say so; the controller does).
  await apply([
    imageMap(ns, 'app', [{ from: 'ghcr.io/', to: ['a.example/ghcr.io/', 'b.example/ghcr.io/'] }]),
  ]);
  const state = await until(s, 'app gen 2 judged', (st) => verdictOf(st, name)?.generation === 2);
  assert.equal(verdictOf(state, name)?.verdict, 'Invalid');
  assert.equal(verdictOf(state, name)?.serving, 'previous');
  assert.equal(mapped(state, ns, 'ghcr.io/acme/app:1'), 'mirror.example/ghcr.io/acme/app:1');
  const stored = await statusUntil(
    'app Invalid',
    () => get('im', 'app', ns),
    (o) => ready(o)?.reason === 'Invalid',
  );
  assert.equal(stored.status?.observedGeneration, 2);
  assert.equal(stored.status?.servingGeneration, 1);
  assert.match(
    ready(stored)!.message,
    /^spec\.mappings\[0\]\.to: lists 2 candidates, .*\(generation 1 keeps serving\)$/,
  );
  await stop(s);

  // A fresh replica never saw generation 1: it serves it from status.lastAccepted.
  s = source();
  const fresh = await until(s, 'the first list', () => true);
  assert.equal(verdictOf(fresh, name)?.serving, 'previous');
  assert.equal(mapped(fresh, ns, 'ghcr.io/acme/app:1'), 'mirror.example/ghcr.io/acme/app:1');
  await stop(s);

  // Undeploy mode serves nothing for the rejected map.
  s = source({ onRejectedUpdate: 'Undeploy', writeStatus: false });
  const undeployed = await until(s, 'the first list', () => true);
  assert.equal(verdictOf(undeployed, name)?.serving, 'none');
  assert.equal(mapped(undeployed, ns, 'ghcr.io/acme/app:1'), 'ghcr.io/acme/app:1');
  await stop(s);
});

test('a namespace map beats a cluster map for the same source; deleting it brings the cluster map back', async () => {
  const s = source();
  const ns = await kube.createNamespace({ prefix: 'scope' });
  const other = await kube.createNamespace({ prefix: 'scope-other' });
  await apply([
    {
      apiVersion: 'pullmap.dev/v1alpha1',
      kind: 'ClusterImageMap',
      metadata: { name: 'scope-test' },
      spec: {
        mappings: [{ from: 'registry.scope.example/', to: 'cluster.example/registry.scope.example/' }],
      },
    },
    imageMap(ns, 'local', [{ from: 'registry.scope.example/', to: 'local.example/registry.scope.example/' }]),
  ]);
  let state = await until(
    s,
    'both maps served',
    (st) =>
      verdictOf(st, `ImageMap/${ns}/local`)?.serving === 'current' &&
      verdictOf(st, 'ClusterImageMap/scope-test')?.serving === 'current',
  );
  assert.equal(
    mapped(state, ns, 'registry.scope.example/app:1'),
    'local.example/registry.scope.example/app:1',
  );
  assert.equal(
    mapped(state, other, 'registry.scope.example/app:1'),
    'cluster.example/registry.scope.example/app:1',
  );

  await kube.kubectl(['delete', 'imagemap', 'local', '-n', ns]);
  state = await until(s, 'local map gone', (st) => verdictOf(st, `ImageMap/${ns}/local`) === undefined);
  assert.equal(
    mapped(state, ns, 'registry.scope.example/app:1'),
    'cluster.example/registry.scope.example/app:1',
  );
  await kube.kubectl(['delete', 'clusterimagemap', 'scope-test']);
  state = await until(
    s,
    'cluster map gone',
    (st) => verdictOf(st, 'ClusterImageMap/scope-test') === undefined,
  );
  assert.equal(mapped(state, other, 'registry.scope.example/app:1'), 'registry.scope.example/app:1');
  await stop(s);
});

test('the periodic re-check analyses again but keeps the snapshot when nothing changed', async () => {
  const s = source({ recheckIntervalMs: 200 });
  const ns = await kube.createNamespace({ prefix: 'recheck' });
  await apply([imageMap(ns, 'steady', [{ from: 'registry.recheck.example/', to: 'mirror.example/rc/' }])]);
  const first = await until(
    s,
    'map served',
    (st) => verdictOf(st, `ImageMap/${ns}/steady`)?.serving === 'current',
  );
  // Let any status write of the source itself come back through the watch first.
  await new Promise((r) => setTimeout(r, 500));
  const settled = s.current()!;
  const analyses = s.stats.analyses;
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok(s.stats.analyses >= analyses + 3, `re-checks ran (${s.stats.analyses - analyses} analyses)`);
  assert.equal(s.current(), settled, 'same state object: same snapshot, same version');
  assert.ok(settled.version >= first.version);

  // A real change still swaps.
  await apply([imageMap(ns, 'steady', [{ from: 'registry.recheck.example/', to: 'mirror.example/rc2/' }])]);
  const changed = await until(
    s,
    'new spec served',
    (st) => mapped(st, ns, 'registry.recheck.example/a:1') === 'mirror.example/rc2/a:1',
  );
  assert.ok(changed.version > settled.version);
  await stop(s);
});

test('the source recovers from API server restarts (graceful and killed) and catches up', async (t) => {
  const s = source();
  const ns = await kube.createNamespace({ prefix: 'restart' });
  await until(s, 'the first list', () => true);
  for (const kill of [false, true]) {
    const watchesBefore = s.stats.watch.reduce((n, w) => n + w.watches, 0);
    await kube.restart({ kill });
    const name = kill ? 'after-kill' : 'after-term';
    await apply([imageMap(ns, name, [{ from: `${name}.example/`, to: `mirror.example/${name}.example/` }])]);
    const state = await until(
      s,
      `${name} seen`,
      (st) => verdictOf(st, `ImageMap/${ns}/${name}`)?.verdict === 'Accepted',
    );
    assert.equal(mapped(state, ns, `${name}.example/x:1`), `mirror.example/${name}.example/x:1`);
    assert.ok(s.stats.watch.reduce((n, w) => n + w.watches, 0) > watchesBefore, 'the watches were restarted');
    t.diagnostic(`${kill ? 'SIGKILL' : 'SIGTERM'}: ${JSON.stringify(s.stats.watch)}`);
  }
  await stop(s);
});

test('a request deadline that is not a whole number of milliseconds is honoured, not refused', async () => {
  // The Lease holder bounds each renewal by what is left of its renew deadline (performance.now()
  // arithmetic): a fractional deadline made every renewal while leading fail, and leadership flap.
  const client = kubeClient(kube.kubeConfig());
  try {
    const version = (await client.request('GET', '/version', { timeoutMs: 1999.37 })) as {
      gitVersion?: string;
    };
    assert.match(version.gitVersion ?? '', /^v1\./);
  } finally {
    await client.close();
  }
});

test('two replicas: both serve the same snapshot, exactly one (the Lease holder) writes status', async () => {
  const lease = {
    namespace: 'default',
    name: `pullmap-test-${Date.now()}`,
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    renewIntervalMs: 300,
  };
  const one = source({ leaderElection: { ...lease, identity: 'replica-1' } });
  const two = source({ leaderElection: { ...lease, identity: 'replica-2' } });
  await Promise.all([one.ready(), two.ready()]);
  for (let i = 0; i < 100 && !one.mayWrite() && !two.mayWrite(); i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.notEqual(one.mayWrite(), two.mayWrite(), 'exactly one leads');
  const [leader, follower] = one.mayWrite() ? [one, two] : [two, one];
  const writesBefore = follower.stats.statusWrites;

  const ns = await kube.createNamespace({ prefix: 'replicas' });
  await apply([
    imageMap(ns, 'first', [{ from: 'docker.io/', to: 'mirror.example/docker.io/' }]),
    imageMap(ns, 'second', [{ from: 'docker.io/', to: 'other.example/docker.io/' }]),
  ]);
  for (const s of [one, two]) {
    const st = await until(s, 'both maps judged', (x) => verdictOf(x, `ImageMap/${ns}/second`) !== undefined);
    assert.equal(mapped(st, ns, 'nginx:1'), 'mirror.example/docker.io/library/nginx:1');
  }
  await statusUntil(
    'second Conflict',
    () => get('im', 'second', ns),
    (o) => ready(o)?.reason === 'Conflict',
  );
  assert.equal(follower.stats.statusWrites, writesBefore, 'the follower wrote nothing');
  assert.ok(leader.stats.statusWrites > 0);
  const holder = JSON.parse(
    await kube.kubectl(['get', 'lease', lease.name, '-n', 'default', '-o', 'json']),
  ) as {
    spec: { holderIdentity: string };
  };
  assert.equal(holder.spec.holderIdentity, leader === one ? 'replica-1' : 'replica-2');

  // The leader goes away: the other takes over and writes.
  await stop(leader);
  for (let i = 0; i < 100 && !follower.mayWrite(); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(follower.mayWrite(), 'the follower took over');
  await apply([imageMap(ns, 'third', [{ from: 'ghcr.io/', to: 'mirror.example/ghcr.io/' }])]);
  await statusUntil(
    'third Ready',
    () => get('im', 'third', ns),
    (o) => ready(o)?.status === 'True',
  );
  assert.ok(follower.stats.statusWrites > writesBefore);
  await stop(follower);
});

test('pullmap check --config and the controller give the same verdicts for every file in examples/', async (t) => {
  const s = source({ writeStatus: false });
  await until(s, 'the first list', () => true);
  const dir = join(ROOT, 'examples');
  // Map files only: values-*.yaml are Helm values for the chart (test/cli-helm.test.ts checks them).
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('values-'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    const fromCheck = loadMapsFromText(text, file).analysis.verdicts;
    const objects = parseAllDocuments(text).map((d) => d.toJS() as { metadata: { namespace?: string } });
    for (const ns of new Set(objects.flatMap((o) => (o.metadata.namespace ? [o.metadata.namespace] : []))))
      await kube.kubectl(['create', 'namespace', ns]).catch(() => undefined);
    await kube.kubectl(['apply', '-f', join(dir, file)]);
    const names = fromCheck.map((v) => v.name);
    const state = await until(s, `${file} loaded`, (st) => names.every((n) => verdictOf(st, n)));
    const fromCluster = names.map((n) => verdictOf(state, n)!);
    assert.deepEqual(
      fromCluster.map((v) => formatVerdict(v)),
      fromCheck.map((v) => formatVerdict(v)),
      file,
    );
    t.diagnostic(`${file}: ${fromCheck.map((v) => `${v.name} ${v.verdict}`).join(', ')}`);
    await kube.kubectl(['delete', '-f', join(dir, file), '--wait=true']);
    await until(s, `${file} removed`, (st) => names.every((n) => !verdictOf(st, n)));
  }
  await stop(s);
});
