// pullmap.dev/v1alpha1: ImageMap (namespaced) and ClusterImageMap (cluster-wide). This file is the one
// schema source: the CRD YAML (scripts/gen-crds.ts), the config-file loader, the validating webhook
// and the TypeScript types all derive from the declarations below.

import { MAX_DURATION_TEXT, parseDuration } from '../duration.ts';
import {
  boolean,
  type Infer,
  integer,
  list,
  object,
  oneOf,
  optional,
  required,
  type Schema,
  string,
  stringMap,
  stringOrList,
} from '../schema/dsl.ts';
import { checkTagPattern, checkTagPatternList } from '../tag-pattern.ts';

export const GROUP = 'pullmap.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KINDS = ['ImageMap', 'ClusterImageMap'] as const;
export type MapKind = (typeof KINDS)[number];

/** Bounds that keep one object's cost to the webhook and the controller small. */
const LIMITS = { mappings: 500, candidates: 8, mutableTags: 64, referenceLength: 512 } as const;

/** Secret names are DNS subdomains; pullmap's copies add "pullmap-" (8 characters) within the 253 limit. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A name the rules would accept, close to `s`: lowercased, other characters as "-", trimmed. */
const nameLike = (s: string, dots: boolean): string =>
  s
    .toLowerCase()
    .replace(dots ? /[^-a-z0-9.]+/g : /[^-a-z0-9]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '') || 'my-map';

/** As the API server checks names of map objects (DNS-1123 subdomain) and namespaces (DNS-1123 label). */
const dnsName = (what: 'subdomain' | 'label') => (s: string) =>
  (what === 'subdomain' ? DNS_SUBDOMAIN : DNS_LABEL).test(s)
    ? undefined
    : `is not a valid Kubernetes name: use lowercase letters, digits${what === 'subdomain' ? ', "-" and "."' : ' and "-"'}, starting and ending with a letter or digit (such as ${JSON.stringify(nameLike(s, what === 'subdomain'))})`;
const PULL_SECRET_MAX_LENGTH = 245;
/** os/architecture[/variant], lower case, as OCI platforms are written ("linux/arm64/v8"). */
export const PLATFORM = /^[a-z0-9_-]{1,32}\/[a-z0-9_-]{1,32}(?:\/[a-z0-9_-]{1,32})?$/;

/** A Go-style duration string ("90s", "10m", "1h30m"); also used by the cache's config file. */
/**
 * A list of patterns whose total size is checked before any of them is compiled, so a list of 64
 * large patterns costs an estimate, not 64 compilations.
 */
export function patternList(items: Schema<string[]>): Schema<string[]> {
  return {
    openApi: items.openApi,
    check(value, path, issues) {
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
        const problem = checkTagPatternList(value);
        if (problem !== undefined) {
          issues.push({ path, message: problem });
          return undefined;
        }
      }
      return items.check(value, path, issues);
    },
  };
}

export const duration = (description: string) =>
  string({
    description,
    example: '10m',
    validate: (s) => {
      const d = parseDuration(s);
      if (d.ok) return undefined;
      return d.tooLarge
        ? `is too large; the maximum is ${MAX_DURATION_TEXT}: use a shorter duration`
        : `is not a duration; write it like "90s", "10m" or "1h"`;
    },
  });

const labelSelector = object(
  {
    matchLabels: optional(
      stringMap({ description: 'Labels that must all be present with these values.', maxEntries: 64 }),
    ),
    matchExpressions: optional(
      list(
        object(
          {
            key: required(string({ description: 'The label key.', minLength: 1, maxLength: 317 })),
            operator: required(
              oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const, {
                description: 'How the key relates to the values.',
              }),
            ),
            values: optional(
              list(string({ description: 'A label value.', maxLength: 63 }), {
                description: 'Values for In and NotIn.',
                maxItems: 64,
              }),
            ),
          },
          { description: 'A label requirement.' },
        ),
        { description: 'Requirements that must all hold.', maxItems: 32 },
      ),
    ),
  },
  { description: 'A Kubernetes label selector; empty selects everything.' },
);

