// The realm registry: a bounded cache of RealmContexts (each with its Providers), built on first
// use and dropped when the realm changes. Changes reach every instance through LISTEN/NOTIFY.
import type { Provider } from 'oidc-provider';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { Logger } from '../observability/logger.ts';
import { buildProvider, type ProviderHooks } from '../oidc/provider.ts';
import type { Store } from '../store/db.ts';
import { findRealmByName } from '../store/realms.ts';
import { RealmContext } from './context.ts';

export const REALM_CHANGED_CHANNEL = 'cloakroom_realm_changed';

/** Providers per realm: one per public origin the realm is reached at (bounded). */
const MAX_ORIGINS_PER_REALM = 8;

export class RealmRegistry {
  readonly #store: Store;
  readonly #box: SecretBox;
  readonly #hooks: ProviderHooks;
  readonly #logger: Logger;
  readonly #capacity: number;
  /** Insertion order = recency order (re-inserted on hit): a small LRU. */
  readonly #contexts = new Map<string, Promise<RealmContext | undefined>>();
  readonly #callbacks = new WeakMap<Provider, ReturnType<Provider['callback']>>();

  constructor(store: Store, box: SecretBox, hooks: ProviderHooks, logger: Logger, capacity: number) {
    this.#store = store;
    this.#box = box;
    this.#hooks = hooks;
    this.#logger = logger;
    this.#capacity = capacity;
  }

  /** What the Providers report to (events, metrics, errors); the token hot path reports there too. */
  get hooks(): ProviderHooks {
    return this.#hooks;
  }

  /** Subscribes to change notifications from every instance on the database. */
  async start(): Promise<void> {
    await this.#store.listen(REALM_CHANGED_CHANNEL, (realmId) => this.#evict(realmId));
  }

  async get(name: string): Promise<RealmContext | undefined> {
    if (name.includes('\0') || name.length > 255) return undefined;
    const cached = this.#contexts.get(name);
    if (cached) {
      this.#contexts.delete(name);
      this.#contexts.set(name, cached);
      return cached;
    }
    const loading = this.#load(name);
    this.#contexts.set(name, loading);
    // Unknown realms and failed loads are not cached: the next request asks the database again.
    loading.then((ctx) => { if (!ctx) this.#dropIf(name, loading); }, () => this.#dropIf(name, loading));
    while (this.#contexts.size > this.#capacity) {
      const oldest = this.#contexts.keys().next().value;
      if (oldest === undefined) break;
      this.#contexts.delete(oldest);
    }
    return loading;
  }

  async #load(name: string): Promise<RealmContext | undefined> {
    const realm = await findRealmByName(this.#store.db, name);
    if (!realm) return undefined;
    return RealmContext.load(this.#store.db, this.#box, realm);
  }

  #dropIf(name: string, entry: Promise<RealmContext | undefined>): void {
    if (this.#contexts.get(name) === entry) this.#contexts.delete(name);
  }

  /** The realm's Provider for an issuer (origin + path), built on first use. */
  provider(realm: RealmContext, issuer: string): Provider {
    let provider = realm.providers.get(issuer);
    if (!provider) {
      if (realm.providers.size >= MAX_ORIGINS_PER_REALM) realm.providers.clear();
      provider = buildProvider(realm, issuer, this.#hooks);
      realm.providers.set(issuer, provider);
    }
    return provider;
  }

  /** provider.callback() builds a Koa handler; build it once per Provider. */
  handler(provider: Provider): ReturnType<Provider['callback']> {
    let handler = this.#callbacks.get(provider);
    if (!handler) {
      handler = provider.callback();
      this.#callbacks.set(provider, handler);
    }
    return handler;
  }

  /** Call after changing anything a realm's context caches (settings, keys, clients, roles...). */
  async realmChanged(realmId: string): Promise<void> {
    this.#evict(realmId);
    await this.#store.notify(REALM_CHANGED_CHANNEL, realmId);
  }

  #evict(realmId: string): void {
    for (const [name, entry] of this.#contexts) {
      entry.then((ctx) => {
        if (ctx?.id === realmId) {
          this.#dropIf(name, entry);
          this.#logger.debug({ realm: name }, 'realm cache evicted');
        }
      }, () => {});
    }
  }

  clear(): void {
    this.#contexts.clear();
  }
}
