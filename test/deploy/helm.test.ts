// The Helm chart (deploy/helm/pullmap): `helm lint --strict`; `helm template` with a few value sets
// against golden files; what it renders is accepted by pullmap itself (serve and cache flags, the cache
// config, the ClusterImageMaps); and `helm install` / `upgrade` / `uninstall` against a real
// kube-apiserver (no kubelet: the test asserts on the objects the apiserver holds, and runs the rendered
// webhook command itself, with the chart's ServiceAccount, to prove the RBAC and the certificate).
//
// Golden files: test/deploy/helm/golden/<case>.yaml, the `helm template` output for
// test/deploy/helm/values/<case>.yaml with the generated certificate data replaced by "<generated>".
// After an intended chart change, rewrite them and review the diff:
//   UPDATE_GOLDEN=1 node --test test/deploy/helm.test.ts
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { parseCacheConfig } from '../../src/cache/config.ts';
import { mapCrds } from '../../src/core/api/crd.ts';
import { CHART, type Helm, startHelm } from '../harness/helm.ts';
import { type Kube, startKube } from '../harness/kube.ts';
import { type Daemon, execFileAsync, freePort, startDaemon, tempDir } from '../harness/process.ts';
import { PULLMAP } from '../harness/pullmap.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const HERE = join(import.meta.dirname, 'helm');
const NAMESPACE = 'pullmap-system';
// Fixed, so Capabilities.KubeVersion (and the golden files) do not follow the helm binary's client-go.
const KUBE_VERSION = '1.35.4';

type Obj = Record<string, any>;

interface Case {
  name: string;
  /** Extra `helm template` flags. */
  flags?: readonly string[];
}

const CASES: readonly Case[] = [
  { name: 'defaults' },
  { name: 'cache-daemonset' },
  { name: 'cache-pvc' },
  { name: 'cache-s3' },
  { name: 'cert-manager' },
  { name: 'maps' },
  { name: 'host-network' },
  { name: 'service-monitor', flags: ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor'] },
  { name: 'production' },
  { name: 'single-replica' },
];

const valuesFile = (name: string): string[] => {
  const file = join(HERE, 'values', `${name}.yaml`);
  return existsSync(file) ? ['-f', file] : [];
};

let helm: Helm;

before(async () => {
  helm = await startHelm();
});

after(async () => {
  await helm?.stop();
});

async function template(name: string, extra: readonly string[] = []): Promise<string> {
  const c = CASES.find((x) => x.name === name);
  return helm.ok([
    'template',
    'pullmap',
    CHART,
    '--namespace',
    NAMESPACE,
    '--kube-version',
    KUBE_VERSION,
    ...valuesFile(name),
    ...(c?.flags ?? []),
    ...extra,
  ]);
}

const objects = (text: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null);

const find = (list: Obj[], kind: string, name?: string): Obj | undefined =>
  list.find((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));

/** Generated keys and certificates differ on every render; the golden files hold a placeholder. */
const normalise = (text: string): string =>
  text.replace(/^(\s*(?:tls\.crt|tls\.key|ca\.crt|caBundle): )[A-Za-z0-9+/=]{64,}$/gm, '$1<generated>');

const pem = (base64: string): string => Buffer.from(base64, 'base64').toString('utf8');

/** Asserts that `caBase64` signed the certificate in `certBase64` for the webhook Service's names. */
function assertServingCert(caBase64: string, certBase64: string, service: string): void {
  const ca = new X509Certificate(pem(caBase64));
  const cert = new X509Certificate(pem(certBase64));
  assert.ok(ca.ca, 'the caBundle is a CA certificate');
  assert.ok(cert.verify(ca.publicKey), 'the serving certificate is signed by the caBundle');
  assert.ok(cert.checkIssued(ca), 'the serving certificate names the CA as issuer');
  for (const name of [service, `${service}.${NAMESPACE}.svc`, `${service}.${NAMESPACE}.svc.cluster.local`])
    assert.equal(cert.checkHost(name), name, `the certificate is valid for ${name}`);
  assert.ok(new Date(cert.validTo).getTime() > Date.now() + 300 * 24 * 3600_000, 'valid for years');
}

test("Chart.yaml's version and appVersion are package.json's version (the image tag defaults to it)", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const chart = parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Obj;
  assert.equal(chart.version, pkg.version);
  assert.equal(chart.appVersion, pkg.version);
});

