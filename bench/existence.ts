// Benchmark 4: existence checks against a real Debian docker-registry on loopback. 200 distinct small
// images; 10,000 admissions-worth of checks (seeded random draws, 32 in flight) through the
// ExistenceOracle and registryProbe:
//   warm  — one oracle with its default TTLs: the registry's access log must show at most one
//           request per distinct image (the whole run fits in one TTL window);
//   cold  — TTL 0, so every check goes to the registry (the draws never repeat an image within
//           4 x 32 checks, so coalescing cannot flatter the oracle); throughput and p99 against a raw
//           HEAD loop (undici, same Accept header, same draws, same concurrency), in alternating
//           rounds of the same run. The registry answers ~1k requests/s, so rounds are shorter.

import { Agent, request } from 'undici';
import { RegistryClient } from '../src/registry/client.ts';
import { ExistenceOracle, registryProbe } from '../src/registry/existence-oracle.ts';
import { MANIFEST_ACCEPT } from '../src/registry/media-types.ts';
import { buildImage, pushImage } from '../test/harness/images.ts';
import { startRegistry, type TestRegistry } from '../test/harness/registry.ts';
import {
  type BenchResult,
  type ClosedLoop,
  closedLoop,
  formatRate,
  median,
  percentile,
  sink,
} from './measure.ts';
import { seeded } from './random.ts';

const IMAGES = 200;
const CHECKS = 10_000;
const IN_FLIGHT = 32;
const COLD_CHECKS = 3_000;
const COLD_WARMUP_CHECKS = 500;
const MAX_ROUNDS = 3;
/** Rounds stop early once the measured part has taken this long (at least one round is run). */
const BUDGET_MS = 20_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** Verdicts for the summary: the oracle may cost some throughput and latency, not most of it. */
const MIN_THROUGHPUT_RATIO = 0.5;
const MAX_P99_RATIO = 2;

type Run = ClosedLoop;

/** Runs `check` over `draws` with `IN_FLIGHT` workers; every check must answer "present". */
async function drive(draws: readonly string[], check: (image: string) => Promise<boolean>): Promise<Run> {
  let missing = 0;
  const run = await closedLoop({ concurrency: IN_FLIGHT, count: draws.length }, async (i) => {
    if (!(await check(draws[i]!))) missing++;
  });
  if (missing > 0) throw new Error(`${missing} of ${draws.length} checks did not find a pushed image`);
  return run;
}

async function pushImages(registry: TestRegistry): Promise<string[]> {
  const names = Array.from({ length: IMAGES }, (_, i) => `bench/image-${String(i).padStart(3, '0')}`);
  await closedLoop({ concurrency: 16, count: names.length }, (i) =>
    pushImage(registry, names[i]!, 'v1', buildImage({ files: { 'id.txt': `${i}\n` } })).then(() => {}),
  );
  return names;
}

/** Seeded draws in which no repository repeats within `gap` consecutive draws. */
function spacedDraws(repositories: readonly string[], count: number, gap: number, seed: number): string[] {
  const random = seeded(seed);
  const out: string[] = [];
  const recent = new Set<string>();
  while (out.length < count) {
    const pick = random.pick(repositories);
    if (recent.has(pick)) continue;
    out.push(pick);
    recent.add(pick);
    if (out.length > gap) recent.delete(out[out.length - 1 - gap]!);
  }
  return out;
}

const ms = (value: number): string => `${value.toFixed(2)} ms`;