const mappingSchema = object(
  {
    from: required(
      string({
        description:
          'What to map: a repository prefix ending in "/" ("docker.io/", "quay.io/acme/"), one repository ("nginx", any tag), one image ("nginx:1.27" or "...@sha256:..."), or "*" for every registry.',
        minLength: 1,
        maxLength: LIMITS.referenceLength,
        example: 'docker.io/',
      }),
    ),
    to: required(
      stringOrList(
        string({
          description: 'A target of the same shape as from.',
          minLength: 1,
          maxLength: LIMITS.referenceLength,
          example: 'mirror.example/docker-mirror/',
        }),
        {
          description:
            'Where it goes. Several candidates need when: IfExists; the first one that has the image wins.',
          maxItems: LIMITS.candidates,
        },
      ),
    ),
    when: optional(
      oneOf(['Always', 'IfExists'] as const, {
        description:
          'Always rewrites; IfExists rewrites only to a candidate registry that has the image, else keeps the original.',
      }),
      'Always',
    ),
    naming: optional(
      oneOf(['prefix', 'zarf'] as const, {
        description:
          'prefix: target prefix + source path; zarf: the Zarf registry scheme <host>/<path>:<tag>-zarf-<crc32 of the source name>.',
      }),
      'prefix',
    ),
    onProbeError: optional(
      oneOf(['KeepOriginal', 'NextCandidate'] as const, {
        description:
          'With IfExists, when a candidate registry cannot be asked (unreachable, timeout, rate-limited): keep the original image, or try the next candidate.',
      }),
      'KeepOriginal',
    ),
    pullSecret: optional(
      string({
        description:
          "A kubernetes.io/dockerconfigjson Secret with the credentials for the targets, added to imagePullSecrets of pods this mapping rewrites. An ImageMap names a Secret in its own namespace; a ClusterImageMap one in pullmap's namespace, which pullmap copies as pullmap-<name> into every namespace the map selects.",
        minLength: 1,
        maxLength: PULL_SECRET_MAX_LENGTH,
        example: 'mirror-credentials',
        validate: (s) =>
          DNS_SUBDOMAIN.test(s)
            ? undefined
            : 'is not a Secret name; use lowercase letters, digits, "-" and ".", starting and ending with a letter or digit',
      }),
    ),
    fill: optional(
      object(
        {
          enabled: required(
            boolean({
              description:
                "Copy the images this mapping's pods use into its first target (by digest, byte for byte), so later pods pull them from there.",
            }),
          ),
          platforms: optional(
            list(
              string({
                description: 'A platform as os/architecture[/variant].',
                minLength: 3,
                maxLength: 98,
                example: 'linux/amd64',
                validate: (s) =>
                  PLATFORM.test(s)
                    ? undefined
                    : 'is not a platform; write it like "linux/amd64" or "linux/arm/v7"',
              }),
              {
                description:
                  'Copy only these platforms of a multi-platform image. The index itself (and its tag) is pushed only when it lists no other platform, so pods pinned to the index digest keep pulling from the source.',
                maxItems: 16,
              },
            ),
          ),
          secret: optional(
            string({
              description:
                "A kubernetes.io/dockerconfigjson Secret with push credentials for the target: in pullmap's own namespace for a ClusterImageMap, in the map's namespace for an ImageMap. Without it a ClusterImageMap's target is written with pullmap's own registry credentials, an ImageMap's with none (a tenant never pushes with pullmap's).",
              minLength: 1,
              maxLength: 253,
              example: 'mirror-push',
              validate: (s) =>
                DNS_SUBDOMAIN.test(s)
                  ? undefined
                  : 'is not a Secret name; use lowercase letters, digits, "-" and ".", starting and ending with a letter or digit',
            }),
          ),
        },
        {
          description:
            'Fill the first target: the pullmap leader copies images into it (never in admission).',
        },
      ),
    ),
  },
  { description: 'One mapping rule.' },
);

export const mapSpecSchema = object(
  {
    mappings: required(
      list(mappingSchema, {
        description: 'Ordered mapping rules; the most specific source wins.',
        minItems: 1,
        maxItems: LIMITS.mappings,
      }),
    ),
    mutableTags: optional(
      patternList(
        list(
          string({
            description: 'A regular expression (RE2 syntax) matched against the whole tag.',
            minLength: 1,
            maxLength: 256,
            validate: checkTagPattern,
          }),
          {
            description:
              'Tags that may move (like "latest" or "15"); images with them follow mutableTagPolicy.',
            maxItems: LIMITS.mutableTags,
          },
        ),
      ),
      [],
    ),
    mutableTagPolicy: optional(
      oneOf(['KeepOriginal', 'Map'] as const, {
        description: 'KeepOriginal leaves images with a mutable tag on their original registry.',
      }),
      'KeepOriginal',
    ),
    pullPolicyAlways: optional(
      oneOf(['Map', 'KeepOriginal'] as const, {
        description: 'What happens to containers with imagePullPolicy: Always.',
      }),
      'Map',
    ),
    namespaceSelector: optional(labelSelector),
    podSelector: optional(labelSelector),
    existence: optional(
      object(
        {
          positiveTTL: optional(duration('How long an "image exists" answer is trusted.')),
          negativeTTL: optional(duration('How long an "image is missing" answer is trusted.')),
        },
        { description: 'Overrides of the existence cache TTLs for this map.' },
      ),
    ),
    cache: optional(
      object(
        {
          enabled: required(boolean({ description: 'Route mapped images through the pullmap cache.' })),
          address: optional(
            string({
              description: 'Cache address (host:port) if not the one pullmap is configured with.',
              minLength: 1,
              maxLength: 255,
            }),
          ),
        },
        { description: 'Stage 2: <cache address>/<fully qualified mapped image>.' },
      ),
    ),
  },
  { description: 'The mapping rules of one map object.' },
);

