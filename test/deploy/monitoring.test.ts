// The chart's alerts and dashboard (values: test/deploy/helm/values/production.yaml): the rendered
// PrometheusRule passes `promtool check rules`, its alerts fire on the series `promtool test rules`
// feeds them, and every metric a rule or a dashboard panel queries is one pullmap exports (its name is
// in src/). The dashboard ConfigMap carries kube-prometheus-stack's grafana_dashboard label.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { CHART, type Helm, startHelm } from '../harness/helm.ts';
import { execFileAsync, requireCommand, type TempDir, tempDir } from '../harness/process.ts';

type Obj = Record<string, any>;
const ROOT = join(import.meta.dirname, '..', '..');
const NAMESPACE = 'pullmap-system';

let helm: Helm;
let dir: TempDir;
let rendered: Obj[];

before(async () => {
  helm = await startHelm();
  dir = await tempDir('monitoring');
  const text = await helm.ok([
    'template',
    'pullmap',
    CHART,
    '--namespace',
    NAMESPACE,
    '-f',
    join(import.meta.dirname, 'helm', 'values', 'production.yaml'),
  ]);
  rendered = parseAllDocuments(text)
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null);
});

after(async () => {
  await helm?.stop();
  await dir?.remove();
});

/** Every source file of src/, concatenated: where metric names are defined. */
function sourceText(): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }))
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.ts')) out.push(readFileSync(join(d, e.name), 'utf8'));
  };
  walk(join(ROOT, 'src'));
  return out.join('\n');
}

const PROMQL = new Set(
  'sum min max avg count by without on ignoring group_left group_right rate irate increase absent or and unless histogram_quantile vector bool offset label_values topk bottomk'.split(
    ' ',
  ),
);

/** The metric names a PromQL expression reads (label matchers, ranges, grouping and functions removed). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/label_values\(\s*([^,)]+),\s*\w+\s*\)/g, '$1')
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...new Set(bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [])].filter((w) => !PROMQL.has(w));
}

/** Whether pullmap defines `name` (a histogram's _bucket, _sum and _count are its family's). */
function exported(name: string, src: string): boolean {
  const family = name.replace(/_(bucket|sum|count)$/, '');
  return src.includes(`'${name}'`) || (family !== name && src.includes(`'${family}'`));
}

const rule = (): Obj => {
  const found = rendered.find((o) => o.kind === 'PrometheusRule');
  assert.ok(found, 'prometheusRule.enabled renders a PrometheusRule');
  return found;
};

