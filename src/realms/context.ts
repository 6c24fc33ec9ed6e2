// Everything one realm needs at request time, loaded once and cached by the registry: the realm
// row and settings, its keys, its clients (as oidc-provider metadata and as Keycloak models) and
// one oidc-provider Provider per public origin. Dropped whole when the realm changes.
import type { Provider } from 'oidc-provider';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { MapperModel } from '../oidc/protocol-mappers.ts';
import { findClientByClientId, listClientScopeLinks, listProtocolMappers } from '../store/clients.ts';
import type { Db } from '../store/db.ts';
import { userRoleRefs, type EffectiveRole, type UserRoleRefs } from '../store/roles.ts';
import type { Client, Realm } from '../store/schema.ts';
import { loadRealmKeys, type RealmKeys } from './keys.ts';
import { RoleGraph } from './role-graph.ts';
import { parseRealmSettings, type RealmSettings } from './settings.ts';

export type ClientScopeModel = { id: string; name: string; includeInTokenScope: boolean };

export type ClientModel = {
  id: string;
  clientId: string;
  row: Client;
  /** Plain secret, held only in memory for oidc-provider's constant-time comparison. */
  secret: string | null;
  defaultScopes: ClientScopeModel[];
  optionalScopes: ClientScopeModel[];
  /** The client's own mappers and those of every scope linked to it, by owner. */
  ownMappers: MapperModel[];
  scopeMappers: Map<string, MapperModel[]>;
  /** oidc-provider client metadata. */
  metadata: Record<string, unknown>;
};

const toMapper = (row: { name: string; protocol_mapper: string; config: Record<string, string> }): MapperModel => ({
  name: row.name, protocolMapper: row.protocol_mapper, config: row.config,
});

/**
 * Absolute redirect URIs. Keycloak resolves relative ones ('/*') against the client's root URL;
 * trailing-'*' wildcards stay in and are matched by Keycloak's rule (client-policy.ts).
 */
export function absoluteRedirectUris(uris: string[], rootUrl: string | null): string[] {
  const out: string[] = [];
  for (const uri of uris) {
    const resolved = uri.startsWith('/') && rootUrl ? rootUrl.replace(/\/$/, '') + uri : uri;
    try {
      const { protocol } = new URL(resolved);
      if (protocol !== 'javascript:' && protocol !== 'data:') out.push(resolved);
    } catch { /* relative without a root URL, or malformed: not usable */ }
  }
  return out;
}

/** Keycloak client -> oidc-provider client metadata. */
function clientMetadata(row: Client, secret: string | null, scopes: string[], realmSettings: RealmSettings): Record<string, unknown> {
  const redirectUris = absoluteRedirectUris(row.redirect_uris ?? [], row.root_url);
  // Browser flows need a redirect URI; without one the client can still use the back-channel grants.
  const browser = redirectUris.length > 0;
  const grantTypes: string[] = [];
  const responseTypes: string[] = [];
  if (row.standard_flow_enabled && browser) {
    grantTypes.push('authorization_code', 'refresh_token');
    responseTypes.push('code');
  }
  if (row.implicit_flow_enabled && browser) {
    grantTypes.push('implicit');
    responseTypes.push('id_token', 'id_token token');
    if (row.standard_flow_enabled) responseTypes.push('code id_token', 'code token', 'code id_token token');
  }
  if (row.service_accounts_enabled && !row.public_client) grantTypes.push('client_credentials');
  if (row.direct_access_grants_enabled) grantTypes.push('password', 'refresh_token');
  // Token exchange (src/oidc/grants/token-exchange.ts) is open to every client that can get tokens;
  // the grant itself refuses clients missing from the identity provider's tokenExchangeClients.
  if (!row.bearer_only) grantTypes.push('urn:ietf:params:oauth:grant-type:token-exchange');

  const publicClient = row.public_client;
  const authMethod = publicClient ? 'none' : row.client_authenticator_type === 'client-jwt' ? 'private_key_jwt' : 'client_secret_basic';
  return {
    client_id: row.client_id,
    ...(secret && !publicClient ? { client_secret: secret } : {}),
    ...(row.name ? { client_name: row.name } : {}),
    grant_types: [...new Set(grantTypes)],
    response_types: [...new Set(responseTypes)],
    redirect_uris: browser ? redirectUris : [],
    token_endpoint_auth_method: authMethod,
    id_token_signed_response_alg: row.attributes['id.token.signed.response.alg'] || realmSettings.defaultSignatureAlgorithm,
    scope: ['openid', ...scopes].join(' '),
  };
}

export class RealmContext {
  readonly db: Db;
  readonly box: SecretBox;
  readonly realm: Realm;
  readonly settings: RealmSettings;
  readonly keys: RealmKeys;
  /** Names of the realm's OIDC client scopes (for discovery's scopes_supported). */
  readonly scopeNames: string[];
  readonly providers = new Map<string, Provider>();
  readonly #clients = new Map<string, Promise<ClientModel | undefined>>();
  readonly #loaded = new Map<string, ClientModel>();
  /** Per-context scratch caches for derived data (service-account subjects...), dropped with it. */
  readonly derived = new Map<string, Promise<unknown>>();