const metadataSchema = object(
  {
    name: required(
      string({ description: 'Object name.', minLength: 1, maxLength: 253, validate: dnsName('subdomain') }),
    ),
    namespace: optional(
      string({
        description: 'Namespace (ImageMap only).',
        minLength: 1,
        maxLength: 63,
        validate: dnsName('label'),
      }),
    ),
    labels: optional(stringMap({ description: 'Labels.' })),
    annotations: optional(stringMap({ description: 'Annotations.' })),
  },
  { description: 'Kubernetes object metadata.', allowUnknown: true },
);

const conditionSchema = object(
  {
    type: required(string({ description: 'Condition type, "Ready".' })),
    status: required(oneOf(['True', 'False', 'Unknown'] as const, { description: 'Condition status.' })),
    reason: required(string({ description: 'Accepted, Conflict or Invalid.' })),
    message: required(string({ description: 'What is wrong and how to fix it.', maxLength: 32768 })),
    lastTransitionTime: optional(string({ description: 'When the status last changed (RFC 3339).' })),
    observedGeneration: optional(
      integer({ description: 'The generation this condition describes.', minimum: 0 }),
    ),
  },
  { description: 'A status condition.', allowUnknown: true },
);

export const mapStatusSchema = object(
  {
    conditions: optional(list(conditionSchema, { description: 'Current conditions.', maxItems: 8 })),
    observedGeneration: optional(
      integer({ description: 'The newest generation the controller has checked.', minimum: 0 }),
    ),
    servingGeneration: optional(
      integer({ description: 'The generation of this map the webhook uses, if any.', minimum: 0 }),
    ),
    mappings: optional(
      integer({ description: 'How many mappings the current spec has (a kubectl get column).', minimum: 0 }),
    ),
    fill: optional(
      object(
        {
          filled: required(
            integer({ description: 'Images copied into (or found in) their target.', minimum: 0 }),
          ),
          pending: required(integer({ description: 'Images waiting for or in a copy.', minimum: 0 })),
          failed: required(integer({ description: 'Images whose last copy failed.', minimum: 0 })),
          images: optional(
            list(
              object(
                {
                  image: required(string({ description: 'The source image.', maxLength: 600 })),
                  target: required(string({ description: 'Where it is copied.', maxLength: 600 })),
                  state: required(
                    oneOf(['Filled', 'Partial', 'Pending', 'Failed'] as const, {
                      description:
                        'Filled: the target has it; Partial: the selected platforms only (index not pushed); Pending; Failed.',
                    }),
                  ),
                  digest: optional(string({ description: 'The digest copied.', maxLength: 140 })),
                  lastError: optional(string({ description: 'Why the last copy failed.', maxLength: 1024 })),
                  time: optional(string({ description: 'When the state last changed (RFC 3339).' })),
                },
                { description: 'One image the map fills.', allowUnknown: true },
              ),
              { description: 'The most recent images (failed first), at most 50.', maxItems: 50 },
            ),
          ),
        },
        {
          description: "What the fill loop did for this map's mappings with fill enabled.",
          allowUnknown: true,
        },
      ),
    ),
    // Kept in status so that a restarted controller still serves a map whose newest generation is
    // rejected: the last accepted spec survives in the API, not only in one replica's memory.
    lastAccepted: optional(
      object(
        {
          generation: required(integer({ description: 'The accepted generation.', minimum: 0 })),
          spec: required(mapSpecSchema),
        },
        {
          description:
            'The last generation the controller accepted, which keeps serving if a later one is rejected.',
        },
      ),
    ),
  },
  { description: 'What the controller decided about this map.', allowUnknown: true },
);

export const mapObjectSchema = object(
  {
    apiVersion: required(oneOf([API_VERSION] as const, { description: 'API version.' })),
    kind: required(oneOf(KINDS, { description: 'ImageMap or ClusterImageMap.' })),
    metadata: required(metadataSchema),
    spec: required(mapSpecSchema),
    status: optional(mapStatusSchema),
  },
  { description: 'An ImageMap or ClusterImageMap.' },
);

export type Mapping = Infer<typeof mappingSchema>;
export type MapSpec = Infer<typeof mapSpecSchema>;
export type LabelSelector = Infer<typeof labelSelector>;
export type MapObject = Infer<typeof mapObjectSchema> & {
  metadata: { creationTimestamp?: string; generation?: number; uid?: string; resourceVersion?: string };
};