describe('helm lint and template', () => {
  test('helm lint --strict passes with the defaults and every value set', async () => {
    for (const c of CASES) {
      const result = await helm.run(['lint', '--strict', CHART, ...valuesFile(c.name)]);
      assert.equal(result.code, 0, `${c.name}:\n${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  for (const c of CASES) {
    test(`helm template matches golden/${c.name}.yaml`, async () => {
      const rendered = normalise(await template(c.name));
      const file = join(HERE, 'golden', `${c.name}.yaml`);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, rendered);
      assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to write it`);
      assert.equal(
        rendered,
        readFileSync(file, 'utf8'),
        `golden/${c.name}.yaml differs (UPDATE_GOLDEN=1 rewrites it)`,
      );
    });
  }

  test("the cache runs the image's entrypoint with cache.nodeFlags added, from the chart and deploy/cache*", async () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const entrypoint = JSON.parse(/^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1] ?? '[]') as string[];
    const flags = (
      parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { cache: { nodeFlags: string[] } }
    ).cache.nodeFlags;
    assert.ok(entrypoint.length >= 2 && flags.length > 0, 'an entrypoint, and flags to add to it');
    const expected = [...entrypoint.slice(0, -1), ...flags, entrypoint.at(-1)];
    const cacheContainer = (list: Obj[]): Obj | undefined =>
      list
        .filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment' || o.kind === 'StatefulSet')
        .flatMap((o) => (o.spec?.template?.spec?.containers ?? []) as Obj[])
        .find((c) => c.name === 'cache');
    for (const name of ['cache-daemonset', 'cache-pvc', 'cache-s3']) {
      assert.deepEqual(cacheContainer(objects(await template(name)))?.command, expected, name);
      const plain = cacheContainer(objects(await template(name, ['--set-json', 'cache.nodeFlags=[]'])));
      assert.ok(
        plain !== undefined && plain.command === undefined,
        `${name}: no flags, the image's entrypoint`,
      );
    }
    for (const file of ['deploy/cache/daemonset.yaml', 'deploy/cache-pvc/cache.yaml'])
      assert.deepEqual(
        cacheContainer(objects(readFileSync(join(ROOT, file), 'utf8')))?.command,
        expected,
        file,
      );
  });

  test('the defaults mirror deploy/webhook: failure policy, reinvocation, side effects, exclusions', async () => {
    const list = objects(await template('defaults'));
    const mutating = find(list, 'MutatingWebhookConfiguration', 'pullmap')!;
    const plain = parseYaml(
      readFileSync(join(ROOT, 'deploy', 'webhook', 'mutating-webhook.yaml'), 'utf8'),
    ) as Obj;
    const { clientConfig: _c, ...chartHook } = mutating.webhooks[0];
    const { clientConfig: _p, ...plainHook } = plain.webhooks[0];
    assert.deepEqual(chartHook, plainHook);
    // The same permissions as the plain manifests (pull secret copies included).
    const plainRbac = parseAllDocuments(readFileSync(join(ROOT, 'deploy', 'webhook', 'rbac.yaml'), 'utf8'))
      .map((d) => d.toJSON() as Obj)
      .filter(Boolean);
    assert.deepEqual(find(list, 'ClusterRole', 'pullmap')!.rules, find(plainRbac, 'ClusterRole')!.rules);
    const validating = find(list, 'ValidatingWebhookConfiguration', 'pullmap-maps')!;
    assert.equal(validating.webhooks[0].failurePolicy, 'Ignore');
    assert.equal(validating.webhooks[0].clientConfig.service.path, '/validate-maps');
    // No Prometheus Operator API offered to helm template: no ServiceMonitor.
    assert.equal(find(list, 'ServiceMonitor'), undefined);
    assert.equal(find(list, 'DaemonSet'), undefined, 'the cache is off by default');
    const deployment = find(list, 'Deployment', 'pullmap-webhook')!;
    const pod = deployment.spec.template.spec;
    assert.equal(pod.containers[0].image, 'ghcr.io/pullmap/pullmap:0.1.0');
    assert.equal(pod.securityContext.runAsUser, 65532);
    assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.equal(deployment.spec.template.metadata.labels['pullmap.dev/ignore'], 'true');
  });

  test('the self-signed serving certificate verifies against both caBundles', async () => {
    const list = objects(await template('defaults'));
    const secret = find(list, 'Secret', 'pullmap-webhook-tls')!;
    assert.equal(secret.type, 'kubernetes.io/tls');
    assertServingCert(secret.data['ca.crt'], secret.data['tls.crt'], 'pullmap-webhook');
    for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'])
      assert.equal(find(list, kind)!.webhooks[0].clientConfig.caBundle, secret.data['ca.crt'], kind);
    // The key belongs to the certificate.
    const { createPrivateKey, createPublicKey } = await import('node:crypto');
    const key = createPrivateKey(pem(secret.data['tls.key']));
    const cert = new X509Certificate(pem(secret.data['tls.crt']));
    assert.deepEqual(
      createPublicKey(key).export({ format: 'der', type: 'spki' }),
      cert.publicKey.export({ format: 'der', type: 'spki' }),
    );
  });

  test('cert-manager: no generated Secret, the CA injector annotation on both webhook configurations', async () => {
    const list = objects(await template('cert-manager'));
    assert.equal(find(list, 'Secret'), undefined);
    const cert = find(list, 'Certificate', 'pullmap-webhook')!;
    assert.equal(cert.spec.secretName, 'pullmap-webhook-tls');
    assert.ok(cert.spec.dnsNames.includes(`pullmap-webhook.${NAMESPACE}.svc`));
    for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
      const config = find(list, kind)!;
      assert.equal(
        config.metadata.annotations['cert-manager.io/inject-ca-from'],
        `${NAMESPACE}/pullmap-webhook`,
      );
      assert.equal(config.webhooks[0].clientConfig.caBundle, undefined, `${kind} has no caBundle of its own`);
    }
    assert.equal(find(list, 'MutatingWebhookConfiguration')!.webhooks[0].failurePolicy, 'Fail');
    const args: string[] = find(list, 'Deployment')!.spec.template.spec.containers[0].args;
    assert.ok(args.includes('--failure-policy=Fail'), 'pullmap itself refuses pods on its failures too');
  });

  test('host network: webhook and cache on the node loopback, the webhooks called by URL, the certificate for that IP', async () => {
    const list = objects(await template('host-network'));
    const pod = find(list, 'Deployment', 'pullmap-webhook')!.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    const container = pod.containers[0];
    assert.ok(container.args.includes('--listen=127.0.0.1:18443'), container.args.join(' '));
    assert.equal(container.ports[0].containerPort, 18443);
    // The kubelet would probe the pod IP (the node's address) unless the probe names the listen address.
    // Probes go to the health listener (plain HTTP), which a flood of the webhook port cannot starve.
    assert.ok(container.args.includes('--health-listen=127.0.0.1:8081'), container.args.join(' '));
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      assert.equal(probe.httpGet.host, '127.0.0.1');
      assert.equal(probe.httpGet.scheme, 'HTTP');
      assert.equal(probe.httpGet.port, 'health');
    }
    assert.deepEqual(
      container.env.filter((e: Obj) => e.name.startsWith('KUBERNETES_SERVICE_')),
      [
        { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
        { name: 'KUBERNETES_SERVICE_PORT', value: '16443' },
      ],
      'extraEnv points the in-cluster client at the apiserver',
    );
    assert.equal(find(list, 'PodDisruptionBudget'), undefined);
    const mutating = find(list, 'MutatingWebhookConfiguration')!.webhooks[0].clientConfig;
    const validating = find(list, 'ValidatingWebhookConfiguration')!.webhooks[0].clientConfig;
    assert.deepEqual(Object.keys(mutating).sort(), ['caBundle', 'url']);
    assert.equal(mutating.url, 'https://127.0.0.1:18443/mutate-pods');
    assert.equal(validating.url, 'https://127.0.0.1:18443/validate-maps');
    const secret = find(list, 'Secret', 'pullmap-webhook-tls')!;
    assertServingCert(mutating.caBundle, secret.data['tls.crt'], 'pullmap-webhook');
    const cert = new X509Certificate(pem(secret.data['tls.crt']));
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1', 'tls.ipAddresses are in the certificate');
    assert.equal(cert.checkIP('10.0.0.1'), undefined);
    // Without the values the defaults keep the Service and no IP names.
    const defaults = objects(await template('defaults'));
    const plainCert = new X509Certificate(pem(find(defaults, 'Secret')!.data['tls.crt']));
    assert.equal(plainCert.checkIP('127.0.0.1'), undefined);
    const defaultPod = find(defaults, 'Deployment')!.spec.template.spec;
    assert.equal(defaultPod.hostNetwork, undefined);
    assert.equal(defaultPod.containers[0].readinessProbe.httpGet.host, undefined);
    assert.ok(defaultPod.containers[0].args.includes('--listen=0.0.0.0:8443'));
    const cacheDs = find(list, 'DaemonSet', 'pullmap-cache')!.spec.template.spec;
    assert.equal(cacheDs.hostNetwork, true);
    assert.ok(cacheDs.containers[0].args.includes('--listen=127.0.0.1:17439'));
    assert.equal(
      cacheDs.volumes.find((v: Obj) => v.name === 'store').hostPath.path,
      '/var/lib/pullmap-test/cache',
    );
  });

  test('an existing Secret: no generated certificate, the given caBundle', async () => {
    const caBundle = Buffer.from('-----BEGIN CERTIFICATE-----\n...\n').toString('base64');
    const list = objects(
      await template('defaults', ['--set', 'tls.existingSecret=my-tls', '--set', `tls.caBundle=${caBundle}`]),
    );
    assert.equal(find(list, 'Secret'), undefined);
    assert.equal(find(list, 'MutatingWebhookConfiguration')!.webhooks[0].clientConfig.caBundle, caBundle);
    const volumes = find(list, 'Deployment')!.spec.template.spec.volumes;
    assert.deepEqual(volumes[0], { name: 'tls', secret: { secretName: 'my-tls' } });
  });

  test('values that do not fit are refused with the value named', async () => {
    const refused: [string[], RegExp][] = [
      [['--set', 'cache.mode=hostpath'], /cache\/mode.*daemonset.*pvc.*s3/],
      [
        ['--set', 'cache.enabled=true', '--set', 'cache.mode=s3'],
        /cache\.mode s3 needs cache\.config\.storage\.s3\.bucket/,
      ],
      [['--set', 'webhook.failurePolicy=Never'], /webhook\/failurePolicy/],
      [['--set', 'logLevel=verbose'], /logLevel/],
      [['--set', 'webhook.deadline=5s'], /webhook\.deadline \(5s\) must be below webhook\.timeoutSeconds/],
      [
        ['--set', 'certManager.enabled=true', '--set', 'tls.existingSecret=x'],
        /certManager\.enabled and tls\.existingSecret/,
      ],
      [['--set', 'webhook.leaderElection=false'], /webhook\.leaderElection=false needs webhook\.replicas=1/],
      [['--set', 'webhok.replicas=1'], /webhok/],
      [['--set', 'tls.existingSecret=my-tls'], /tls\.existingSecret needs tls\.caBundle/],
      [
        ['--set', 'webhook.url=https://10.1.2.3:9443'],
        /webhook\.url names 10\.1\.2\.3, which the self-signed certificate does not: add it to tls\.ipAddresses/,
      ],
      [['--set', 'webhook.url=https://127.0.0.1:9443/mutate'], /webhook\/url/],
      [
        ['--set', 'webhook.pdb.minAvailable=2'],
        /webhook\.pdb\.minAvailable \(2\) must be below webhook\.replicas \(2\)/,
      ],
      [['--set', 'pullSecretCopy.enabled=maybe'], /pullSecretCopy/],
      [
        ['--set', 'webhook.hostNetwork=true', '--set', 'webhook.listenHost=127.0.0.1'],
        /webhook\.listenHost=127\.0\.0\.1 with hostNetwork .* set webhook\.url/,
      ],
    ];
    for (const [flags, message] of refused) {
      const result = await helm.run(['template', 'pullmap', CHART, ...flags]);
      assert.notEqual(result.code, 0, flags.join(' '));
      assert.match(result.stderr, message, flags.join(' '));
    }
  });
});