  private constructor(db: Db, box: SecretBox, realm: Realm, keys: RealmKeys, scopeNames: string[]) {
    this.db = db;
    this.box = box;
    this.realm = realm;
    this.settings = parseRealmSettings(realm.settings);
    this.keys = keys;
    this.scopeNames = scopeNames;
  }

  static async load(db: Db, box: SecretBox, realm: Realm): Promise<RealmContext> {
    const [keys, scopes] = await Promise.all([
      loadRealmKeys(db, box, realm.id),
      db.selectFrom('client_scopes').select('name').where('realm_id', '=', realm.id).where('protocol', '=', 'openid-connect').orderBy('name').execute(),
    ]);
    return new RealmContext(db, box, realm, keys, scopes.map((s) => s.name));
  }

  get id(): string {
    return this.realm.id;
  }

  get name(): string {
    return this.realm.name;
  }

  /** Cached per clientId, misses included (an unknown client id costs one query per context). */
  client(clientId: string): Promise<ClientModel | undefined> {
    // PostgreSQL text cannot hold NUL, and no client id is that long: not a client, no query.
    if (clientId.includes('\0') || clientId.length > 255) return Promise.resolve(undefined);
    let entry = this.#clients.get(clientId);
    if (!entry) {
      entry = this.#loadClient(clientId);
      entry.catch(() => this.#clients.delete(clientId));
      entry.then((model) => model && this.#loaded.set(clientId, model), () => {});
      if (this.#clients.size > 10_000) {
        // Bound the cache against client-id spraying.
        this.#clients.clear();
        this.#loaded.clear();
      }
      this.#clients.set(clientId, entry);
    }
    return entry;
  }

  /** A client already loaded by `client()`, for the synchronous hooks of oidc-provider. */
  loadedClient(clientId: string): ClientModel | undefined {
    return this.#loaded.get(clientId);
  }

  async #loadClient(clientId: string): Promise<ClientModel | undefined> {
    const row = await findClientByClientId(this.db, this.realm.id, clientId);
    if (!row || !row.enabled || row.protocol !== 'openid-connect') return undefined;
    const links = await listClientScopeLinks(this.db, row.id);
    const mappers = await listProtocolMappers(this.db, row.id, links.map((l) => l.id));
    const toScope = (l: (typeof links)[number]): ClientScopeModel => ({
      id: l.id, name: l.name, includeInTokenScope: l.attributes['include.in.token.scope'] !== 'false',
    });
    const scopeMappers = new Map<string, MapperModel[]>();
    for (const m of mappers) {
      if (!m.client_scope_id) continue;
      scopeMappers.set(m.client_scope_id, [...(scopeMappers.get(m.client_scope_id) ?? []), toMapper(m)]);
    }
    const secret = row.secret_sealed ? this.box.open(row.secret_sealed) : null;
    return {
      id: row.id,
      clientId: row.client_id,
      row,
      secret,
      defaultScopes: links.filter((l) => l.defaultScope).map(toScope),
      optionalScopes: links.filter((l) => !l.defaultScope).map(toScope),
      ownMappers: mappers.filter((m) => m.client_id === row.id).map(toMapper),
      scopeMappers,
      metadata: clientMetadata(row, secret, links.map((l) => l.name), this.settings),
    };
  }

  #roleGraph: Promise<RoleGraph> | undefined;

  /**
   * The realm's role graph, at least as new as `version` (read with the user's role ids): the
   * cached one while it is, else a load started after it was found stale, which sees everything
   * committed before `version` was read (requests that find the same stale graph share it). Its
   * own version is not compared again: a realm deleted meanwhile loads as version 0.
   */
  async roleGraph(version: number): Promise<RoleGraph> {
    const current = this.#roleGraph ??= this.#loadRoleGraph();
    const graph = await current;
    if (graph.version >= version) return graph;
    if (this.#roleGraph === current || this.#roleGraph === undefined) this.#roleGraph = this.#loadRoleGraph();
    return this.#roleGraph;
  }

  #loadRoleGraph(): Promise<RoleGraph> {
    const loading = RoleGraph.load(this.db, this.realm.id);
    loading.catch(() => { if (this.#roleGraph === loading) this.#roleGraph = undefined; });
    return loading;
  }

  /** A user's effective roles: their role and group ids from the database, expanded in memory. */
  async effectiveUserRoles(userId: string): Promise<readonly EffectiveRole[]> {
    return this.effectiveRolesOf(await userRoleRefs(this.db, this.realm.id, userId));
  }

  async effectiveRolesOf(refs: UserRoleRefs): Promise<readonly EffectiveRole[]> {
    return (await this.roleGraph(refs.graphVersion)).effectiveRoles(refs.roleIds, refs.groupIds);
  }

  readonly #syncMemo = new Map<string, unknown>();

  /** Memoizes synchronously built per-realm data (key sets...) for the lifetime of this context. */
  memoSync<T>(key: string, build: () => T): T {
    if (!this.#syncMemo.has(key)) this.#syncMemo.set(key, build());
    return this.#syncMemo.get(key) as T;
  }

  /** Memoizes derived per-realm data for the lifetime of this context. */
  memo<T>(key: string, load: () => Promise<T>): Promise<T> {
    let entry = this.derived.get(key) as Promise<T> | undefined;
    if (!entry) {
      entry = load();
      entry.catch(() => this.derived.delete(key));
      this.derived.set(key, entry);
    }
    return entry;
  }
}
