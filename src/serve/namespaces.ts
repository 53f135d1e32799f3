// Namespace labels for ClusterImageMap namespaceSelectors, from a list-watch of namespaces: admissions
// read an in-memory map, never the API. Labels are stored as frozen records, one per namespace.
import type { Labels } from '../core/mapping/index.ts';
import type { KubeClient } from '../kube/client.ts';
import { ListWatch } from '../kube/list-watch.ts';
import type { Logger } from '../observe/log.ts';

export interface NamespaceLabels {
  labels(namespace: string): Labels;
  /** Whether the first list has completed. */
  synced(): boolean;
  stop(): Promise<void>;
}

const EMPTY: Labels = Object.freeze({});

export function watchNamespaceLabels(client: KubeClient, logger: Logger): NamespaceLabels {
  let synced = false;
  const watch = new ListWatch({
    client,
    path: '/api/v1/namespaces',
    logger: logger.with({ watch: 'namespaces' }),
    onChange: (change) => {
      if (change.type === 'replaced') synced = true;
    },
  });
  watch.start();
  return {
    labels(namespace) {
      const labels = watch.store.get(namespace)?.metadata['labels'];
      // The apiserver sets kubernetes.io/metadata.name itself; keep it even before the watch sees a
      // namespace, so selectors on the name work for pods in namespaces created a moment ago.
      if (labels && typeof labels === 'object') return labels as Labels;
      return namespace ? { 'kubernetes.io/metadata.name': namespace } : EMPTY;
    },
    synced: () => synced,
    stop: () => watch.stop(),
  };
}
