// A corpus of distinct, valid image references shaped like what clusters run: familiar Docker Hub
// names, cloud and private registries (some with ports or IP hosts), deep paths, tags and digests.

import { type Random, seeded } from './random.ts';

const OFFICIAL = [
  'nginx',
  'redis',
  'postgres',
  'alpine',
  'busybox',
  'ubuntu',
  'debian',
  'node',
  'python',
  'golang',
  'memcached',
  'mysql',
  'mariadb',
  'mongo',
  'rabbitmq',
  'traefik',
  'haproxy',
  'httpd',
  'consul',
  'vault',
  'elasticsearch',
  'eclipse-temurin',
  'openjdk',
  'php',
  'ruby',
  'registry',
  'caddy',
  'influxdb',
  'telegraf',
  'zookeeper',
];

const HUB_NAMESPACES = ['bitnami', 'grafana', 'prom', 'jetstack', 'rancher', 'library', 'curlimages'];

const REGISTRIES = [
  'gcr.io',
  'quay.io',
  'ghcr.io',
  'registry.k8s.io',
  'public.ecr.aws',
  'mcr.microsoft.com',
  'registry.gitlab.com',
  'docker.io',
  'index.docker.io',
  '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
  'acme.azurecr.io',
  'europe-west1-docker.pkg.dev',
  'harbor.corp.example:8443',
  'registry.local:5000',
  'localhost:5000',
  'localhost',
  '10.0.0.12:5000',
  '[::1]:5000',
  '[fd00:10::2]:30500',
];

const WORDS = [
  'acme',
  'platform',
  'payments',
  'search',
  'ingest',
  'billing',
  'api',
  'web',
  'worker',
  'operator',
  'controller',
  'sidecar',
  'agent',
  'exporter',
  'proxy',
  'gateway',
  'auth',
  'kube-state-metrics',
  'cert_manager',
  'data.pipeline',
  'ml__serving',
  'team-7',
  'infra',
  'tools',
];

const TAG_SUFFIXES = ['', '', '', '-alpine', '-slim', '-bookworm', '-alpine3.20', '-debian-12-r4', '-rc.1'];

function version(r: Random): string {
  const v = `${r.int(30)}.${r.int(40)}.${r.int(20)}`;
  return (r.next() < 0.3 ? 'v' : '') + v + r.pick(TAG_SUFFIXES);
}

function tag(r: Random): string {
  const roll = r.next();
  if (roll < 0.7) return version(r);
  if (roll < 0.8) return `sha-${r.hex(7)}`;
  if (roll < 0.9) return `20${20 + r.int(6)}.${1 + r.int(12)}.${1 + r.int(28)}`;
  return r.pick(['latest', 'stable', 'edge', 'main', 'nightly']);
}

function path(r: Random, components: number): string {
  const parts: string[] = [];
  for (let i = 0; i < components; i++) parts.push(r.pick(WORDS) + (r.next() < 0.4 ? `-${r.int(50)}` : ''));
  return parts.join('/');
}

/** Tag, digest, both, or neither, in proportions close to what a large cluster shows. */
function suffix(r: Random): string {
  const roll = r.next();
  if (roll < 0.62) return `:${tag(r)}`;
  if (roll < 0.8) return `@sha256:${r.hex(64)}`;
  if (roll < 0.88) return `:${tag(r)}@sha256:${r.hex(64)}`;
  return '';
}

function reference(r: Random): string {
  const roll = r.next();
  if (roll < 0.25) return r.pick(OFFICIAL) + suffix(r);
  if (roll < 0.4) return `${r.pick(HUB_NAMESPACES)}/${r.pick(WORDS)}${suffix(r)}`;
  return `${r.pick(REGISTRIES)}/${path(r, 1 + r.int(4))}${suffix(r)}`;
}

/** `size` distinct references; the same list for the same seed. */
export function referenceCorpus(size: number, seed = 20241121): string[] {
  const r = seeded(seed);
  const out = new Set<string>();
  while (out.size < size) out.add(reference(r));
  return [...out];
}
