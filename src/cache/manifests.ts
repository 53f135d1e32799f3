// Manifests through the cache. By digest: stored once, served forever, never asked about again. By tag:
// the refresh policy says when upstream is asked again (a HEAD, or a GET where the registry refuses HEAD,
// compared by digest); when asking fails in a way the config allows, the cached manifest is served and
// marked stale.
import { isDue, type Refresh, refreshFor } from '../core/cache/policy.ts';
import type { Result } from '../core/errors.ts';
import type { ProbeOutcome } from '../core/facts.ts';
import type { ImageReference } from '../core/reference/index.ts';
import type { RegistryClient } from '../registry/client.ts';
import { outcomeOf, type RegistryError, type RegistryErrorCode } from '../registry/errors.ts';
import type { CacheConfig, StaleKind } from './config.ts';
import { StoreUnavailableError, StoreWriteError } from './errors.ts';
import type { CacheStore, StoredManifest } from './store/types.ts';

export type ManifestSource = 'cache' | 'upstream';

export interface ManifestAnswer {
  readonly manifest: StoredManifest;
  readonly source: ManifestSource;
  /** Set when upstream could not be asked and the cached copy was served anyway. */
  readonly stale?: StaleKind | undefined;
  readonly staleError?: RegistryError | undefined;
}

export type RefreshResult = 'unchanged' | 'changed' | 'failed';

export interface ManifestObserver {
  refreshed?(result: RefreshResult): void;
  fetched?(): void;
  /** A manifest or tag record was served but could not be kept (`error` says why). */
  notKept?(what: 'manifest' | 'tag', error: StoreWriteError): void;
}

/** The stale-if-error switch for each outcome a failure stands for; Invalid answers are never served stale. */
const STALE_BY_OUTCOME: Readonly<Record<ProbeOutcome, StaleKind | undefined>> = {
  Available: undefined,
  NotFound: 'notFound',
  Unauthorized: 'unauthorized',
  RateLimited: 'rateLimited',
  Unreachable: 'unreachable',
  Timeout: 'timeout',
  Invalid: undefined,
};

/**
 * Which stale-if-error switch covers a failed revalidation; undefined: never served stale. Derived from
 * the outcome the registry errors classify each code as; a 5xx (Unreachable too) has its own switch.
 */
export function staleKindOf(code: RegistryErrorCode): StaleKind | undefined {
  return code === 'REG_SERVER_ERROR' ? 'serverError' : STALE_BY_OUTCOME[outcomeOf(code)];
}

type Answer = Result<ManifestAnswer, RegistryError | StoreWriteError>;

/** A failed store write as the cache's own typed failure (a bucket that is down stays what it is). */
function storeFailure(what: string, err: unknown): StoreWriteError {
  if (err instanceof StoreUnavailableError) throw err;
  return err instanceof StoreWriteError ? err : new StoreWriteError(what, err);
}

export class ManifestResolver {
  readonly #store: CacheStore;
  readonly #client: RegistryClient;
  readonly #config: CacheConfig;
  readonly #now: () => number;
  readonly #observer: ManifestObserver;
  /** One upstream conversation per tag or digest at a time; others wait for its answer. */
  readonly #inFlight = new Map<string, Promise<Answer>>();

  constructor(
    store: CacheStore,
    client: RegistryClient,
    config: CacheConfig,
    now: () => number,
    observer: ManifestObserver = {},
  ) {
    this.#store = store;
    this.#client = client;
    this.#config = config;
    this.#now = now;
    this.#observer = observer;
  }

  refreshFor(name: string, tag: string): Refresh {
    return refreshFor(this.#config.refreshRules, this.#config.refreshDefault, name, tag);
  }

  async byDigest(registry: string, repository: string, digest: string): Promise<Answer> {
    const stored = await this.#store.getManifest(digest);
    if (stored) return { ok: true, value: { manifest: stored, source: 'cache' } };
    return this.#once(`@${digest}`, () => this.#fetch({ registry, repository, tag: undefined, digest }));
  }

  async byTag(registry: string, repository: string, tag: string): Promise<Answer> {
    const name = `${registry}/${repository}`;
    const record = await this.#store.getTag(name, tag);
    const cached = record && (await this.#store.getManifest(record.digest));
    if (record && cached && !isDue(this.refreshFor(name, tag), record.checkedAt, this.#now()))
      return { ok: true, value: { manifest: cached, source: 'cache' } };
    return this.#once(`${name}:${tag}`, async () => {
      const ref: ImageReference = { registry, repository, tag, digest: undefined };
      if (!record || !cached) {
        const fetched = await this.#fetch(ref);
        if (fetched.ok) await this.#tag(name, tag, fetched.value.manifest.digest);
        return fetched;
      }
      const answer = await this.#revalidate(ref, cached);
      if (answer.ok) {
        await this.#tag(name, tag, answer.value.manifest.digest);
        this.#observer.refreshed?.(answer.value.manifest.digest === cached.digest ? 'unchanged' : 'changed');
        return answer;
      }
      this.#observer.refreshed?.('failed');
      if (answer.error instanceof StoreWriteError) return answer;
      const kind = staleKindOf(answer.error.code);
      if (kind !== undefined && this.#config.staleIfError[kind])
        return {
          ok: true,
          value: { manifest: cached, source: 'cache', stale: kind, staleError: answer.error },
        };
      return answer;
    });
  }

  async #revalidate(ref: ImageReference, cached: StoredManifest): Promise<Answer> {
    // When a timeout may be answered with the cached copy, a hung upstream gets refresh.timeout, not
    // the whole upstream timeout; otherwise the client would wait for the full timeout to get an error.
    const signal = this.#config.staleIfError.timeout
      ? AbortSignal.timeout(this.#config.revalidateTimeoutMs)
      : undefined;
    // Registries that refuse manifest HEAD (405/501) are asked with GET; the client remembers the host.
    const head = await this.#client.manifestExists(ref, { signal });
    if (!head.ok) return head;
    const digest = head.value.digest;
    if (digest === cached.digest) return { ok: true, value: { manifest: cached, source: 'cache' } };
    if (digest === undefined) return this.#fetch(ref, signal);
    const stored = await this.#store.getManifest(digest);
    if (stored) return { ok: true, value: { manifest: stored, source: 'cache' } };
    return this.#fetch({ ...ref, digest }, signal);
  }

  async #fetch(ref: ImageReference, signal?: AbortSignal): Promise<Answer> {
    this.#observer.fetched?.();
    const got = await this.#client.getManifest(ref, { signal });
    if (!got.ok) return got;
    const manifest: StoredManifest = {
      digest: got.value.digest,
      mediaType: got.value.mediaType,
      bytes: got.value.bytes,
    };
    try {
      await this.#store.putManifest(manifest);
    } catch (err) {
      const error = storeFailure('manifest', err);
      // A full store still serves what upstream gave (as blobs stream through); one that cannot be
      // written at all (read-only, permissions) answers 503, as a blob miss does.
      if (!error.noSpace) return { ok: false, error };
      this.#observer.notKept?.('manifest', error);
    }
    return { ok: true, value: { manifest, source: 'upstream' } };
  }

  /** Records when upstream last gave the tag's digest; a record that cannot be written is only a memo lost. */
  async #tag(name: string, tag: string, digest: string): Promise<void> {
    try {
      await this.#store.putTag({ name, tag, digest, checkedAt: this.#now() });
    } catch (err) {
      this.#observer.notKept?.('tag', storeFailure('tag record', err));
    }
  }

  #once(key: string, work: () => Promise<Answer>): Promise<Answer> {
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = work().finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }
}
