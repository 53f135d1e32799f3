// A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in the
// text exposition format (version 0.0.4). Label sets are bounded by the callers (results, kinds, codes),
// never by request data, so memory stays flat however many requests are served.
//
// Why not prom-client: about 10x slower per admission recorded and +21 MiB on import, in a webhook
// whose RSS is a benchmark target (docs/decisions.md, "Metrics").

import { readdirSync } from 'node:fs';
import { type ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import pkg from '../../package.json' with { type: 'json' };

type Labels = Readonly<Record<string, string>>;

interface Metric {
  readonly name: string;
  render(out: string[]): void;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(names: readonly string[], values: readonly string[], extra = ''): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  if (n === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(n);
}

abstract class Family<Series> implements Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly series = new Map<string, { values: string[]; data: Series }>();
  abstract readonly type: string;

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  protected abstract fresh(): Series;

  protected at(labels: Labels | undefined): Series {
    // The key is the label values joined by NUL; with one label it is the value itself, so the hot
    // path (one label, a series that exists) allocates nothing.
    const names = this.labelNames;
    const key =
      names.length === 0
        ? ''
        : names.length === 1
          ? (labels?.[names[0]!] ?? '')
          : names.map((n) => labels?.[n] ?? '').join('\u0000');
    const known = this.series.get(key);
    if (known) return known.data;
    const entry = { values: names.map((n) => labels?.[n] ?? ''), data: this.fresh() };
    this.series.set(key, entry);
    return entry.data;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    out.push(`# TYPE ${this.name} ${this.type}`);
    for (const { values, data } of this.series.values()) this.renderSeries(out, values, data);
  }

  protected abstract renderSeries(out: string[], values: readonly string[], data: Series): void;
}

interface ValueSeries {
  value: number;
  read?: () => number;
}

/** One number per series: counters and gauges. */
abstract class ValueFamily extends Family<ValueSeries> {
  protected fresh(): ValueSeries {
    return { value: 0 };
  }
  /** The value is read from `read` at every scrape (counts and sizes kept by another component). */
  collect(read: () => number, labels?: Labels): void {
    this.at(labels).read = read;
  }
  get(labels?: Labels): number {
    const data = this.at(labels);
    return data.read ? data.read() : data.value;
  }
  protected renderSeries(out: string[], values: readonly string[], data: ValueSeries): void {
    let value = data.value;
    if (data.read) {
      try {
        value = data.read();
      } catch {
        value = Number.NaN;
      }
    }
    out.push(`${this.name}${labelText(this.labelNames, values)} ${formatNumber(value)}`);
  }
}

export class Counter extends ValueFamily {
  readonly type = 'counter';
  inc(labels?: Labels, by = 1): void {
    this.at(labels).value += by;
  }
  /** One series, found once: for a hot path that always counts under the same labels. */
  bind(labels?: Labels): { inc(by?: number): void } {
    const data = this.at(labels);
    return {
      inc: (by = 1) => {
        data.value += by;
      },
    };
  }
}

class Gauge extends ValueFamily {
  readonly type = 'gauge';
  set(value: number, labels?: Labels): void {
    this.at(labels).value = value;
  }
  inc(labels?: Labels, by = 1): void {
    this.at(labels).value += by;
  }
  dec(labels?: Labels, by = 1): void {
    this.at(labels).value -= by;
  }
}

interface HistogramSeries {
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Latency buckets in seconds, from 100 µs to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

class Histogram extends Family<HistogramSeries> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  protected fresh(): HistogramSeries {
    return { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
  }

  observe(value: number, labels?: Labels): void {
    const s = this.at(labels);
    s.sum += value;
    s.count++;
    // Non-cumulative per bucket; render() accumulates.
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i++)
      if (value <= buckets[i]!) {
        s.counts[i] = (s.counts[i] ?? 0) + 1;
        break;
      }
  }

  count(labels?: Labels): number {
    return this.at(labels).count;
  }

  protected renderSeries(out: string[], values: readonly string[], s: HistogramSeries): void {
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += s.counts[i] ?? 0;
      const le = `le="${formatNumber(this.buckets[i] ?? 0)}"`;
      out.push(`${this.name}_bucket${labelText(this.labelNames, values, le)} ${cumulative}`);
    }
    out.push(`${this.name}_bucket${labelText(this.labelNames, values, 'le="+Inf"')} ${s.count}`);
    out.push(`${this.name}_sum${labelText(this.labelNames, values)} ${formatNumber(s.sum)}`);
    out.push(`${this.name}_count${labelText(this.labelNames, values)} ${s.count}`);
  }
}