export async function runExistenceBench(): Promise<BenchResult[]> {
  const setupStart = performance.now();
  const registry = await startRegistry();
  const agent = new Agent({ connections: IN_FLIGHT, keepAliveTimeout: 30_000 });
  const client = new RegistryClient({
    endpoints: {
      [registry.host]: { scheme: 'http', maxConcurrent: IN_FLIGHT, requestTimeoutMs: REQUEST_TIMEOUT_MS },
    },
  });
  try {
    const repositories = await pushImages(registry);
    const setupMs = performance.now() - setupStart;
    const random = seeded(0x5eed);
    const draws = Array.from({ length: CHECKS }, () => random.pick(repositories));
    const asReference = (repo: string): string => `${registry.host}/${repo}:v1`;
    const references = draws.map(asReference);
    const accept = MANIFEST_ACCEPT.join(', ');

    const rawHead = (repo: string): Promise<boolean> =>
      request(`${registry.url}/v2/${repo}/manifests/v1`, {
        method: 'HEAD',
        dispatcher: agent,
        headers: { accept },
        reset: false,
        headersTimeout: REQUEST_TIMEOUT_MS,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      }).then(async (res) => {
        await res.body.dump();
        return res.statusCode === 200;
      });
    const viaOracle =
      (oracle: ExistenceOracle) =>
      async (reference: string): Promise<boolean> => {
        const answer = await oracle.exists(reference, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        sink.value += answer.ageMs;
        return answer.outcome === 'Available';
      };
    const headRequests = (): Promise<number> => registry.count({ method: 'HEAD', uri: '/v2/bench/' });

    // Warm: one oracle, default TTLs, the whole 10,000 checks.
    const warmOracle = new ExistenceOracle({ probe: registryProbe(client) });
    const beforeWarm = await headRequests();
    const warm = await drive(references, viaOracle(warmOracle));
    const warmRequests = (await headRequests()) - beforeWarm;
    const distinct = new Set(draws).size;
    const warmStats = warmOracle.stats();

    // Cold: alternating rounds of the raw HEAD loop and a TTL-0 oracle, after one warm-up of each.
    const coldOracle = (): ExistenceOracle =>
      new ExistenceOracle({ probe: registryProbe(client), positiveTtlMs: 0, negativeTtlMs: 0 });
    const coldDraws = spacedDraws(repositories, COLD_WARMUP_CHECKS + COLD_CHECKS, 4 * IN_FLIGHT, 0xc01d);
    const warmup = coldDraws.slice(0, COLD_WARMUP_CHECKS);
    const measured = coldDraws.slice(COLD_WARMUP_CHECKS);
    const measuredReferences = measured.map(asReference);
    await drive(warmup, rawHead);
    await drive(warmup.map(asReference), viaOracle(coldOracle()));
    const raw: Run[] = [];
    const cold: Run[] = [];
    let coalesced = 0;
    const measuredStart = performance.now();
    const roundRequests = { raw: 0, cold: 0 };
    for (let r = 0; r < MAX_ROUNDS; r++) {
      if (r > 0 && performance.now() - measuredStart > BUDGET_MS) break;
      let before = await headRequests();
      raw.push(await drive(measured, rawHead));
      roundRequests.raw += (await headRequests()) - before;
      const oracle = coldOracle();
      before = await headRequests();
      cold.push(await drive(measuredReferences, viaOracle(oracle)));
      roundRequests.cold += (await headRequests()) - before;
      coalesced += oracle.stats().coalesced;
    }
    const rounds = raw.length;
    const rawRate = median(raw.map((x) => x.perSecond));
    const coldRate = median(cold.map((x) => x.perSecond));
    const rawLatencies = raw.flatMap((x) => x.latenciesMs);
    const coldLatencies = cold.flatMap((x) => x.latenciesMs);
    const [rawP50, rawP99] = [percentile(rawLatencies, 50), percentile(rawLatencies, 99)];
    const [coldP50, coldP99] = [percentile(coldLatencies, 50), percentile(coldLatencies, 99)];
    const throughputRatio = coldRate / rawRate;
    const p99Ratio = coldP99 / rawP99;
    const warmPass = warmRequests <= distinct;
    const coldPass = throughputRatio >= MIN_THROUGHPUT_RATIO && p99Ratio <= MAX_P99_RATIO;

    console.log('## 4. existence checks against a real registry');
    console.log(
      `setup      docker-registry on ${registry.host}, ${IMAGES} images pushed (${(setupMs / 1000).toFixed(1)} s); ${CHECKS} seeded random draws, ${IN_FLIGHT} in flight`,
    );
    console.log(
      `warm       ${formatRate(warm.perSecond)} checks/s, p99 ${ms(percentile(warm.latenciesMs, 99))}; oracle: ${warmStats.misses} misses, ${warmStats.coalesced} coalesced, ${warmStats.hits} hits`,
    );
    console.log(
      `REQUESTS   registry received ${warmRequests} manifest requests for ${CHECKS} checks; distinct images ${distinct} (one TTL window)  ${warmPass ? 'PASS' : 'MISS'}`,
    );
    console.log(
      `cold       ${formatRate(coldRate)} checks/s, p50 ${ms(coldP50)}, p99 ${ms(coldP99)}  (oracle TTL 0 + registryProbe; ${rounds} rounds of ${COLD_CHECKS}, ${coalesced} coalesced, ${roundRequests.cold} registry requests)`,
    );
    console.log(
      `baseline   ${formatRate(rawRate)} HEADs/s, p50 ${ms(rawP50)}, p99 ${ms(rawP99)}  (raw undici HEAD loop, same draws and concurrency; ${roundRequests.raw} registry requests)`,
    );
    console.log(
      `RATIO      throughput cold/raw = ${throughputRatio.toFixed(2)} (target >= ${MIN_THROUGHPUT_RATIO}), p99 cold/raw = ${p99Ratio.toFixed(2)} (target <= ${MAX_P99_RATIO})  ${coldPass ? 'PASS' : 'MISS'}`,
    );
    console.log('');
    return [
      {
        name: `existence, warm: ${CHECKS} checks over ${distinct} images`,
        target: `<= ${distinct} registry requests`,
        measured: `${warmRequests} requests`,
        ratio: `${(warmRequests / CHECKS).toFixed(3)} requests/check`,
        pass: warmPass,
      },
      {
        name: 'existence, cold: oracle vs raw HEAD loop',
        target: `>= ${MIN_THROUGHPUT_RATIO} x throughput, <= ${MAX_P99_RATIO} x p99`,
        measured: `${formatRate(coldRate)} checks/s, p99 ${ms(coldP99)}`,
        ratio: `${throughputRatio.toFixed(2)} x throughput, ${p99Ratio.toFixed(2)} x p99`,
        pass: coldPass,
      },
    ];
  } finally {
    await client.close();
    await agent.close();
    await registry.close();
  }
}