describe('production values', () => {
  test('PDB: none for a single replica (minAvailable 1 would block every drain), minAvailable 1 for several, maxUnavailable when set', async () => {
    assert.equal(find(objects(await template('single-replica')), 'PodDisruptionBudget'), undefined);
    const several = find(objects(await template('production')), 'PodDisruptionBudget')!;
    assert.equal(several.spec.minAvailable, 1);
    assert.equal(several.spec.maxUnavailable, undefined);
    const set = objects(await template('single-replica', ['--set', 'webhook.pdb.maxUnavailable=1']));
    assert.deepEqual(find(set, 'PodDisruptionBudget')!.spec.maxUnavailable, 1);
    const off = objects(await template('defaults', ['--set', 'webhook.pdb.enabled=false']));
    assert.equal(find(off, 'PodDisruptionBudget'), undefined);
  });

  test('CRDs from templates/: the objects the schema source generates, with the chart labels and resource-policy keep', async () => {
    const list = objects(await template('defaults'));
    const crds = list.filter((o) => o.kind === 'CustomResourceDefinition');
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), [
      'clusterimagemaps.pullmap.dev',
      'imagemaps.pullmap.dev',
    ]);
    for (const { crd } of mapCrds()) {
      const name = (crd.metadata as Obj).name;
      const rendered = crds.find((c) => c.metadata.name === name)!;
      assert.deepEqual(rendered.spec, crd.spec, `${name}: the generated spec`);
      assert.equal(rendered.metadata.annotations['helm.sh/resource-policy'], 'keep');
      assert.equal(rendered.metadata.labels['app.kubernetes.io/part-of'], 'pullmap');
      assert.equal(rendered.metadata.labels['app.kubernetes.io/managed-by'], 'Helm');
    }
    const notKept = objects(await template('single-replica')).filter(
      (o) => o.kind === 'CustomResourceDefinition',
    );
    assert.equal(notKept.length, 2);
    for (const crd of notKept) assert.equal(crd.metadata.annotations, undefined, 'crds.keep=false');
    const none = objects(await template('defaults', ['--set', 'crds.enabled=false']));
    assert.equal(none.filter((o) => o.kind === 'CustomResourceDefinition').length, 0);
  });

  test('pullSecretCopy.enabled=false: no rule touches Secrets, pullmap is told not to copy; the default grants what copying needs', async () => {
    const grantsSecrets = (list: Obj[]) =>
      list
        .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')
        .flatMap((r) => r.rules as Obj[])
        .filter((rule) => rule.resources.includes('secrets') || rule.resources.includes('*'));
    const off = objects(await template('production'));
    assert.deepEqual(grantsSecrets(off), []);
    const args: string[] = find(off, 'Deployment', 'pullmap-webhook')!.spec.template.spec.containers[0].args;
    assert.ok(args.includes('--no-pull-secret-copy'), args.join(' '));
    const on = objects(await template('defaults'));
    assert.deepEqual(grantsSecrets(on), [
      {
        apiGroups: [''],
        resources: ['secrets'],
        verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
      },
    ]);
    const defaultArgs: string[] = find(on, 'Deployment', 'pullmap-webhook')!.spec.template.spec.containers[0]
      .args;
    assert.equal(defaultArgs.includes('--no-pull-secret-copy'), false);
    // Copying off but fill allowed to read the Secrets maps name: get by name, nothing else.
    const readOnly = objects(await template('production', ['--set', 'fill.readSecrets=true']));
    assert.deepEqual(grantsSecrets(readOnly), [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]);
  });

  test('serviceAccount.annotations (workload identity) on the webhook ServiceAccount', async () => {
    const sa = find(objects(await template('production')), 'ServiceAccount', 'pullmap')!;
    assert.equal(
      sa.metadata.annotations['eks.amazonaws.com/role-arn'],
      'arn:aws:iam::123456789012:role/pullmap',
    );
    assert.equal(
      find(objects(await template('defaults')), 'ServiceAccount')!.metadata.annotations,
      undefined,
    );
  });

  test('networkPolicy.enabled: the serving ports only, from the listed sources, egress when rules are given', async () => {
    const list = objects(await template('production'));
    const webhook = find(list, 'NetworkPolicy', 'pullmap-webhook')!;
    assert.deepEqual(webhook.spec.podSelector.matchLabels, {
      'app.kubernetes.io/name': 'pullmap',
      'app.kubernetes.io/instance': 'pullmap',
      'app.kubernetes.io/component': 'webhook',
    });
    assert.deepEqual(webhook.spec.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(webhook.spec.ingress, [
      { ports: [{ port: 8443, protocol: 'TCP' }], from: [{ ipBlock: { cidr: '10.0.0.0/16' } }] },
      // The kubelet's probes reach the health listener from the node, whatever the sources.
      { ports: [{ port: 8081, protocol: 'TCP' }] },
    ]);
    assert.equal(webhook.spec.egress.length, 2);
    const cache = find(list, 'NetworkPolicy', 'pullmap-cache')!;
    assert.equal(cache.spec.podSelector.matchLabels['app.kubernetes.io/component'], 'cache');
    assert.deepEqual(cache.spec.ingress, [{ ports: [{ port: 7439, protocol: 'TCP' }] }], 'any source');
    // The pods' labels are what the policies select.
    const webhookPod = find(list, 'Deployment', 'pullmap-webhook')!.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(webhook.spec.podSelector.matchLabels)) assert.equal(webhookPod[k], v);
    const cachePod = find(list, 'DaemonSet', 'pullmap-cache')!.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(cache.spec.podSelector.matchLabels)) assert.equal(cachePod[k], v);
    const ingressOnly = objects(await template('defaults', ['--set', 'networkPolicy.enabled=true']));
    assert.deepEqual(find(ingressOnly, 'NetworkPolicy')!.spec.policyTypes, ['Ingress']);
    assert.equal(find(objects(await template('defaults')), 'NetworkPolicy'), undefined);
  });
});