/** pullmap's version (package.json, bundled in at build time). */
const BUILD_VERSION: string = pkg.version;

function openFds(): number {
  // The listing's own descriptor is in it.
  return Math.max(0, readdirSync('/proc/self/fd').length - 1);
}

/**
 * Event-loop delay from perf_hooks' sampler (20 ms resolution, in libuv: no timer of ours runs on the
 * loop it measures). Each scrape reports the window since the previous one, then starts a new window.
 */
const LAG_RESOLUTION_MS = 20;

class EventLoopLag implements Metric {
  readonly name = 'nodejs_eventloop_lag_seconds';
  // One sampler per process, however many registries (tests start several servers in one process).
  static #shared: ELDHistogram | undefined;
  readonly #histogram: ELDHistogram;

  constructor() {
    if (EventLoopLag.#shared === undefined) {
      EventLoopLag.#shared = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
      EventLoopLag.#shared.enable();
    }
    this.#histogram = EventLoopLag.#shared;
  }

  render(out: string[]): void {
    const h = this.#histogram;
    // The sampler records the time between its ticks: the resolution itself is not lag.
    const seconds = (ns: number) =>
      Number.isFinite(ns) && h.count > 0 ? Math.max(0, ns - LAG_RESOLUTION_MS * 1e6) / 1e9 : 0;
    const gauge = (name: string, help: string, value: number) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${formatNumber(value)}`);
    gauge(this.name, 'Mean event-loop delay since the previous scrape, in seconds.', seconds(h.mean));
    gauge(
      'nodejs_eventloop_lag_p99_seconds',
      '99th percentile of the event-loop delay since the previous scrape.',
      seconds(h.percentile(99)),
    );
    gauge(
      'nodejs_eventloop_lag_max_seconds',
      'Longest event-loop delay since the previous scrape.',
      seconds(h.max),
    );
    h.reset();
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** One registry per process part (webhook, cache); `render()` is what `/metrics` serves. */
export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric>();

  #add<M extends Metric>(metric: M): M {
    if (!NAME.test(metric.name)) throw new Error(`metric name ${JSON.stringify(metric.name)} is not valid`);
    if (this.#metrics.has(metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = LATENCY_BUCKETS,
  ): Histogram {
    return this.#add(new Histogram(name, help, labelNames, buckets));
  }

  /**
   * Standard process metrics, read at scrape time: the names prom-client and the Go client use, so
   * stock dashboards and alerts work (CPU, start time, open fds, memory, event-loop lag), plus
   * `pullmap_build_info{version}`.
   */
  processMetrics(startedAtMs: number, now: () => number, version = BUILD_VERSION): void {
    this.gauge('pullmap_build_info', 'Always 1; the version of pullmap serving, as a label.', [
      'version',
      'nodejs',
    ]).set(1, { version, nodejs: process.versions.node });
    this.counter('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.').collect(() => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    });
    this.gauge(
      'process_start_time_seconds',
      'Start time of the process since the Unix epoch, in seconds.',
    ).collect(() => Math.round(performance.timeOrigin) / 1000);
    // Linux only (what the images run); elsewhere the series is absent rather than wrong.
    if (process.platform === 'linux')
      this.gauge('process_open_fds', 'Open file descriptors.').collect(() => openFds());
    this.gauge('process_resident_memory_bytes', 'Resident set size in bytes.').collect(() =>
      process.memoryUsage.rss(),
    );
    this.gauge('nodejs_heap_used_bytes', 'V8 heap in use, in bytes.').collect(
      () => process.memoryUsage().heapUsed,
    );
    this.gauge('process_uptime_seconds', 'Seconds since the process started serving.').collect(
      () => (now() - startedAtMs) / 1000,
    );
    this.#add(new EventLoopLag());
  }

  render(): string {
    const out: string[] = [];
    for (const metric of this.#metrics.values()) metric.render(out);
    return `${out.join('\n')}\n`;
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
