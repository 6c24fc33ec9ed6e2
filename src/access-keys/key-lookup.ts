// Access keys at request time: the key rows, their users' token subjects and the realm's default
// client scopes are cached in the RealmContext, so exchanging a key reads nothing from the database
// once warm. Admin writes to keys and their users call registry.realmChanged, which drops the whole
// context (on every instance). Entries also expire after KEY_CACHE_TTL_MS, bounding staleness when a
// change comes without a realm change (token content built from a cached subject: twice that).
import type { Logger } from '../observability/logger.ts';
import { grantedScopes, loadSubject, mappersFor, scopeString, tokenClaims, type SubjectBase } from '../oidc/keycloak-token.ts';
import type { MapperModel } from '../oidc/protocol-mappers.ts';
import type { ClientModel, ClientScopeModel, RealmContext } from '../realms/context.ts';
import type { Db } from '../store/db.ts';
import type { Client } from '../store/schema.ts';
import { ACCESS_KEY_PATTERN, checkAccessKey, LastUsedRecorder, type AccessKeyFailure } from './access-keys.ts';

/** Longest time a cached key or subject is trusted without a realm change. */
export const KEY_CACHE_TTL_MS = 30_000;

/** Bound against key-id spraying: past this many cached ids the cache starts over. */
const MAX_CACHED = 10_000;

export type KeyEntry = {
  id: string;
  userId: string;
  username: string;
  userEnabled: boolean;
  secretDigest: string;
  enabled: boolean;
  expiresAt: Date | null;
};

export type AccessKeyAuthentication =
  | { ok: true; key: KeyEntry }
  | { ok: false; failure: AccessKeyFailure; key: KeyEntry | undefined };

type Cached<T> = { value: Promise<T>; loadedAt: number };

/**
 * What tokens of access keys need when no client is involved (client_credentials with a key):
 * the realm's default client scopes (default and optional) with their mappers, as a client
 * model with full scope, no own mappers and no web origins.
 */
export type KeyClientProfile = { client: ClientModel; allMappers: MapperModel[] };

export type KeyTokenContent = { aud: unknown; claims: Record<string, unknown>; scope: string };

class RealmAccessKeys {
  readonly #realm: RealmContext;
  readonly #keys = new Map<string, Cached<KeyEntry | undefined>>();
  readonly #subjects = new Map<string, Cached<SubjectBase | undefined>>();
  readonly #contents = new Map<string, Cached<KeyTokenContent | undefined>>();
  #profile: Promise<KeyClientProfile> | undefined;

  constructor(realm: RealmContext) {
    this.#realm = realm;
  }

  key(keyId: string): Promise<KeyEntry | undefined> {
    // Only well-formed ids can name a key: anything else is a miss without a query.
    if (!ACCESS_KEY_PATTERN.test(keyId)) return Promise.resolve(undefined);
    return cached(this.#keys, keyId, () => this.#loadKey(keyId));
  }

  /** The key user's token subject for `profile().client` (roles, groups, attributes). */
  subject(userId: string): Promise<SubjectBase | undefined> {
    return cached(this.#subjects, userId, async () => {
      const { client, allMappers } = await this.profile();
      // Full scope: roles are not filtered by scope, so one subject serves every scope set;
      // groups are loaded when any default or optional scope maps them.
      return loadSubject(this.#realm, client, userId, [], allMappers);
    });
  }

  /**
   * The mapped claims of a client_credentials token of `key` (everything but exp, iat, jti, iss,
   * sub, typ, azp), cached per key, granted scopes and client address: the mappers' inputs.
   */
  async tokenContent(key: KeyEntry, requestedScope: string | undefined, ipAddress: string): Promise<KeyTokenContent | undefined> {
    const { client } = await this.profile();
    const scopes = grantedScopes(client, requestedScope);
    // Keyed by what was granted, not by the raw request: bounded whatever clients send.
    const scope = scopeString(scopes, requestedScope);
    return cached(this.#contents, `${key.id} ${scope} ${scopes.map((s) => s.id).join(',')} ${ipAddress}`, async () => {
      const subject = await this.subject(key.userId);
      if (!subject) return undefined;
      const { aud, sub: _sub, ...claims } = tokenClaims({
        ...subject,
        clientId: key.id,
        sessionNotes: { clientHost: ipAddress, clientAddress: ipAddress, client_id: key.id },
        acr: '1',
      }, mappersFor(client, scopes), 'access');
      return { aud, claims, scope };
    });
  }

  profile(): Promise<KeyClientProfile> {
    if (!this.#profile) {
      this.#profile = loadProfile(this.#realm);
      this.#profile.catch(() => { this.#profile = undefined; });
    }
    return this.#profile;
  }

  async #loadKey(keyId: string): Promise<KeyEntry | undefined> {
    const row = await this.#realm.db.selectFrom('access_keys').innerJoin('users', 'users.id', 'access_keys.user_id')
      .select(['access_keys.id', 'access_keys.user_id', 'access_keys.secret_digest', 'access_keys.enabled', 'access_keys.expires_at',
        'users.username', 'users.enabled as user_enabled'])
      .where('access_keys.realm_id', '=', this.#realm.id).where('users.realm_id', '=', this.#realm.id)
      .where('access_keys.id', '=', keyId)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      id: row.id, userId: row.user_id, username: row.username, userEnabled: row.user_enabled,
      secretDigest: row.secret_digest, enabled: row.enabled, expiresAt: row.expires_at ? new Date(row.expires_at) : null,
    };
  }
}

