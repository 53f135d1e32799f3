// Where pod specs live in Kubernetes objects: a Pod's own spec, a PodTemplate's template, every
// workload's spec.template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ...) and a CronJob's
// spec.jobTemplate.spec.template. Found by shape, so custom PodTemplate-bearing kinds work too.

export const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
export type ContainerList = (typeof CONTAINER_LISTS)[number];

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

export interface PodSpecLocation {
  /** JSON path segments from the object root to the pod spec. */
  readonly path: readonly string[];
  readonly spec: Json;
  /** Metadata that applies to the pods: the template's, or the Pod's own. */
  readonly metadata: Json;
}

export interface ContainerImage {
  readonly list: ContainerList;
  readonly index: number;
  readonly name: string;
  readonly image: string;
  readonly pullPolicy: string | undefined;
}

export function findPodSpecs(object: unknown): PodSpecLocation[] {
  if (!isObject(object)) return [];
  if (object.kind === 'Pod') {
    return isObject(object.spec)
      ? [{ path: ['spec'], spec: object.spec, metadata: isObject(object.metadata) ? object.metadata : {} }]
      : [];
  }
  const out: PodSpecLocation[] = [];
  const template = (t: unknown, path: string[]): void => {
    if (isObject(t) && isObject(t.spec))
      out.push({ path: [...path, 'spec'], spec: t.spec, metadata: isObject(t.metadata) ? t.metadata : {} });
  };
  template(object.template, ['template']);
  if (isObject(object.spec)) {
    template(object.spec.template, ['spec', 'template']);
    const job = object.spec.jobTemplate;
    if (isObject(job) && isObject(job.spec))
      template(job.spec.template, ['spec', 'jobTemplate', 'spec', 'template']);
  }
  return out;
}

/** Every container with a string image, in the order the kubelet starts them. */
export function containerImages(spec: Json): ContainerImage[] {
  const out: ContainerImage[] = [];
  for (const list of CONTAINER_LISTS) {
    const containers = spec[list];
    if (!Array.isArray(containers)) continue;
    containers.forEach((c: unknown, index) => {
      if (!isObject(c) || typeof c.image !== 'string') return;
      out.push({
        list,
        index,
        name: typeof c.name === 'string' ? c.name : `${list}[${index}]`,
        image: c.image,
        pullPolicy: typeof c.imagePullPolicy === 'string' ? c.imagePullPolicy : undefined,
      });
    });
  }
  return out;
}

/** The pull policy Kubernetes defaults to when none is written: Always for :latest or no tag. */
export function defaultPullPolicy(tag: string | undefined, digest: string | undefined): string {
  return digest === undefined && (tag === undefined || tag === 'latest') ? 'Always' : 'IfNotPresent';
}