describe('PrometheusRule', () => {
  test('promtool check rules accepts the rendered rules', async () => {
    const promtool = requireCommand('promtool');
    const file = join(dir.path, 'rules.yaml');
    await writeFile(file, stringify(rule().spec));
    const { stdout } = await execFileAsync(promtool, ['check', 'rules', file]);
    assert.match(stdout, /SUCCESS: 7 rules found/);
    assert.equal(rule().metadata.labels.release, 'kube-prometheus-stack', 'prometheusRule.labels');
    const alerts = rule().spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => r.alert));
    assert.deepEqual(alerts, [
      'PullmapWebhookDown',
      'PullmapMapsNotReady',
      'PullmapAdmissionDeadlineExceeded',
      'PullmapProbeFailuresRising',
      'PullmapCacheDown',
      'PullmapCacheServingStale',
      'PullmapCacheStoreNearFull',
    ]);
  });

  test('every metric a rule reads is one pullmap exports (up is Prometheus own)', () => {
    const src = sourceText();
    const used = new Set<string>();
    for (const group of rule().spec.groups)
      for (const r of group.rules) for (const m of metricNames(r.expr)) used.add(m);
    assert.ok(used.has('pullmap_existence_probes_total'), [...used].join(' '));
    const unknown = [...used].filter((m) => m !== 'up' && !exported(m, src));
    assert.deepEqual(unknown, []);
    // The check itself can fail: a made-up name is not exported.
    assert.equal(exported('pullmap_made_up_total', src), false);
  });

  test('promtool test rules: alerts fire on the series that should fire them, and only then', async () => {
    const promtool = requireCommand('promtool');
    const rulesFile = join(dir.path, 'rules.yaml');
    await writeFile(rulesFile, stringify(rule().spec));
    const description = (alert: string): string =>
      rule()
        .spec.groups.flatMap((g: Obj) => g.rules)
        .find((r: Obj) => r.alert === alert).annotations.description;
    const webhook = `job="pullmap-webhook",namespace="${NAMESPACE}"`;
    const cache = `job="pullmap-cache",namespace="${NAMESPACE}"`;
    const tests = {
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            // Scraped for 5 minutes, then down.
            { series: `up{${webhook},pod="w-1"}`, values: '1x5 0x20' },
            // A map turns Invalid at minute 5.
            { series: `pullmap_maps{${webhook},pod="w-1",verdict="Invalid"}`, values: '0x5 1x20' },
            { series: `pullmap_maps{${webhook},pod="w-1",verdict="Conflict"}`, values: '0x25' },
            // mirror.local fails 60% of probes from the start; quay.io never fails.
            {
              series: `pullmap_existence_probes_total{${webhook},pod="w-1",registry="mirror.local",outcome="Unreachable"}`,
              values: '0+6x40',
            },
            {
              series: `pullmap_existence_probes_total{${webhook},pod="w-1",registry="mirror.local",outcome="Available"}`,
              values: '0+4x40',
            },
            {
              series: `pullmap_existence_probes_total{${webhook},pod="w-1",registry="quay.io",outcome="Available"}`,
              values: '0+10x40',
            },
            // The store fills to 95% of its limit.
            { series: `pullmap_cache_store_bytes{${cache},pod="c-1"}`, values: '950x60' },
            { series: `pullmap_cache_store_max_bytes{${cache},pod="c-1"}`, values: '1000x60' },
          ],
          alert_rule_test: [
            { eval_time: '4m', alertname: 'PullmapWebhookDown', exp_alerts: [] },
            {
              eval_time: '15m',
              alertname: 'PullmapWebhookDown',
              exp_alerts: [
                {
                  exp_labels: { severity: 'critical' },
                  exp_annotations: {
                    summary: 'No pullmap webhook replica is being scraped successfully.',
                    description: description('PullmapWebhookDown'),
                  },
                },
              ],
            },
            { eval_time: '10m', alertname: 'PullmapMapsNotReady', exp_alerts: [] },
            {
              eval_time: '20m',
              alertname: 'PullmapMapsNotReady',
              exp_alerts: [
                {
                  exp_labels: { severity: 'warning', verdict: 'Invalid' },
                  exp_annotations: {
                    summary: '1 map object(s) are Invalid.',
                    description: description('PullmapMapsNotReady'),
                  },
                },
              ],
            },
            {
              eval_time: '30m',
              alertname: 'PullmapProbeFailuresRising',
              exp_alerts: [
                {
                  exp_labels: { severity: 'warning', registry: 'mirror.local' },
                  exp_annotations: {
                    summary: '60% of probes of mirror.local fail.',
                    description: description('PullmapProbeFailuresRising'),
                  },
                },
              ],
            },
            { eval_time: '20m', alertname: 'PullmapCacheStoreNearFull', exp_alerts: [] },
            {
              eval_time: '45m',
              alertname: 'PullmapCacheStoreNearFull',
              exp_alerts: [
                {
                  exp_labels: { severity: 'warning', pod: 'c-1' },
                  exp_annotations: {
                    summary: 'The cache store of c-1 is 95% full.',
                    description: description('PullmapCacheStoreNearFull'),
                  },
                },
              ],
            },
          ],
        },
      ],
    };
    const testFile = join(dir.path, 'rules.test.yaml');
    await writeFile(testFile, stringify(tests));
    const result = await execFileAsync(promtool, ['test', 'rules', testFile], { cwd: dir.path }).catch(
      (err: { stdout?: string; stderr?: string }) => {
        assert.fail(`promtool test rules failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
      },
    );
    assert.match(result.stdout, /SUCCESS/);
  });
});

describe('Grafana dashboard', () => {
  test('a ConfigMap labelled grafana_dashboard: "1" holding dashboard JSON whose every query reads exported metrics', () => {
    const map = rendered.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'pullmap-dashboard');
    assert.ok(map, 'grafanaDashboard.enabled renders the ConfigMap');
    assert.equal(map.metadata.labels.grafana_dashboard, '1');
    assert.equal(map.metadata.annotations.grafana_folder, 'pullmap');
    const dashboard = JSON.parse(map.data['pullmap.json']) as Obj;
    assert.equal(dashboard.uid, 'pullmap');
    const exprs: string[] = [];
    const walk = (panels: Obj[]) => {
      for (const p of panels) {
        if (p.panels) walk(p.panels);
        for (const t of p.targets ?? []) exprs.push(t.expr);
      }
    };
    walk(dashboard.panels);
    for (const v of dashboard.templating.list) if (v.type === 'query') exprs.push(v.query.query);
    assert.ok(exprs.length >= 20, `${exprs.length} queries`);
    const src = sourceText();
    const used = new Set(exprs.flatMap(metricNames));
    for (const name of [
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_p99_seconds',
      'pullmap_cache_request_duration_seconds_bucket',
    ])
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    assert.deepEqual(
      [...used].filter((m) => m !== 'up' && !exported(m, src)),
      [],
    );
  });

  test('off by default: no PrometheusRule, no dashboard', async () => {
    const text = await helm.ok(['template', 'pullmap', CHART, '--namespace', NAMESPACE]);
    assert.doesNotMatch(text, /kind: PrometheusRule/);
    assert.doesNotMatch(text, /grafana_dashboard/);
  });
});
