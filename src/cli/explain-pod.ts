// `pullmap explain --pod NAMESPACE/NAME`: why a live pod has the images it has. For each container and
// image volume: the original (from pullmap.dev/original-images), the image the pod holds, the map
// entry that mapped it (pullmap.dev/mapped-by), and what the maps in force would decide now, as the
// same JSON object `explain -o json` prints for an image, with those fields added.

import { lastAcceptedOf } from '../controller/status.ts';
import { resourcePath } from '../core/api/crd.ts';
import { API_VERSION, KINDS } from '../core/api/v1alpha1.ts';
import { isObject, type Json } from '../core/json.ts';
import {
  analyzeMaps,
  buildSnapshot,
  type DecisionSettings,
  decideImage,
  type MapSnapshot,
} from '../core/mapping/index.ts';
import { containerImages } from '../core/pod/locate.ts';
import {
  ANNOTATION_MAPPED_BY,
  ANNOTATION_ORIGINAL_IMAGES,
  jsonAnnotation,
  podSkipReason,
  recordedFor,
} from '../core/pod/plan.ts';
import { printable } from '../core/text.ts';
import { isStatus, KubeApiError, type KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/list-watch.ts';
import { decideWithProbes, type ExistenceSource } from '../sources/resolve.ts';
import { PodInputError } from './errors.ts';
import { configMaps, describe, format, type Output, text } from './explain.ts';
import type { CliIO } from './io.ts';

interface ExplainPodOptions {
  /** NAMESPACE/NAME */
  pod: string;
  kubeconfig: string | undefined;
  /** Maps from these --config values instead of the cluster's map objects. */
  config: readonly string[] | undefined;
  output: Output;
  maxInputBytes: number;
  existence: ExistenceSource;
  /** The settings the webhook decides with (its --cache-address and --exclude-namespaces). */
  settings: DecisionSettings;
}

/**
 * The maps in force for one namespace, analysed as the controller does (last accepted generations
 * too). A namespace's verdicts depend only on its own ImageMaps and the ClusterImageMaps, so those are
 * all it reads (a tenant who may read their own namespace needs no cluster-wide list of ImageMaps).
 */
async function clusterMaps(client: KubeClient, namespace: string, io: CliIO): Promise<MapSnapshot> {
  const objects: KubeObject[] = [];
  for (const kind of KINDS) {
    try {
      const path = resourcePath(kind, kind === 'ImageMap' ? namespace : undefined);
      const list = (await client.request('GET', path)) as { items?: KubeObject[] };
      for (const item of list.items ?? []) objects.push({ ...item, apiVersion: API_VERSION, kind });
    } catch (err) {
      if (isStatus(err, 404))
        throw new PodInputError(
          'the cluster has no pullmap map CRDs; install deploy/crds or give --config FILE',
        );
      throw err;
    }
  }
  const analysis = analyzeMaps(
    objects.map((current) => ({ current, lastAccepted: lastAcceptedOf(current) })),
  );
  for (const v of analysis.verdicts)
    if (v.verdict !== 'Accepted') io.stderr.write(`warning: map ${printable(v.name)} is ${v.verdict}\n`);
  return buildSnapshot(analysis.accepted);
}

export async function explainPod(options: ExplainPodOptions, io: CliIO): Promise<number> {
  try {
    return await explainLivePod(options, io);
  } catch (err) {
    if (!(err instanceof PodInputError)) throw err;
    io.stderr.write(`pullmap: ${printable(err.message)}\n`);
    return 2;
  }
}

/** `NAMESPACE/NAME` split, or a PodInputError saying how to write it. */
function podName(pod: string): { namespace: string; name: string } {
  const slash = pod.indexOf('/');
  const namespace = pod.slice(0, slash);
  const name = pod.slice(slash + 1);
  if (slash <= 0 || name === '' || name.includes('/'))
    throw new PodInputError(
      `--pod ${JSON.stringify(pod)} is not NAMESPACE/NAME; write it like default/web-0`,
    );
  return { namespace, name };
}

async function openClient(kubeconfig: string | undefined): Promise<KubeClient> {
  // The reader serve uses: client-node (+80 MiB, about 1 s) only for kubeconfigs it does not read.
  const [{ loadKubeConfig }, { kubeClient }] = await Promise.all([
    import('../kube/config.ts'),
    import('../kube/client.ts'),
  ]);
  let kubeConfig: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    kubeConfig = await loadKubeConfig({ path: kubeconfig || undefined });
    if (!kubeConfig.getCurrentCluster()) throw new Error('it names no current cluster');
  } catch (err) {
    throw new PodInputError(
      `--pod: cannot use the kubeconfig${kubeconfig ? ` ${kubeconfig}` : ''}: ${(err as Error).message}; give --kubeconfig FILE`,
    );
  }
  return kubeClient(kubeConfig, { timeoutMs: 10_000 });
}