describe('what the chart renders, pullmap accepts', () => {
  test('the rendered cache configs parse, and the DaemonSet publishes on the node loopback only', async () => {
    for (const name of ['cache-daemonset', 'cache-pvc', 'cache-s3', 'service-monitor']) {
      const list = objects(await template(name));
      const config = find(list, 'ConfigMap', 'pullmap-cache-config')!;
      const parsed = parseCacheConfig(config.data['cache.yaml'], `${name}: cache.yaml`);
      assert.ok(parsed.ok, `${name}: ${parsed.ok ? '' : parsed.errors.join('\n')}`);
      assert.equal(parsed.config.storage.dir, '/var/lib/pullmap/cache');
      assert.deepEqual(parsed.config.listen, { host: '0.0.0.0', port: 7439 });
    }
    const ds = find(objects(await template('cache-daemonset')), 'DaemonSet', 'pullmap-cache')!;
    const pod = ds.spec.template.spec;
    assert.deepEqual(pod.containers[0].ports[0], {
      name: 'registry',
      containerPort: 7439,
      hostPort: 7439,
      hostIP: '127.0.0.1',
      protocol: 'TCP',
    });
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.ok(
      pod.volumes.some((v: Obj) => v.name === 'secret-hub' && v.secret.secretName === 'dockerhub-pull'),
      'the credentials Secret is mounted',
    );
    // hostNetwork: the cache listens on the node's loopback itself; no hostPort, no Service to reach it.
    const hostNet = objects(await template('cache-daemonset', ['--set', 'cache.daemonset.hostNetwork=true']));
    const hostNetPod = find(hostNet, 'DaemonSet')!.spec.template.spec;
    assert.equal(hostNetPod.hostNetwork, true);
    assert.equal(hostNetPod.containers[0].ports[0].hostPort, undefined);
    assert.ok(hostNetPod.containers[0].args.includes('--listen=127.0.0.1:7439'));
    const hostNetConfig = parseCacheConfig(find(hostNet, 'ConfigMap')!.data['cache.yaml'], 'hostNetwork');
    assert.ok(hostNetConfig.ok && hostNetConfig.config.listen.host === '127.0.0.1');
    assert.equal(find(hostNet, 'Service', 'pullmap-cache'), undefined);
    const pvc = objects(await template('cache-pvc'));
    assert.equal(find(pvc, 'PersistentVolumeClaim')!.spec.resources.requests.storage, '60Gi');
    assert.equal(find(pvc, 'Deployment', 'pullmap-cache')!.metadata.namespace, 'pullmap-cache');
    assert.equal(find(pvc, 'Service', 'pullmap-cache')!.spec.ports[0].nodePort, 30439);
  });

  test('s3 mode: replicas rolling over one bucket, a bounded spool, credentials and identity, the proxy', async () => {
    const list = objects(await template('cache-s3'));
    assert.equal(find(list, 'PersistentVolumeClaim'), undefined, 'no volume claim: the bucket is the store');
    const deployment = find(list, 'Deployment', 'pullmap-cache')!;
    assert.equal(deployment.spec.replicas, 3);
    assert.deepEqual(deployment.spec.strategy, {
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    const pod = deployment.spec.template.spec;
    assert.deepEqual(
      pod.volumes.find((v: Obj) => v.name === 'store'),
      {
        name: 'store',
        emptyDir: { sizeLimit: '4Gi' },
      },
    );
    assert.equal(pod.serviceAccountName, 'pullmap-cache');
    assert.equal(pod.automountServiceAccountToken, false);
    const container = pod.containers[0];
    assert.deepEqual(container.envFrom, [{ secretRef: { name: 's3-credentials' } }]);
    const env = Object.fromEntries(container.env.map((e: Obj) => [e.name, e.value]));
    assert.deepEqual(env, {
      HTTPS_PROXY: 'http://proxy.corp.example:3128',
      HTTP_PROXY: 'http://proxy.corp.example:3128',
      NO_PROXY: '10.0.0.0/8,.svc,.cluster.local,s3.internal',
      AWS_REGION: 'eu-west-1',
    });
    const account = find(list, 'ServiceAccount', 'pullmap-cache')!;
    assert.equal(
      account.metadata.annotations['eks.amazonaws.com/role-arn'],
      'arn:aws:iam::123456789012:role/pullmap-cache',
    );
    const config = parseCacheConfig(
      find(list, 'ConfigMap', 'pullmap-cache-config')!.data['cache.yaml'],
      's3',
    );
    assert.ok(config.ok && config.config.storage.s3?.bucket === 'pullmap-cache');
    assert.equal(find(list, 'Service', 'pullmap-cache')!.spec.type, 'NodePort');
    // The webhook's existence probes go through the same proxy.
    const webhookEnv = find(list, 'Deployment', 'pullmap-webhook')!.spec.template.spec.containers[0].env;
    assert.ok(
      webhookEnv.some((e: Obj) => e.name === 'HTTPS_PROXY' && e.value === 'http://proxy.corp.example:3128'),
    );
    // Without proxy values, no proxy variables at all.
    const plain = find(objects(await template('cache-pvc')), 'Deployment', 'pullmap-cache')!;
    assert.equal(plain.spec.template.spec.containers[0].env, undefined);
  });

  test('pullmap cache starts with the rendered args and config (store and port moved to the test)', async () => {
    const dir = await tempDir('helm-cache');
    try {
      const list = objects(await template('cache-daemonset'));
      const config = parseYaml(find(list, 'ConfigMap')!.data['cache.yaml']) as Obj;
      config.storage.dir = join(dir.path, 'store');
      // The credentials file the Secret would provide.
      const auth = join(dir.path, 'hub.json');
      await writeFile(
        auth,
        JSON.stringify({ auths: { 'docker.io': { auth: Buffer.from('u:p').toString('base64') } } }),
      );
      config.upstreams[0].dockerConfig = auth;
      await writeFile(join(dir.path, 'cache.yaml'), stringify(config));
      const args: string[] = find(list, 'DaemonSet')!.spec.template.spec.containers[0].args;
      const port = await freePort();
      const localArgs = args.map((a) =>
        a.startsWith('--config=')
          ? `--config=${join(dir.path, 'cache.yaml')}`
          : a.startsWith('--listen=')
            ? `--listen=127.0.0.1:${port}`
            : a,
      );
      assert.deepEqual(
        localArgs.map((a) => a.split('=')[0]),
        ['cache', '--config', '--listen'],
      );
      const daemon = await startDaemon({
        name: 'pullmap cache',
        command: process.execPath,
        args: [PULLMAP, ...localArgs],
        ready: async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      });
      await daemon.stop();
    } finally {
      await dir.remove();
    }
  });

  test('pullmap check accepts the ClusterImageMaps rendered from values', async () => {
    const dir = await tempDir('helm-maps');
    try {
      const maps = objects(await template('maps')).filter((o) => o.kind === 'ClusterImageMap');
      assert.deepEqual(maps.map((m) => m.metadata.name).sort(), ['bootcamp', 'mirror']);
      const file = join(dir.path, 'maps.yaml');
      await writeFile(file, maps.map((m) => stringify(m)).join('---\n'));
      const { stdout } = await execFileAsync(process.execPath, [PULLMAP, 'check', '--config', file]);
      assert.match(stdout, /mirror/);
    } finally {
      await dir.remove();
    }
  });
});

/** GET over HTTPS trusting `caPem`, checking the certificate against `servername`. */
function httpsStatus(url: string, caPem: string, servername: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: caPem, servername, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

// The apiserver calls a Service-based webhook at the Service's ClusterIP, which nothing serves here (no
// kube-proxy) and which is not on loopback: creating the chart's maps would send SYNs off the machine.
// The installs point both webhooks at a closed loopback port instead (refused at once; failurePolicy
// Ignore admits), which also installs the url variant against a real apiserver.
const NO_CLUSTER_IP = ['--set', 'webhook.url=https://127.0.0.1:1', '--set', 'tls.ipAddresses={127.0.0.1}'];

describe('helm install, upgrade and uninstall against a real kube-apiserver', () => {
  let kube: Kube;
  const get = async (args: string[]): Promise<Obj> =>
    JSON.parse(await kube.kubectl(['get', ...args, '-o', 'json']));
  const exists = async (args: string[]): Promise<boolean> => {
    try {
      await kube.kubectl(['get', ...args, '-o', 'name']);
      return true;
    } catch (err) {
      if (/NotFound|not found/.test(String(err))) return false;
      throw err;
    }
  };
  const helmKube = (args: string[]): Promise<string> =>
    helm.ok([...args, '--namespace', NAMESPACE], { kubeconfig: kube.kubeconfigPath });

  before(async () => {
    kube = await startKube();
  });

  /** Waits (up to a minute) for a condition of `type` in the object's status. */
  const condition = async (object: string[], type: string): Promise<Obj | undefined> => {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const found = (await get(object)).status?.conditions?.find((c: Obj) => c.type === type);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 250));
    }
    return undefined;
  };

  /**
   * Runs the webhook command of the installed Deployment here, as the chart's ServiceAccount (a token
   * of it in a kubeconfig) with the release's serving certificate, until `body` is done.
   */
  const runChartWebhook = async (body: (serve: Daemon) => Promise<void>): Promise<void> => {
    const deployment = await get(['-n', NAMESPACE, 'deployment', 'pullmap-webhook']);
    const secret = await get(['-n', NAMESPACE, 'secret', 'pullmap-webhook-tls']);
    const mutating = await get(['mutatingwebhookconfiguration', 'pullmap']);
    const dir = await tempDir('helm-serve');
    try {
      const token = (await kube.kubectl(['-n', NAMESPACE, 'create', 'token', 'pullmap'])).trim();
      const kubeconfig = parseYaml(readFileSync(kube.kubeconfigPath, 'utf8')) as Obj;
      kubeconfig.users = [{ name: 'admin', user: { token } }];
      await writeFile(join(dir.path, 'kubeconfig'), stringify(kubeconfig));
      await writeFile(join(dir.path, 'tls.crt'), pem(secret.data['tls.crt']));
      await writeFile(join(dir.path, 'tls.key'), pem(secret.data['tls.key']));
      const port = await freePort();
      const healthPort = await freePort();
      const container = deployment.spec.template.spec.containers[0];
      const args = (container.args as string[]).map((a) =>
        a.startsWith('--listen=')
          ? `--listen=127.0.0.1:${port}`
          : a.startsWith('--health-listen=')
            ? `--health-listen=127.0.0.1:${healthPort}`
            : a.startsWith('--tls-cert=')
              ? `--tls-cert=${join(dir.path, 'tls.crt')}`
              : a.startsWith('--tls-key=')
                ? `--tls-key=${join(dir.path, 'tls.key')}`
                : a,
      );
      const caPem = pem(mutating.webhooks[0].clientConfig.caBundle);
      const serve = await startDaemon({
        name: 'pullmap serve (chart args)',
        command: process.execPath,
        args: [PULLMAP, ...args, `--kubeconfig=${join(dir.path, 'kubeconfig')}`],
        env: { ...process.env, POD_NAME: 'pullmap-webhook-test', POD_NAMESPACE: NAMESPACE },
        readyTimeoutMs: 60_000,
        ready: async () =>
          (await httpsStatus(
            `https://127.0.0.1:${port}/readyz`,
            caPem,
            `pullmap-webhook.${NAMESPACE}.svc`,
          )) === 200,
      });
      try {
        // The probes' listener, as rendered.
        assert.equal((await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status, 200);
        await body(serve);
      } finally {
        await serve.stop();
      }
    } finally {
      await dir.remove();
    }
  };

  after(async () => {
    await kube?.stop();
  });

  test('install creates the webhook, its certificate, RBAC, the cache DaemonSet and the maps; upgrade keeps the certificate; uninstall removes them', async (t) => {
    // Maps from values on a cluster without the CRDs yet: refused with the fix, before anything is made.
    const first = await helm.run(
      [
        'install',
        'pullmap',
        CHART,
        '--namespace',
        NAMESPACE,
        '--create-namespace',
        ...valuesFile('maps'),
        ...NO_CLUSTER_IP,
      ],
      { kubeconfig: kube.kubeconfigPath },
    );
    assert.notEqual(first.code, 0);
    assert.match(
      first.stderr,
      /clusterImageMaps: .*Install once without clusterImageMaps, then helm upgrade with them/,
    );
    assert.equal(await exists(['crd', 'clusterimagemaps.pullmap.dev']), false);

    const started = performance.now();
    await helmKube([
      'install',
      'pullmap',
      CHART,
      '--create-namespace',
      '--set',
      'cache.enabled=true',
      ...NO_CLUSTER_IP,
    ]);
    t.diagnostic(`helm install: ${Math.round(performance.now() - started)} ms`);
    // CRDs from the chart's templates, kept on uninstall; then the maps from values, accepted by their schema.
    for (const crd of ['imagemaps.pullmap.dev', 'clusterimagemaps.pullmap.dev']) {
      const object = await get(['crd', crd]);
      assert.equal(object.metadata.labels['app.kubernetes.io/part-of'], 'pullmap');
      assert.equal(object.metadata.annotations['helm.sh/resource-policy'], 'keep');
    }
    await helmKube(['upgrade', 'pullmap', CHART, '--reuse-values', ...valuesFile('maps')]);
    const mirror = await get(['clusterimagemap', 'mirror']);
    assert.equal(mirror.spec.mappings[0].when, 'Always', 'the CRD schema defaulted the omitted field');
    assert.equal(mirror.spec.mappings[1].naming, 'zarf');
    assert.equal((await get(['clusterimagemap', 'bootcamp'])).spec.namespaceSelector.matchLabels.team, 'web');

    const deployment = await get(['-n', NAMESPACE, 'deployment', 'pullmap-webhook']);
    assert.equal(deployment.spec.replicas, 2);
    assert.equal(deployment.spec.template.spec.serviceAccountName, 'pullmap');
    assert.equal((await get(['-n', NAMESPACE, 'service', 'pullmap-webhook'])).spec.ports[0].port, 443);
    assert.equal((await get(['-n', NAMESPACE, 'pdb', 'pullmap-webhook'])).spec.minAvailable, 1);
    const ds = await get(['-n', NAMESPACE, 'daemonset', 'pullmap-cache']);
    assert.equal(ds.spec.template.spec.containers[0].ports[0].hostIP, '127.0.0.1');
    assert.ok(await exists(['-n', NAMESPACE, 'configmap', 'pullmap-cache-config']));
    for (const object of [
      ['clusterrole', 'pullmap'],
      ['clusterrolebinding', 'pullmap'],
      ['-n', NAMESPACE, 'role', 'pullmap-leader-election'],
      ['-n', NAMESPACE, 'rolebinding', 'pullmap-leader-election'],
      ['-n', NAMESPACE, 'serviceaccount', 'pullmap'],
    ])
      assert.ok(await exists(object), object.join(' '));
    // Pull secret copying is on by default: the ServiceAccount may list Secrets everywhere.
    assert.equal(
      (
        await kube.kubectl([
          'auth',
          'can-i',
          'list',
          'secrets',
          '-A',
          '--as',
          `system:serviceaccount:${NAMESPACE}:pullmap`,
        ])
      ).trim(),
      'yes',
    );

    const secret = await get(['-n', NAMESPACE, 'secret', 'pullmap-webhook-tls']);
    const mutating = await get(['mutatingwebhookconfiguration', 'pullmap']);
    const validating = await get(['validatingwebhookconfiguration', 'pullmap-maps']);
    assertServingCert(mutating.webhooks[0].clientConfig.caBundle, secret.data['tls.crt'], 'pullmap-webhook');
    assert.equal(validating.webhooks[0].clientConfig.caBundle, mutating.webhooks[0].clientConfig.caBundle);
    assert.equal(mutating.webhooks[0].clientConfig.url, 'https://127.0.0.1:1/mutate-pods');
    assert.equal(
      new X509Certificate(pem(secret.data['tls.crt'])).checkIP('127.0.0.1'),
      '127.0.0.1',
      'the certificate names the url host',
    );

    // The webhook command as the Deployment holds it, run here with the chart's ServiceAccount: it
    // loads the maps (ready), elects itself and writes their status, serving with the Secret's certificate.
    await runChartWebhook(async (serve) => {
      const ready = await condition(['clusterimagemap', 'mirror'], 'Ready');
      assert.equal(
        ready?.status,
        'True',
        `map status written by the chart's ServiceAccount:\n${serve.output().slice(-3000)}`,
      );
      const lease = await get(['-n', NAMESPACE, 'lease', 'pullmap-controller']);
      assert.equal(lease.spec.holderIdentity, 'pullmap-webhook-test');

      // The chart hands the webhook its cache's upstreams: a map routed through the cache to another
      // host gets a warning beside Ready (which stays True), gone once the map is fixed.
      const routed = (to: string) =>
        stringify({
          apiVersion: 'pullmap.dev/v1alpha1',
          kind: 'ClusterImageMap',
          metadata: { name: 'through-cache' },
          spec: { mappings: [{ from: 'ghcr.io/acme/', to }], cache: { enabled: true } },
        });
      await kube.kubectl(['apply', '-f', '-'], routed('mirror.internal:5000/acme/'));
      const warning = await condition(['clusterimagemap', 'through-cache'], 'CacheTargetsProxied');
      assert.equal(warning?.status, 'False', serve.output().slice(-3000));
      assert.equal(warning?.reason, 'NotCacheUpstream');
      assert.match(
        warning?.message,
        /^spec\.mappings\[0\]\.to: mirror\.internal:5000 is not an upstream of the cache \(its upstreams: docker\.io, quay\.io, ghcr\.io, registry\.k8s\.io\).*add mirror\.internal:5000 to the cache's upstreams/,
      );
      assert.equal((await condition(['clusterimagemap', 'through-cache'], 'Ready'))?.status, 'True');
      await kube.kubectl(['apply', '-f', '-'], routed('ghcr.io/acme/'));
      const deadline = Date.now() + 60_000;
      let types: string[] = [];
      while (Date.now() < deadline) {
        const status = (await get(['clusterimagemap', 'through-cache'])).status;
        types = (status?.conditions ?? []).map((c: Obj) => c.type);
        if (status?.observedGeneration === 2 && !types.includes('CacheTargetsProxied')) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(types, ['Ready'], 'the warning goes once the target is an upstream');
      await kube.kubectl(['apply', '-f', '-'], routed('mirror.internal:5000/acme/'));
      assert.ok(await condition(['clusterimagemap', 'through-cache'], 'CacheTargetsProxied'));
    });
    // Or the list: the cache given that upstream, the webhook (restarted by the rollout) drops the warning.
    await helmKube([
      'upgrade',
      'pullmap',
      CHART,
      '--reuse-values',
      '--set-json',
      'cache.config.upstreams=[{"host":"docker.io"},{"host":"mirror.internal:5000"}]',
    ]);
    await runChartWebhook(async (serve) => {
      const deadline = Date.now() + 60_000;
      let conditions: Obj[] = [];
      while (Date.now() < deadline) {
        conditions = (await get(['clusterimagemap', 'through-cache'])).status?.conditions ?? [];
        if (!conditions.some((c) => c.type === 'CacheTargetsProxied')) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(
        conditions.map((c) => c.type),
        ['Ready'],
        `the warning goes once the host is an upstream:\n${serve.output().slice(-3000)}`,
      );
      await kube.kubectl(['delete', 'clusterimagemap', 'through-cache']);
    });

    // Upgrade: the certificate found in the cluster is kept, the change applied.
    await helmKube(['upgrade', 'pullmap', CHART, '--reuse-values', '--set', 'webhook.replicas=3']);
    const secretAfter = await get(['-n', NAMESPACE, 'secret', 'pullmap-webhook-tls']);
    assert.equal(
      secretAfter.data['tls.crt'],
      secret.data['tls.crt'],
      'upgrade keeps the serving certificate',
    );
    assert.equal(secretAfter.data['tls.key'], secret.data['tls.key']);
    assert.equal(
      (await get(['mutatingwebhookconfiguration', 'pullmap'])).webhooks[0].clientConfig.caBundle,
      mutating.webhooks[0].clientConfig.caBundle,
    );
    assert.equal((await get(['-n', NAMESPACE, 'deployment', 'pullmap-webhook'])).spec.replicas, 3);

    // Uninstall removes what the release made; the CRDs stay (crds.keep), so maps users created survive
    // a reinstall.
    await helmKube(['uninstall', 'pullmap']);
    for (const object of [
      ['-n', NAMESPACE, 'deployment', 'pullmap-webhook'],
      ['-n', NAMESPACE, 'service', 'pullmap-webhook'],
      ['-n', NAMESPACE, 'secret', 'pullmap-webhook-tls'],
      ['-n', NAMESPACE, 'daemonset', 'pullmap-cache'],
      ['-n', NAMESPACE, 'configmap', 'pullmap-cache-config'],
      ['mutatingwebhookconfiguration', 'pullmap'],
      ['validatingwebhookconfiguration', 'pullmap-maps'],
      ['clusterrole', 'pullmap'],
      ['clusterrolebinding', 'pullmap'],
      ['clusterimagemap', 'mirror'],
      ['clusterimagemap', 'bootcamp'],
    ])
      assert.equal(await exists(object), false, `${object.join(' ')} is gone after uninstall`);
    assert.ok(await exists(['crd', 'clusterimagemaps.pullmap.dev']));
  });
  test('pullSecretCopy.enabled=false: the webhook runs with no Secret access at all, and a map naming a pullSecret says copying is disabled; an upgrade applies a CRD change', async () => {
    // The CRDs kept by the previous test's uninstall are adopted again by the same release name.
    await helmKube(['install', 'pullmap', CHART, '--set', 'pullSecretCopy.enabled=false', ...NO_CLUSTER_IP]);
    const sa = `system:serviceaccount:${NAMESPACE}:pullmap`;
    for (const verb of ['get', 'list', 'watch', 'create', 'update', 'delete'])
      for (const scope of [['-A'], ['-n', NAMESPACE]]) {
        // can-i says "no" with exit code 1, which the harness reports as a rejection.
        const answer = await kube.kubectl(['auth', 'can-i', verb, 'secrets', ...scope, '--as', sa]).then(
          (out) => out.trim(),
          // Nothing on stderr after the command line: the plain "no" exit, not an error.
          (err: unknown) => (String(err).trim().endsWith(`--as ${sa}`) ? 'no' : String(err)),
        );
        assert.equal(answer, 'no', `${verb} secrets ${scope.join(' ')}`);
      }
    await kube.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'pullmap.dev/v1alpha1',
        kind: 'ClusterImageMap',
        metadata: { name: 'private' },
        spec: {
          mappings: [{ from: 'ghcr.io/acme/', to: 'mirror.example/acme/', pullSecret: 'mirror-pull' }],
        },
      }),
    );
    await runChartWebhook(async (serve) => {
      const note = await condition(['clusterimagemap', 'private'], 'PullSecretsCopied');
      assert.equal(note?.status, 'False', serve.output().slice(-3000));
      assert.equal(note?.reason, 'CopyDisabled');
      assert.match(note?.message, /pullmap-mirror-pull/);
      assert.equal((await condition(['clusterimagemap', 'private'], 'Ready'))?.status, 'True');
      assert.doesNotMatch(serve.output(), /forbidden|secrets/i, 'nothing asked for a Secret');
    });
    await kube.kubectl(['delete', 'clusterimagemap', 'private']);

    // A schema change in a new chart version reaches the cluster with helm upgrade (crds/ never would).
    const changed = await tempDir('helm-chart');
    try {
      await execFileAsync('cp', ['-r', CHART, join(changed.path, 'pullmap')]);
      const file = join(changed.path, 'pullmap', 'templates', 'crds.yaml');
      const text = readFileSync(file, 'utf8');
      const age =
        '        - name: Age\n          type: date\n          jsonPath: .metadata.creationTimestamp\n';
      const marked = text.replace(
        age,
        `${age}        - name: Upgraded\n          type: string\n          jsonPath: .metadata.name\n`,
      );
      assert.notEqual(marked, text, 'the printer column was added to the chart copy');
      await writeFile(file, marked);
      await helmKube(['upgrade', 'pullmap', join(changed.path, 'pullmap'), '--reuse-values']);
      const crd = await get(['crd', 'imagemaps.pullmap.dev']);
      const columns = crd.spec.versions[0].additionalPrinterColumns.map((c: Obj) => c.name);
      assert.ok(columns.includes('Upgraded'), columns.join(' '));
    } finally {
      await changed.remove();
    }
    await helmKube(['uninstall', 'pullmap']);
  });

  test("upgrading from a release that did not own the CRDs (the chart's crds/): refused, then adopted the README's two ways", async () => {
    const crds = ['imagemaps.pullmap.dev', 'clusterimagemaps.pullmap.dev'];
    // What a crds/ install leaves: the CRDs without Helm's ownership label and annotations.
    const disown = async () => {
      await kube.kubectl([
        'annotate',
        'crd',
        ...crds,
        'meta.helm.sh/release-name-',
        'meta.helm.sh/release-namespace-',
      ]);
      await kube.kubectl(['label', 'crd', ...crds, 'app.kubernetes.io/managed-by-']);
    };
    for (const adopt of ['--take-ownership', 'label and annotate'] as const) {
      await disown();
      await helmKube(['install', 'pullmap', CHART, '--set', 'crds.enabled=false', ...NO_CLUSTER_IP]);
      const upgrade = ['upgrade', 'pullmap', CHART, '--reuse-values', '--set', 'crds.enabled=true'];
      const refused = await helm.run([...upgrade, '--namespace', NAMESPACE], {
        kubeconfig: kube.kubeconfigPath,
      });
      assert.notEqual(refused.code, 0, adopt);
      assert.match(refused.stderr, /invalid ownership metadata|cannot be imported/, refused.stderr);
      if (adopt === '--take-ownership') await helmKube([...upgrade, '--take-ownership']);
      else {
        await kube.kubectl(['label', 'crd', ...crds, 'app.kubernetes.io/managed-by=Helm']);
        await kube.kubectl([
          'annotate',
          'crd',
          ...crds,
          'meta.helm.sh/release-name=pullmap',
          `meta.helm.sh/release-namespace=${NAMESPACE}`,
        ]);
        await helmKube(upgrade);
      }
      const crd = await get(['crd', 'imagemaps.pullmap.dev']);
      assert.equal(crd.metadata.annotations['meta.helm.sh/release-name'], 'pullmap', adopt);
      assert.equal(crd.metadata.annotations['helm.sh/resource-policy'], 'keep', adopt);
      await helmKube(['uninstall', 'pullmap']);
      assert.ok(await exists(['crd', 'imagemaps.pullmap.dev']), 'kept');
    }
  });

  test('the PVC cache and, once the cluster serves the ServiceMonitor API, ServiceMonitors (auto)', async () => {
    const namespace = 'cache-pvc';
    await kube.kubectl(['apply', '-f', join(HERE, 'servicemonitor-crd.yaml')]);
    await kube.kubectl([
      'wait',
      '--for=condition=Established',
      'crd/servicemonitors.monitoring.coreos.com',
      '--timeout=60s',
    ]);
    const inNs = (args: string[]): Promise<string> =>
      helm.ok([...args, '--namespace', namespace], { kubeconfig: kube.kubeconfigPath });
    // A second release: the first owns the CRDs (kept after its uninstall, still annotated as its own).
    const notes = await inNs([
      'install',
      'pullmap-pvc',
      CHART,
      '--create-namespace',
      '--set',
      'crds.enabled=false',
      '--set',
      'cache.enabled=true',
      '--set',
      'cache.mode=pvc',
      ...NO_CLUSTER_IP,
    ]);
    assert.match(notes, /set webhook\.cacheAddress/, 'the notes say what the PVC cache needs');
    const pvc = await get(['-n', namespace, 'pvc', 'pullmap-pvc-cache-store']);
    assert.equal(pvc.spec.resources.requests.storage, '25Gi');
    const deployment = await get(['-n', namespace, 'deployment', 'pullmap-pvc-cache']);
    assert.equal(deployment.spec.strategy.type, 'Recreate');
    assert.equal(
      deployment.spec.template.spec.volumes.find((v: Obj) => v.name === 'store').persistentVolumeClaim
        .claimName,
      'pullmap-pvc-cache-store',
    );
    const service = await get(['-n', namespace, 'service', 'pullmap-pvc-cache']);
    assert.equal(service.spec.type, 'NodePort');
    assert.equal(service.spec.ports[0].nodePort, 30439);
    const webhookMonitor = await get(['-n', namespace, 'servicemonitor', 'pullmap-pvc-webhook']);
    assert.equal(webhookMonitor.spec.endpoints[0].scheme, 'https');
    assert.equal(webhookMonitor.spec.endpoints[0].tlsConfig.ca.secret.name, 'pullmap-pvc-webhook-tls');
    assert.ok(await exists(['-n', namespace, 'servicemonitor', 'pullmap-pvc-cache']));

    await inNs(['uninstall', 'pullmap-pvc']);
    // The claim carries the pvc-protection finalizer, which only the controller-manager (absent here)
    // removes: Helm's delete shows as a deletion timestamp.
    const deleted = await get(['-n', namespace, 'pvc', 'pullmap-pvc-cache-store']);
    assert.ok(deleted.metadata.deletionTimestamp, 'uninstall deletes the claim it made');
    for (const object of [
      ['-n', namespace, 'deployment', 'pullmap-pvc-cache'],
      ['-n', namespace, 'servicemonitor', 'pullmap-pvc-webhook'],
      ['mutatingwebhookconfiguration', 'pullmap-pvc'],
    ])
      assert.equal(await exists(object), false, `${object.join(' ')} is gone after uninstall`);
  });

  test('the S3 cache: replicas, their ServiceAccount and Service; the proxy in both containers', async () => {
    const namespace = 'cache-s3';
    const inNs = (args: string[]): Promise<string> =>
      helm.ok([...args, '--namespace', namespace], { kubeconfig: kube.kubeconfigPath });
    await inNs([
      'install',
      'pullmap-s3',
      CHART,
      '--create-namespace',
      ...valuesFile('cache-s3'),
      // A second release in this cluster: the first one owns the CRDs (one release per cluster renders them).
      '--set',
      'crds.enabled=false',
      ...NO_CLUSTER_IP,
    ]);
    const deployment = await get(['-n', namespace, 'deployment', 'pullmap-s3-cache']);
    assert.equal(deployment.spec.replicas, 3);
    assert.equal(deployment.spec.strategy.type, 'RollingUpdate');
    const pod = deployment.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'pullmap-s3-cache');
    assert.equal(pod.volumes.find((v: Obj) => v.name === 'store').emptyDir.sizeLimit, '4Gi');
    assert.ok(pod.containers[0].env.some((e: Obj) => e.name === 'NO_PROXY'));
    const account = await get(['-n', namespace, 'serviceaccount', 'pullmap-s3-cache']);
    assert.ok(account.metadata.annotations['eks.amazonaws.com/role-arn']);
    assert.equal((await get(['-n', namespace, 'service', 'pullmap-s3-cache'])).spec.type, 'NodePort');
    const webhook = await get(['-n', namespace, 'deployment', 'pullmap-s3-webhook']);
    assert.ok(webhook.spec.template.spec.containers[0].env.some((e: Obj) => e.name === 'HTTPS_PROXY'));
    assert.equal(await exists(['-n', namespace, 'pvc', 'pullmap-s3-cache-store']), false);

    await inNs(['uninstall', 'pullmap-s3']);
    for (const object of [
      ['-n', namespace, 'deployment', 'pullmap-s3-cache'],
      ['-n', namespace, 'serviceaccount', 'pullmap-s3-cache'],
      ['-n', namespace, 'service', 'pullmap-s3-cache'],
    ])
      assert.equal(await exists(object), false, `${object.join(' ')} is gone after uninstall`);
  });
});