function cached<T>(map: Map<string, Cached<T>>, key: string, load: () => Promise<T>): Promise<T> {
  const now = Date.now();
  const hit = map.get(key);
  if (hit && now - hit.loadedAt < KEY_CACHE_TTL_MS) return hit.value;
  if (map.size >= MAX_CACHED) map.clear();
  const value = load();
  const entry = { value, loadedAt: now };
  map.set(key, entry);
  value.catch(() => { if (map.get(key) === entry) map.delete(key); });
  return value;
}

async function loadProfile(realm: RealmContext): Promise<KeyClientProfile> {
  const scopes = await realm.db.selectFrom('realm_default_client_scopes')
    .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
    .select(['client_scopes.id', 'client_scopes.name', 'client_scopes.attributes', 'realm_default_client_scopes.default_scope'])
    .where('realm_default_client_scopes.realm_id', '=', realm.id).where('client_scopes.protocol', '=', 'openid-connect')
    .orderBy('client_scopes.name')
    .execute();
  const mappers = scopes.length === 0 ? [] : await realm.db.selectFrom('protocol_mappers').select(['client_scope_id', 'name', 'protocol_mapper', 'config'])
    .where('client_scope_id', 'in', scopes.map((s) => s.id)).orderBy('name').execute();
  const scopeMappers = new Map<string, MapperModel[]>();
  for (const m of mappers) {
    if (!m.client_scope_id) continue;
    scopeMappers.set(m.client_scope_id, [...(scopeMappers.get(m.client_scope_id) ?? []), { name: m.name, protocolMapper: m.protocol_mapper, config: m.config }]);
  }
  const toScope = (s: (typeof scopes)[number]): ClientScopeModel => ({
    id: s.id, name: s.name, includeInTokenScope: s.attributes['include.in.token.scope'] !== 'false',
  });
  const row: Client = {
    id: '', realm_id: realm.id, client_id: '', name: null, description: null, enabled: true, protocol: 'openid-connect',
    public_client: false, bearer_only: false, client_authenticator_type: 'access-key', secret_sealed: null,
    standard_flow_enabled: false, implicit_flow_enabled: false, direct_access_grants_enabled: false, service_accounts_enabled: false,
    consent_required: false, full_scope_allowed: true, frontchannel_logout: false, root_url: null, base_url: null, admin_url: null,
    redirect_uris: [], web_origins: [], attributes: {}, extra: {}, created_at: new Date(0),
  };
  const client: ClientModel = {
    id: '', clientId: '', row, secret: null,
    defaultScopes: scopes.filter((s) => s.default_scope).map(toScope),
    optionalScopes: scopes.filter((s) => !s.default_scope).map(toScope),
    ownMappers: [], scopeMappers, metadata: {},
  };
  return { client, allMappers: mappers.map((m) => ({ name: m.name, protocolMapper: m.protocol_mapper, config: m.config })) };
}

export function accessKeysOf(realm: RealmContext): RealmAccessKeys {
  return realm.memoSync('access-keys', () => new RealmAccessKeys(realm));
}

/**
 * Checks a presented key id and secret: the same work (one cached lookup, one digest, one
 * comparison) whether the key is unknown, the secret wrong, or everything right.
 */
export async function authenticateAccessKey(realm: RealmContext, keyId: string, secret: string): Promise<AccessKeyAuthentication> {
  const key = await accessKeysOf(realm).key(keyId);
  const stored = key ? { secret_digest: key.secretDigest, enabled: key.enabled, expires_at: key.expiresAt } : undefined;
  const failure = checkAccessKey(realm.box, stored, secret, key?.userEnabled ?? false);
  if (failure) return { ok: false, failure, key };
  recordKeyUse(realm.db, key!.id);
  return { ok: true, key: key! };
}

// ---------------------------------------------------------------------------------------------
// Last-used times: one recorder per database (per server), so each key is written at most once a
// minute per instance whichever way it was used.

const recorders = new WeakMap<Db, { recorder: LastUsedRecorder; logger: Logger | undefined }>();

/** Called once per server (createApp) so failed last-used writes are logged. */
export function trackAccessKeyUse(db: Db, logger: Logger, intervalMs?: number): void {
  const existing = recorders.get(db);
  if (existing) existing.logger = logger;
  else recorders.set(db, { recorder: new LastUsedRecorder(db, intervalMs), logger });
}

function recordKeyUse(db: Db, keyId: string): void {
  let entry = recorders.get(db);
  if (!entry) {
    entry = { recorder: new LastUsedRecorder(db), logger: undefined };
    recorders.set(db, entry);
  }
  const { logger } = entry;
  entry.recorder.used(keyId, (err) => logger?.warn({ err }, 'could not record access key use'));
}