async function readPod(client: KubeClient, namespace: string, name: string): Promise<KubeObject> {
  try {
    return (await client.request(
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
    )) as KubeObject;
  } catch (err) {
    if (isStatus(err, 404)) throw new PodInputError(`pod ${namespace}/${name} does not exist`);
    throw err;
  }
}

async function namespaceLabelsOf(client: KubeClient, namespace: string): Promise<Record<string, string>> {
  try {
    const ns = (await client.request(
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(namespace)}`,
    )) as KubeObject;
    if (isObject(ns.metadata.labels)) return ns.metadata.labels as Record<string, string>;
  } catch (err) {
    if (!(err instanceof KubeApiError)) throw err; // not allowed to read namespaces: the name label only
  }
  return { 'kubernetes.io/metadata.name': namespace };
}

interface PodFacts {
  annotations: Json;
  labels: Record<string, string>;
  spec: Json;
}

function podFacts(pod: KubeObject): PodFacts {
  const metadata = pod.metadata;
  return {
    annotations: isObject(metadata.annotations) ? metadata.annotations : {},
    labels: isObject(metadata.labels) ? (metadata.labels as Record<string, string>) : {},
    spec: isObject(pod.spec) ? pod.spec : {},
  };
}

type PodImage = ReturnType<typeof containerImages>[number];

/** Where the image sits in the pod: `{container}`, or `{volume}` for an image volume. */
function where(c: PodImage): { volume: string } | { container: string } {
  return c.list === 'volumes' ? { volume: c.name.slice('volume:'.length) } : { container: c.name };
}

/** The text form of one image's explanation: where it sits in the pod, then `explain`'s own lines. */
function imageText(
  d: Record<string, unknown>,
  c: PodImage,
  original: string,
  skipped: string | undefined,
): string {
  const head = `${d.pod} ${c.list === 'volumes' ? `volume ${d.volume}` : `container ${d.container}`}`;
  const rest = text(d)
    .split('\n')
    .slice(1)
    .map((l) => (l ? `${l}\n` : ''))
    .join('');
  const mappedBy = d.mappedBy ? ` (mapped by ${printable(String(d.mappedBy))})` : '';
  return `${printable(head)}\n  original    ${printable(original)}\n  image       ${printable(c.image)}${mappedBy}\n${skipped ? `  skipped     ${skipped}\n` : ''}${rest}`;
}

async function explainLivePod(options: ExplainPodOptions, io: CliIO): Promise<number> {
  const { namespace, name } = podName(options.pod);
  let snapshot: MapSnapshot | undefined;
  if (options.config !== undefined) {
    const maps = await configMaps(options.config, options.maxInputBytes, io);
    if (maps === undefined) return 2;
    snapshot = maps.snapshot;
  }
  const client = await openClient(options.kubeconfig);
  try {
    const pod = await readPod(client, namespace, name);
    const current = snapshot ?? (await clusterMaps(client, namespace, io));
    const namespaceLabels = await namespaceLabelsOf(client, namespace);
    const facts = podFacts(pod);
    const originals = jsonAnnotation(facts.annotations, ANNOTATION_ORIGINAL_IMAGES);
    const mappedBy = jsonAnnotation(facts.annotations, ANNOTATION_MAPPED_BY);
    const skipped = podSkipReason(options.settings, namespace, facts.labels, facts.annotations);
    for (const c of containerImages(facts.spec)) {
      const original = recordedFor(originals, c.name) ?? c.image;
      const ctx = { namespace, namespaceLabels, podLabels: facts.labels, pullPolicy: c.pullPolicy };
      const decision = await decideWithProbes(
        (probed) => decideImage(current, options.settings, original, ctx, probed),
        options.existence,
      );
      const d = {
        pod: `${namespace}/${name}`,
        ...where(c),
        ...describe(original, decision),
        image: c.image,
        mappedBy: recordedFor(mappedBy, c.name) ?? null,
        ...(skipped ? { skipped } : {}),
      };
      io.stdout.write(format(d, options.output, () => imageText(d, c, original, skipped)));
    }
    return 0;
  } catch (err) {
    if (err instanceof KubeApiError)
      throw new PodInputError(`--pod ${options.pod}: ${err.message}`, { cause: err });
    throw err;
  } finally {
    await client.close();
  }
}
