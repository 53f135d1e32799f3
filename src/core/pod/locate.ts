// Where pod specs live in Kubernetes objects: a Pod's own spec, a PodTemplate's template, every
// workload's spec.template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ...) and a CronJob's
// spec.jobTemplate.spec.template. Found by shape, so custom PodTemplate-bearing kinds work too.

import { isObject, type Json } from '../json.ts';

export const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
/** Where a pod pulls images from: the container lists, and image volumes (spec.volumes[].image). */
type ContainerList = (typeof CONTAINER_LISTS)[number] | 'volumes';

/**
 * Annotation key of an image volume: container names are DNS labels, which cannot hold ":", so
 * "volume:NAME" never collides with a container of the same name.
 */
const volumeKey = (name: string): string => `volume:${name}`;

interface PodSpecLocation {
  /** JSON path segments from the object root to the pod spec. */
  readonly path: readonly string[];
  readonly spec: Json;
  /** Metadata that applies to the pods: the template's, or the Pod's own. */
  readonly metadata: Json;
}

export interface ContainerImage {
  readonly list: ContainerList;
  readonly index: number;
  /** The container's name; for an image volume `volume:NAME` (volumeKey), the key in the annotations. */
  readonly name: string;
  readonly image: string;
  readonly pullPolicy: string | undefined;
  /** Segments from the pod spec to the image string: containers/0/image, volumes/1/image/reference. */
  readonly path: readonly (string | number)[];
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

/**
 * Every image the pod pulls: each container with a string image, in the order the kubelet starts them,
 * then each image volume (spec.volumes[].image.reference, with its pullPolicy).
 */
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
        path: [list, index, 'image'],
      });
    });
  }
  if (Array.isArray(spec.volumes))
    spec.volumes.forEach((v: unknown, index) => {
      if (!isObject(v) || !isObject(v.image) || typeof v.image.reference !== 'string') return;
      out.push({
        list: 'volumes',
        index,
        name: volumeKey(typeof v.name === 'string' ? v.name : `volumes[${index}]`),
        image: v.image.reference,
        pullPolicy: typeof v.image.pullPolicy === 'string' ? v.image.pullPolicy : undefined,
        path: ['volumes', index, 'image', 'reference'],
      });
    });
  return out;
}
