// Admin REST API: clients (Keycloak's ClientsResource and ClientResource): list, create, read,
// update, delete; the client secret, the service-account user, linked client scopes, user and
// offline sessions, and the "evaluate scopes" examples built by the same code as real tokens.
// Protocol mappers and scope mappings are shared with client scopes (protocol-mappers.ts,
// scope-mappings.ts); client roles live in roles.ts.
import { z } from 'zod';

import { newClientSecret, newId } from '../crypto/random.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { publicOrigin } from '../http/origin.ts';
import { tokenClaims } from '../oidc/keycloak-token.ts';
import { accessTokenPayload, idTokenPayload, loadUserTokenSubject, type UserTokenRequest } from '../oidc/user-tokens.ts';
import { protocolMapperRep } from '../realms/representation.ts';
import type { Db } from '../store/db.ts';
import { roleScopeIds } from '../store/roles.ts';
import type { Client, Realm, UserSession } from '../store/schema.ts';
import { findUserById } from '../store/users.ts';
import { AdminAuthError } from './auth.ts';
import { insertMappers, listMappers, mapperRepresentation, registerProtocolMapperRoutes, replaceMappers, type MapperOwner, type OwnerRoutes } from './protocol-mappers.ts';
import { UUID, defaultRoleOf } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';
import { registerScopeMappingRoutes, roleRepresentation, rolesQuery } from './scope-mappings.ts';
import { userRepresentation } from './users.ts';

const OIDC = 'openid-connect';
const SECRET_MASK = '**********';
const SERVICE_ACCOUNT_SCOPE = 'service_account';
const SECRET_CREATION_TIME = 'client.secret.creation.time';

/** Keycloak's built-in clients, which ClientManager refuses to delete. */
const INTERNAL_CLIENTS = new Set(['account', 'admin-cli', 'broker', 'realm-management', 'security-admin-console']);

/** Attribute values are strings in Keycloak; null removes the attribute on update. */
const attributeValue = z.union([z.string(), z.number(), z.boolean(), z.null()]).transform((v) => (v === null ? null : String(v)));

/**
 * A ClientRepresentation body. Every field is optional: Keycloak treats absent and null alike
 * ("not sent") and an update keeps what is not sent. Unknown fields are kept in clients.extra.
 */
const clientBody = z.object({
  id: z.string().nullish(),
  clientId: z.string().min(1).max(255).nullish(),
  name: z.string().nullish(),
  description: z.string().nullish(),
  rootUrl: z.string().nullish(),
  baseUrl: z.string().nullish(),
  adminUrl: z.string().nullish(),
  enabled: z.boolean().nullish(),
  protocol: z.string().min(1).nullish(),
  clientAuthenticatorType: z.string().min(1).nullish(),
  secret: z.string().nullish(),
  publicClient: z.boolean().nullish(),
  bearerOnly: z.boolean().nullish(),
  standardFlowEnabled: z.boolean().nullish(),
  implicitFlowEnabled: z.boolean().nullish(),
  directAccessGrantsEnabled: z.boolean().nullish(),
  serviceAccountsEnabled: z.boolean().nullish(),
  consentRequired: z.boolean().nullish(),
  fullScopeAllowed: z.boolean().nullish(),
  frontchannelLogout: z.boolean().nullish(),
  redirectUris: z.array(z.string()).nullish(),
  webOrigins: z.array(z.string()).nullish(),
  attributes: z.record(z.string(), attributeValue).nullish(),
  defaultClientScopes: z.array(z.string()).nullish(),
  optionalClientScopes: z.array(z.string()).nullish(),
  protocolMappers: z.array(protocolMapperRep).nullish(),
  // Kept in extra, but typed as Keycloak's Jackson mapping would insist.
  surrogateAuthRequired: z.boolean().nullish(),
  alwaysDisplayInConsole: z.boolean().nullish(),
  notBefore: z.number().int().nullish(),
  nodeReRegistrationTimeout: z.number().int().nullish(),
  authenticationFlowBindingOverrides: z.record(z.string(), z.string().nullable()).nullish(),
}).loose();
type ClientBody = z.infer<typeof clientBody>;

/** Fields with columns (or computed): everything else of a body goes to clients.extra. */
const COLUMN_FIELDS = new Set([
  'id', 'clientId', 'name', 'description', 'rootUrl', 'baseUrl', 'adminUrl', 'enabled', 'protocol', 'clientAuthenticatorType',
  'secret', 'publicClient', 'bearerOnly', 'standardFlowEnabled', 'implicitFlowEnabled', 'directAccessGrantsEnabled',
  'serviceAccountsEnabled', 'consentRequired', 'fullScopeAllowed', 'frontchannelLogout', 'redirectUris', 'webOrigins',
  'attributes', 'defaultClientScopes', 'optionalClientScopes', 'protocolMappers', 'access',
]);

/** Representation fields Keycloak always answers, with the value a new client has. */
const EXTRA_DEFAULTS: Record<string, unknown> = {
  surrogateAuthRequired: false, alwaysDisplayInConsole: false, notBefore: 0, nodeReRegistrationTimeout: -1,
  authenticationFlowBindingOverrides: {},
};

function extraOf(body: ClientBody): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!COLUMN_FIELDS.has(key) && value !== undefined && value !== null) extra[key] = value;
  }
  return extra;
}

/** scheme://host[:port] of an absolute URI (Keycloak's UriUtils.getOrigin). */
function originOf(uri: string): string | undefined {
  try {
    const url = new URL(uri.replace(/\*+$/, ''));
    return url.origin === 'null' ? undefined : url.origin;
  } catch {
    return undefined;
  }
}

/** Web origins Keycloak derives from the redirect URIs when a client has none. */
function originsFromRedirects(uris: string[]): string[] {
  return [...new Set(uris.filter((u) => u.startsWith('http')).map(originOf).filter((o): o is string => o !== undefined))];
}

const URL_PLACEHOLDERS = /^\$\{auth(Base|Admin)Url\}/;

function validUrl(value: string, base?: string): boolean {
  try {
    const url = base ? new URL(value, base) : new URL(value.replace(URL_PLACEHOLDERS, 'http://localhost'));
    return url.protocol !== 'javascript:' && url.protocol !== 'data:';
  } catch {
    return false;
  }
}

/** The checks of Keycloak's DefaultClientValidationProvider that concern plain URLs. */
function validateUrls(rootUrl: string | null, baseUrl: string | null, redirectUris: string[]): void {
  if (rootUrl && !validUrl(rootUrl)) throw badRequest('Root URL is not a valid URL');
  if (baseUrl) {
    const root = rootUrl ? rootUrl.replace(URL_PLACEHOLDERS, 'http://localhost') : 'http://localhost';
    if (!validUrl(baseUrl.replace(URL_PLACEHOLDERS, 'http://localhost'), root)) throw badRequest('Base URL is not a valid URL');
  }
  for (const uri of redirectUris) {
    if (uri.includes('#')) throw badRequest('Redirect URIs must not contain an URI fragment');
    if (uri === '*' || uri === '+' || uri.startsWith('/')) continue;
    if (!validUrl(uri.replace(/\*$/, ''))) throw badRequest('A redirect URI is not a valid URI');
  }
}

/** Attribute changes: strings set, null (or absent value) removes. */
function mergeAttributes(current: Record<string, string>, changes: Record<string, string | null> | null | undefined): Record<string, string> {
  const out = { ...current };
  for (const [key, value] of Object.entries(changes ?? {})) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

type ScopeLink = { clientId: string; id: string; name: string; defaultScope: boolean };

async function scopeLinks(db: Db, clientIds: string[]): Promise<ScopeLink[]> {
  if (clientIds.length === 0) return [];
  const rows = await db.selectFrom('client_client_scopes')
    .innerJoin('client_scopes', 'client_scopes.id', 'client_client_scopes.client_scope_id')
    .select(['client_client_scopes.client_id', 'client_scopes.id', 'client_scopes.name', 'client_client_scopes.default_scope'])
    .where('client_client_scopes.client_id', 'in', clientIds)
    .orderBy('client_scopes.name').execute();
  return rows.map((r) => ({ clientId: r.client_id, id: r.id, name: r.name, defaultScope: r.default_scope }));
}

export type ClientAccess = { view: boolean; manage: boolean };

/** Keycloak's ClientRepresentation of client rows (scopes and mappers loaded in two queries). */
export async function clientRepresentations(db: Db, box: SecretBox, rows: Client[], access: ClientAccess): Promise<Record<string, unknown>[]> {
  const ids = rows.map((r) => r.id);
  const [links, mappers] = await Promise.all([
    scopeLinks(db, ids),
    ids.length === 0 ? [] : db.selectFrom('protocol_mappers').selectAll().where('client_id', 'in', ids).orderBy('name').orderBy('id').execute(),
  ]);
  return rows.map((row) => {
    const own = links.filter((l) => l.clientId === row.id);
    const ownMappers = mappers.filter((m) => m.client_id === row.id);
    const confidential = !row.public_client && !row.bearer_only;
    const secret = confidential && row.secret_sealed ? (access.manage ? box.open(row.secret_sealed) : SECRET_MASK) : undefined;
    const extra = row.extra;
    return {
      id: row.id,
      clientId: row.client_id,
      ...(row.name !== null ? { name: row.name } : {}),
      ...(row.description !== null ? { description: row.description } : {}),
      ...(row.root_url !== null ? { rootUrl: row.root_url } : {}),
      ...(row.admin_url !== null ? { adminUrl: row.admin_url } : {}),
      ...(row.base_url !== null ? { baseUrl: row.base_url } : {}),
      surrogateAuthRequired: extra.surrogateAuthRequired ?? EXTRA_DEFAULTS.surrogateAuthRequired,
      enabled: row.enabled,
      alwaysDisplayInConsole: extra.alwaysDisplayInConsole ?? EXTRA_DEFAULTS.alwaysDisplayInConsole,
      clientAuthenticatorType: row.client_authenticator_type,
      ...(secret !== undefined ? { secret } : {}),
      redirectUris: row.redirect_uris,
      webOrigins: row.web_origins,
      notBefore: extra.notBefore ?? EXTRA_DEFAULTS.notBefore,
      bearerOnly: row.bearer_only,
      consentRequired: row.consent_required,
      standardFlowEnabled: row.standard_flow_enabled,
      implicitFlowEnabled: row.implicit_flow_enabled,
      directAccessGrantsEnabled: row.direct_access_grants_enabled,
      serviceAccountsEnabled: row.service_accounts_enabled,
      publicClient: row.public_client,
      frontchannelLogout: row.frontchannel_logout,
      protocol: row.protocol,
      attributes: row.attributes,
      authenticationFlowBindingOverrides: extra.authenticationFlowBindingOverrides ?? EXTRA_DEFAULTS.authenticationFlowBindingOverrides,
      fullScopeAllowed: row.full_scope_allowed,
      nodeReRegistrationTimeout: extra.nodeReRegistrationTimeout ?? EXTRA_DEFAULTS.nodeReRegistrationTimeout,
      ...Object.fromEntries(Object.entries(extra).filter(([key]) => !(key in EXTRA_DEFAULTS))),
      defaultClientScopes: own.filter((l) => l.defaultScope).map((l) => l.name),
      optionalClientScopes: own.filter((l) => !l.defaultScope).map((l) => l.name),
      ...(ownMappers.length > 0 ? { protocolMappers: ownMappers.map(mapperRepresentation) } : {}),
      access: { view: access.view, configure: access.manage, manage: access.manage },
    };
  });
}

/** Links named client scopes of the client's protocol, unless already linked (Keycloak's addClientScopes). */
async function linkScopes(db: Db, realmId: string, client: { id: string; protocol: string }, names: string[], defaultScope: boolean): Promise<void> {
  if (names.length === 0) return;
  const scopes = await db.selectFrom('client_scopes').select('id').where('realm_id', '=', realmId)
    .where('protocol', '=', client.protocol).where('name', 'in', names).execute();
  for (const scope of scopes) {
    await db.insertInto('client_client_scopes').values({ client_id: client.id, client_scope_id: scope.id, default_scope: defaultScope })
      .onConflict((oc) => oc.doNothing()).execute();
  }
}

/**
 * Turns the service account on (ClientManager.enableServiceAccount): the dedicated user
 * `service-account-<clientId>` with the realm's default role, and the service_account scope.
 */
async function enableServiceAccount(db: Db, realm: Realm, client: { id: string; clientId: string; protocol: string }): Promise<void> {
  const existing = await db.selectFrom('users').select('id').where('service_account_client_id', '=', client.id).executeTakeFirst();
  if (!existing) {
    const userId = newId();
    await db.insertInto('users').values({
      id: userId, realm_id: realm.id, username: `service-account-${client.clientId}`.toLowerCase(), email: null,
      first_name: null, last_name: null, federation_link: null, service_account_client_id: client.id,
      attributes: '{}', required_actions: '[]',
    }).execute();
    const defaultRole = await defaultRoleOf(db, realm);
    if (defaultRole) await db.insertInto('user_roles').values({ user_id: userId, role_id: defaultRole.id as string }).execute();
  }
  await linkScopes(db, realm.id, client, [SERVICE_ACCOUNT_SCOPE], true);
}

async function disableServiceAccount(db: Db, realmId: string, clientUuid: string): Promise<void> {
  const scope = await db.selectFrom('client_scopes').select('id').where('realm_id', '=', realmId).where('name', '=', SERVICE_ACCOUNT_SCOPE).executeTakeFirst();
  if (scope) await db.deleteFrom('client_client_scopes').where('client_id', '=', clientUuid).where('client_scope_id', '=', scope.id).execute();
}

/** `key:value key2:"quoted value"` (Keycloak's SearchQueryUtils). */
function searchQueryFields(q: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const match of q.matchAll(/(?:"([^"]*)"|([^\s:"]+)):(?:"([^"]*)"|(\S+))/g)) {
    out.push([match[1] ?? match[2] ?? '', match[3] ?? match[4] ?? '']);
  }
  return out;
}

const escapeLike = (value: string): string => value.replace(/[\\%_]/g, '\\$&');

type UserSessionRow = { id: string; user_id: string; username: string; ip_address: string | null; started_at: Date; last_refresh_at: Date; remember_me: boolean; client_last_refresh: Date };

/**
 * In master, a `<realm>-realm` client's roles are management roles in <realm> (auth.ts binds
 * them by clientId): only a super admin names a client so, or renames one away from it.
 */
function requireMayNameClient(req: RealmRequest, clientId: string): void {
  if (req.realm.name === 'master' && clientId.endsWith('-realm') && !req.auth.isSuperAdmin) throw new AdminAuthError(403, 'HTTP 403 Forbidden');
}

export function registerClientsRoutes(admin: AdminRouter): void {
  const { db, box, registry, config } = admin.services;

  async function findClient(req: RealmRequest): Promise<Client> {
    const id = req.params.id ?? '';
    const row = UUID.test(id)
      ? await db.selectFrom('clients').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!row) throw notFound('Could not find client');
    return row;
  }

  const accessOf = (req: RealmRequest): ClientAccess => ({ view: req.auth.can(req.realmRef, 'view-clients'), manage: req.auth.can(req.realmRef, 'manage-clients') });

  const owners: OwnerRoutes = {
    path: '/clients/:id',
    view: 'view-clients',
    manage: 'manage-clients',
    async find(req): Promise<MapperOwner> {
      const client = await findClient(req);
      return { kind: 'client', id: client.id, realmId: req.realm.id };
    },
  };
  registerProtocolMapperRoutes(admin, owners);
  registerScopeMappingRoutes(admin, owners);

  admin.realm('get', '/clients', { permission: 'query-clients' }, async (req) => {
    const access = accessOf(req);
    // Keycloak shows a client only to admins who may view it: query-clients alone lists nothing.
    if (!access.view) return ok([]);
    const { first, max } = req.page(undefined);
    let query = db.selectFrom('clients').selectAll().where('realm_id', '=', req.realm.id).orderBy('client_id');
    const clientId = req.query.clientId?.trim();
    if (req.query.q !== undefined) {
      for (const [key, value] of searchQueryFields(req.query.q)) {
        query = query.where(({ eb, ref }) => eb(eb.fn('jsonb_extract_path_text', [ref('attributes'), eb.val(key)]), '=', value));
      }
    } else if (clientId && req.bool('search')) {
      query = query.where((eb) => eb(eb.fn('lower', ['client_id']), 'like', `%${escapeLike(clientId.toLowerCase())}%`));
    } else if (clientId) {
      query = query.where('client_id', '=', clientId);
    }
    if (first > 0) query = query.offset(first);
    if (max !== undefined) query = query.limit(max);
    return ok(await clientRepresentations(db, box, await query.execute(), access));
  });

  admin.realm('post', '/clients', { permission: 'create-client', secretBody: true }, async (req) => {
    const body = await req.json(clientBody.extend({ clientId: z.string().min(1).max(255) }));
    requireMayNameClient(req, body.clientId);
    const id = await db.transaction().execute((trx) => createClient(trx, req.realm, body));
    return created(id);
  });

  admin.realm('get', '/clients/:id', { permission: 'view-clients' }, async (req) => {
    const [rep] = await clientRepresentations(db, box, [await findClient(req)], accessOf(req));
    return ok(rep);
  });

  admin.realm('put', '/clients/:id', { permission: 'manage-clients', secretBody: true }, async (req) => {
    const client = await findClient(req);
    const body = await req.json(clientBody);
    if (body.clientId && body.clientId !== client.client_id) {
      requireMayNameClient(req, client.client_id);
      requireMayNameClient(req, body.clientId);
    }
    await db.transaction().execute((trx) => updateClient(trx, req.realm, client, body));
    return noContent();
  });

  admin.realm('delete', '/clients/:id', { permission: 'manage-clients' }, async (req) => {
    const client = await findClient(req);
    const masterAdminClient = req.realm.name === 'master' && client.client_id.endsWith('-realm')
      && await db.selectFrom('realms').select('id').where('name', '=', client.client_id.slice(0, -'-realm'.length)).executeTakeFirst();
    if (INTERNAL_CLIENTS.has(client.client_id) || masterAdminClient) throw badRequest('Could not delete client');
    // The service-account user, roles, mappers, links and sessions go with it (ON DELETE CASCADE).
    await db.deleteFrom('clients').where('id', '=', client.id).execute();
    return noContent();
  });

  // Secret. Keycloak reads it with manage rights only; no secret rotation policy here, so there
  // never is a rotated secret.
  admin.realm('get', '/clients/:id/client-secret', { permission: 'manage-clients' }, async (req) => {
    const client = await findClient(req);
    const value = client.secret_sealed ? box.open(client.secret_sealed) : undefined;
    return ok({ type: 'secret', ...(value !== undefined ? { value } : {}) });
  });

  admin.realm('post', '/clients/:id/client-secret', { permission: 'manage-clients', secretBody: true }, async (req) => {
    const client = await findClient(req);
    const value = newClientSecret();
    await db.updateTable('clients').set({
      secret_sealed: box.seal(value),
      attributes: JSON.stringify({ ...client.attributes, [SECRET_CREATION_TIME]: String(Math.floor(Date.now() / 1000)) }),
    }).where('id', '=', client.id).execute();
    return ok({ type: 'secret', value });
  });

  admin.realm('get', '/clients/:id/client-secret/rotated', { permission: 'manage-clients' }, async (req) => {
    await findClient(req);
    throw notFound('Client does not have a rotated secret');
  });

  admin.realm('delete', '/clients/:id/client-secret/rotated', { permission: 'manage-clients', changesRealm: false }, async (req) => {
    await findClient(req);
    return noContent();
  });

  admin.realm('get', '/clients/:id/service-account-user', { permission: 'view-clients' }, async (req) => {
    const client = await findClient(req);
    const user = client.service_accounts_enabled
      ? await db.selectFrom('users').selectAll().where('service_account_client_id', '=', client.id).executeTakeFirst()
      : undefined;
    if (!user) throw badRequest(`Service account not enabled for the client '${client.client_id}'`);
    return ok(await userRepresentation(db, user));
  });

  // Linked client scopes.
  for (const [segment, isDefault] of [['default-client-scopes', true], ['optional-client-scopes', false]] as const) {
    admin.realm('get', `/clients/:id/${segment}`, { permission: 'view-clients' }, async (req) => {
      const client = await findClient(req);
      const links = await scopeLinks(db, [client.id]);
      return ok(links.filter((l) => l.defaultScope === isDefault).map((l) => ({ id: l.id, name: l.name })));
    });

    admin.realm('put', `/clients/:id/${segment}/:scopeId`, { permission: 'manage-clients' }, async (req) => {
      const client = await findClient(req);
      const scope = await findScope(req);
      // Keycloak links only scopes of the client's protocol and leaves an existing link as it is.
      if (scope.protocol === client.protocol) {
        await db.insertInto('client_client_scopes').values({ client_id: client.id, client_scope_id: scope.id, default_scope: isDefault })
          .onConflict((oc) => oc.doNothing()).execute();
      }
      return noContent();
    });

    admin.realm('delete', `/clients/:id/${segment}/:scopeId`, { permission: 'manage-clients' }, async (req) => {
      const client = await findClient(req);
      const scope = await findScope(req);
      await db.deleteFrom('client_client_scopes').where('client_id', '=', client.id).where('client_scope_id', '=', scope.id).execute();
      return noContent();
    });
  }

  async function findScope(req: RealmRequest): Promise<{ id: string; protocol: string }> {
    const id = req.params.scopeId ?? '';
    const scope = UUID.test(id)
      ? await db.selectFrom('client_scopes').select(['id', 'protocol']).where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!scope) throw notFound('Client scope not found');
    return scope;
  }

  // Sessions.
  for (const offline of [false, true]) {
    admin.realm('get', `/clients/:id/${offline ? 'offline-sessions' : 'user-sessions'}`, { permission: 'view-clients' }, async (req) => {
      const client = await findClient(req);
      // Keycloak filters the list by the caller's right to view each session's user.
      if (!req.auth.can(req.realmRef, 'view-users')) return ok([]);
      const { first, max } = req.page(100);
      let query = sessionsOf(client.id, offline)
        .innerJoin('users', 'users.id', 'user_sessions.user_id')
        .select(['user_sessions.id', 'user_sessions.user_id', 'users.username', 'user_sessions.ip_address', 'user_sessions.started_at',
          'user_sessions.last_refresh_at', 'user_sessions.remember_me', 'client_sessions.last_refresh_at as client_last_refresh'])
        .orderBy('user_sessions.started_at').orderBy('user_sessions.id');
      if (first > 0) query = query.offset(first);
      if (max !== undefined) query = query.limit(max);
      const sessions: UserSessionRow[] = await query.execute();
      const clients = sessions.length === 0 ? [] : await db.selectFrom('client_sessions')
        .innerJoin('clients', 'clients.id', 'client_sessions.client_id')
        .select(['client_sessions.user_session_id', 'clients.id', 'clients.client_id'])
        .where('client_sessions.offline', '=', offline)
        .where('client_sessions.user_session_id', 'in', sessions.map((s) => s.id)).execute();
      return ok(sessions.map((s) => ({
        id: s.id, username: s.username, userId: s.user_id, ...(s.ip_address !== null ? { ipAddress: s.ip_address } : {}),
        start: s.started_at.getTime(),
        // An offline session reports its client session's last refresh (ClientResource.toUserSessionRepresentation).
        lastAccess: (offline ? s.client_last_refresh : s.last_refresh_at).getTime(),
        rememberMe: s.remember_me,
        clients: Object.fromEntries(clients.filter((c) => c.user_session_id === s.id).map((c) => [c.id, c.client_id])),
        transientUser: false,
      })));
    });

    admin.realm('get', `/clients/:id/${offline ? 'offline-session-count' : 'session-count'}`, { permission: 'view-clients' }, async (req) => {
      const client = await findClient(req);
      const row = await sessionsOf(client.id, offline).select((eb) => eb.fn.countAll<number>().as('count')).executeTakeFirstOrThrow();
      return ok({ count: Number(row.count) });
    });
  }

  /** Live user sessions (online or offline) in which the client holds a client session. */
  function sessionsOf(clientUuid: string, offline: boolean) {
    return db.selectFrom('client_sessions')
      .innerJoin('user_sessions', (join) => join.onRef('user_sessions.id', '=', 'client_sessions.user_session_id').onRef('user_sessions.offline', '=', 'client_sessions.offline'))
      .where('client_sessions.client_id', '=', clientUuid)
      .where('client_sessions.offline', '=', offline)
      .where((eb) => eb.or([eb('user_sessions.expires_at', 'is', null), eb('user_sessions.expires_at', '>', new Date())]));
  }

  // Evaluate scopes: what tokens of this client would contain.
  /** Default scopes plus the optional ones named in `scope` (TokenManager.getRequestedClientScopes). */
  async function requestedScopes(client: Client, scopeParam: string | undefined): Promise<ScopeLink[]> {
    const asked = new Set((scopeParam ?? '').split(' ').filter(Boolean));
    return (await scopeLinks(db, [client.id])).filter((l) => l.defaultScope || asked.has(l.name));
  }

  admin.realm('get', '/clients/:id/evaluate-scopes/protocol-mappers', { permission: 'view-clients' }, async (req) => {
    const client = await findClient(req);
    const scopes = await requestedScopes(client, req.query.scope);
    const defaults = scopes.filter((s) => s.defaultScope);
    const optional = scopes.filter((s) => !s.defaultScope);
    const out: Record<string, unknown>[] = [];
    const add = async (owner: MapperOwner, container: { id: string; name: string; type: string }) => {
      for (const mapper of await listMappers(db, owner)) {
        if (mapper.protocol !== client.protocol) continue;
        out.push({ mapperId: mapper.id, mapperName: mapper.name, containerId: container.id, containerName: container.name, containerType: container.type, protocolMapper: mapper.protocol_mapper });
      }
    };
    for (const scope of defaults) await add({ kind: 'scope', id: scope.id, realmId: req.realm.id }, { id: scope.id, name: scope.name, type: 'client-scope' });
    await add({ kind: 'client', id: client.id, realmId: req.realm.id }, { id: client.id, name: '', type: 'client' });
    for (const scope of optional) await add({ kind: 'scope', id: scope.id, realmId: req.realm.id }, { id: scope.id, name: scope.name, type: 'client-scope' });
    return ok(out);
  });

  for (const granted of [true, false]) {
    admin.realm('get', `/clients/:id/evaluate-scopes/scope-mappings/:container/${granted ? 'granted' : 'not-granted'}`, { permission: 'view-clients' }, async (req) => {
      const client = await findClient(req);
      const containerId = req.params.container ?? '';
      let roleClientUuid: string | null = null;
      if (containerId !== req.realm.name) {
        const target = UUID.test(containerId)
          ? await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('id', '=', containerId).executeTakeFirst()
          : undefined;
        if (!target) throw notFound('Role Container not found');
        roleClientUuid = target.id;
      }
      const roles = await rolesQuery(db, req.realm.id, roleClientUuid).execute();
      const scopes = await requestedScopes(client, req.query.scope);
      const allowed = client.full_scope_allowed ? undefined : await roleScopeIds(db, client.id, scopes.map((s) => s.id));
      const inScope = (id: string) => allowed === undefined || allowed.has(id);
      return ok(roles.filter((r) => inScope(r.id) === granted).map((r) => roleRepresentation(r, req.realm.id)));
    });
  }

  for (const kind of ['access-token', 'id-token', 'userinfo'] as const) {
    admin.realm('get', `/clients/:id/evaluate-scopes/generate-example-${kind}`, { permission: 'view-clients' }, async (req) => {
      const client = await findClient(req);
      const userId = req.query.userId;
      if (!userId) throw notFound('No userId provided');
      const user = UUID.test(userId) ? await findUserById(db, req.realm.id, userId) : undefined;
      if (!user) throw notFound('No user found');
      const realm = await registry.get(req.realm.name);
      const model = realm ? await realm.client(client.client_id) : undefined;
      if (!realm || !model) throw badRequest('Example tokens need an enabled OpenID Connect client');
      const scope = req.query.scope ?? '';
      const data = await loadUserTokenSubject(realm, model, user.id, scope);
      if (!data) throw notFound('No user found');
      const now = Math.floor(Date.now() / 1000);
      // An example session that is never stored, as Keycloak's is removed right after use.
      const session: UserSession = {
        id: newId(), offline: false, realm_id: req.realm.id, user_id: user.id, login_username: user.username,
        ip_address: req.ctx.ip, remember_me: false, auth_time: now, started_at: new Date(now * 1000),
        last_refresh_at: new Date(now * 1000), expires_at: null,
      };
      const tokenRequest: UserTokenRequest = {
        realm, issuer: `${publicOrigin(req.ctx, config)}${config.relativePath}/realms/${req.realm.name}`,
        client: model, session, scope, acr: '1', ipAddress: req.ctx.ip,
      };
      if (kind === 'userinfo') {
        const { aud: _aud, ...claims } = tokenClaims({ ...data.subject, sessionNotes: { AUTH_TIME: String(now) }, acr: '1' }, data.mappers, 'userinfo');
        return ok({ sub: user.id, ...claims });
      }
      const access = accessTokenPayload(tokenRequest, data, now);
      const audience = await requestedAudience(req, access);
      if (kind === 'id-token') return ok(idTokenPayload(tokenRequest, data, now, access.exp as number, undefined));
      return ok(audience === undefined ? access : { ...access, aud: audience });
    });
  }

  /**
   * `audience`: space-separated clientIds the token is asked for (Keycloak's requested audience):
   * the token's aud is narrowed to them, and one the token cannot have is a 404.
   */
  async function requestedAudience(req: RealmRequest, token: Record<string, unknown>): Promise<string | string[] | undefined> {
    const names = (req.query.audience ?? '').split(/\s+/).filter(Boolean);
    if (names.length === 0) return undefined;
    const known = await db.selectFrom('clients').select('client_id').where('realm_id', '=', req.realm.id).where('client_id', 'in', names).execute();
    const requested = known.map((c) => c.client_id);
    if (requested.length === 0) return undefined;
    const aud = token.aud === undefined ? [] : Array.isArray(token.aud) ? token.aud as string[] : [token.aud as string];
    const missing = requested.filter((c) => !aud.includes(c));
    if (missing.length > 0) throw notFound(`Requested audience not available: ${missing.join(', ')}`);
    return requested.length === 1 ? requested[0] : requested;
  }

  /** ClientsResource.createClient with Keycloak 26's defaults (RepresentationToModel + setupClientDefaults). */
  async function createClient(trx: Db, realm: Realm, body: ClientBody & { clientId: string }): Promise<string> {
    const taken = await trx.selectFrom('clients').select('id').where('realm_id', '=', realm.id).where('client_id', '=', body.clientId).executeTakeFirst();
    const id = body.id && UUID.test(body.id) ? body.id.toLowerCase() : newId();
    const idTaken = body.id && await trx.selectFrom('clients').select('id').where('id', '=', id).executeTakeFirst();
    if (taken || idTaken) throw conflict(`Client ${body.clientId} already exists`);

    const protocol = body.protocol ?? OIDC;
    // Keycloak applies the OIDC client defaults only when the representation names its protocol.
    const oidcDefaults = body.protocol === OIDC;
    const attributes = mergeAttributes({}, body.attributes);
    let redirectUris = body.redirectUris ?? [];
    let webOrigins = body.webOrigins ?? originsFromRedirects(redirectUris);
    let adminUrl = body.adminUrl ?? null;
    let publicClient = body.publicClient ?? false;
    let directAccessGrants = body.directAccessGrantsEnabled ?? false;
    if (oidcDefaults) {
      if (body.rootUrl && redirectUris.length === 0) {
        const root = body.rootUrl.endsWith('/') ? `${body.rootUrl}*` : `${body.rootUrl}/*`;
        redirectUris = [root];
        const origin = originOf(root);
        webOrigins = origin ? [origin] : [];
      }
      // No client type named: Keycloak makes a public client.
      if (body.bearerOnly == null && body.publicClient == null) publicClient = true;
      if (adminUrl === null && body.rootUrl && !URL_PLACEHOLDERS.test(body.rootUrl)) adminUrl = body.rootUrl;
      directAccessGrants = body.directAccessGrantsEnabled ?? true;
      if (attributes['backchannel.logout.url'] === undefined) {
        attributes['backchannel.logout.session.required'] ??= 'true';
        attributes['backchannel.logout.revoke.offline.tokens'] ??= 'false';
      }
    }
    const bearerOnly = body.bearerOnly ?? false;
    validateUrls(body.rootUrl ?? null, body.baseUrl ?? null, redirectUris);
    let secret: string | null = null;
    if (!publicClient && !bearerOnly) {
      secret = body.secret && body.secret !== SECRET_MASK ? body.secret : null;
      if (secret === null) {
        secret = newClientSecret();
        attributes[SECRET_CREATION_TIME] = String(Math.floor(Date.now() / 1000));
      }
    }
    const consentRequired = body.consentRequired ?? false;
    const serviceAccounts = body.serviceAccountsEnabled ?? false;
    await trx.insertInto('clients').values({
      id, realm_id: realm.id, client_id: body.clientId, name: body.name ?? null, description: body.description ?? null,
      enabled: body.enabled ?? true, protocol, public_client: publicClient, bearer_only: bearerOnly,
      client_authenticator_type: body.clientAuthenticatorType ?? 'client-secret',
      secret_sealed: secret === null ? null : box.seal(secret),
      standard_flow_enabled: body.standardFlowEnabled ?? true, implicit_flow_enabled: body.implicitFlowEnabled ?? false,
      direct_access_grants_enabled: directAccessGrants, service_accounts_enabled: serviceAccounts,
      consent_required: consentRequired, full_scope_allowed: body.fullScopeAllowed ?? !consentRequired,
      frontchannel_logout: body.frontchannelLogout ?? false, root_url: body.rootUrl ?? null, base_url: body.baseUrl ?? null,
      admin_url: adminUrl, redirect_uris: JSON.stringify([...new Set(redirectUris)]), web_origins: JSON.stringify([...new Set(webOrigins)]),
      attributes: JSON.stringify(attributes), extra: JSON.stringify(extraOf(body)),
    }).execute();

    // Realm defaults of the client's protocol, unless the representation names the scopes; then
    // exactly those (RepresentationToModel.updateClientScopes; a name in both lists is default).
    const client = { id, protocol };
    if (body.defaultClientScopes == null && body.optionalClientScopes == null) {
      const defaults = await trx.selectFrom('realm_default_client_scopes')
        .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
        .select(['client_scopes.id', 'realm_default_client_scopes.default_scope'])
        .where('realm_default_client_scopes.realm_id', '=', realm.id).where('client_scopes.protocol', '=', protocol).execute();
      for (const scope of defaults) {
        await trx.insertInto('client_client_scopes').values({ client_id: id, client_scope_id: scope.id, default_scope: scope.default_scope }).execute();
      }
    } else {
      await linkScopes(trx, realm.id, client, body.defaultClientScopes ?? [], true);
      await linkScopes(trx, realm.id, client, body.optionalClientScopes ?? [], false);
    }
    if (serviceAccounts) await enableServiceAccount(trx, realm, { id, clientId: body.clientId, protocol });
    if (body.protocolMappers) await insertMappers(trx, { kind: 'client', id, realmId: realm.id }, body.protocolMappers);
    return id;
  }

  /** ClientResource.update: absent fields keep their value (RepresentationToModel.updateClient). */
  async function updateClient(trx: Db, realm: Realm, client: Client, body: ClientBody): Promise<void> {
    const clientId = body.clientId ?? client.client_id;
    if (clientId !== client.client_id) {
      const taken = await trx.selectFrom('clients').select('id').where('realm_id', '=', realm.id).where('client_id', '=', clientId).executeTakeFirst();
      if (taken) throw conflict('Client already exists');
      // The service-account user follows the clientId (ClientManager.clientIdChanged).
      await trx.updateTable('users').set({ username: `service-account-${clientId}`.toLowerCase() })
        .where('service_account_client_id', '=', client.id).execute();
    }
    const protocol = body.protocol ?? client.protocol;
    if (body.serviceAccountsEnabled === true) {
      await enableServiceAccount(trx, realm, { id: client.id, clientId, protocol });
    } else if (body.serviceAccountsEnabled === false && client.service_accounts_enabled) {
      await disableServiceAccount(trx, realm.id, client.id);
    }
    const publicClient = body.publicClient ?? client.public_client;
    const bearerOnly = body.bearerOnly ?? client.bearer_only;
    const rootUrl = body.rootUrl ?? client.root_url;
    const baseUrl = body.baseUrl ?? client.base_url;
    const redirectUris = body.redirectUris ?? client.redirect_uris;
    validateUrls(rootUrl, baseUrl, redirectUris);
    const webOrigins = body.webOrigins ?? (client.web_origins.length > 0 ? client.web_origins : originsFromRedirects(redirectUris));
    const attributes = mergeAttributes(client.attributes, body.attributes);
    // determineNewSecret: none for public and bearer-only clients; a given one replaces it; a
    // confidential client without one gets one.
    let secretSealed: string | null = client.secret_sealed;
    if (publicClient || bearerOnly) {
      secretSealed = null;
    } else if (body.secret && body.secret !== SECRET_MASK) {
      secretSealed = box.seal(body.secret);
    } else if (secretSealed === null) {
      secretSealed = box.seal(newClientSecret());
      attributes[SECRET_CREATION_TIME] = String(Math.floor(Date.now() / 1000));
    }
    const extra = { ...client.extra, ...extraOf(body) };
    await trx.updateTable('clients').set({
      client_id: clientId,
      name: body.name ?? client.name,
      description: body.description ?? client.description,
      enabled: body.enabled ?? client.enabled,
      protocol,
      public_client: publicClient,
      bearer_only: bearerOnly,
      client_authenticator_type: body.clientAuthenticatorType ?? client.client_authenticator_type,
      secret_sealed: secretSealed,
      standard_flow_enabled: body.standardFlowEnabled ?? client.standard_flow_enabled,
      implicit_flow_enabled: body.implicitFlowEnabled ?? client.implicit_flow_enabled,
      direct_access_grants_enabled: body.directAccessGrantsEnabled ?? client.direct_access_grants_enabled,
      service_accounts_enabled: body.serviceAccountsEnabled ?? client.service_accounts_enabled,
      consent_required: body.consentRequired ?? client.consent_required,
      full_scope_allowed: body.fullScopeAllowed ?? client.full_scope_allowed,
      frontchannel_logout: body.frontchannelLogout ?? client.frontchannel_logout,
      root_url: rootUrl,
      base_url: baseUrl,
      admin_url: body.adminUrl ?? client.admin_url,
      redirect_uris: JSON.stringify([...new Set(redirectUris)]),
      web_origins: JSON.stringify([...new Set(webOrigins)]),
      attributes: JSON.stringify(attributes),
      extra: JSON.stringify(extra),
    }).where('id', '=', client.id).execute();
    if (body.protocolMappers) await replaceMappers(trx, { kind: 'client', id: client.id, realmId: realm.id }, body.protocolMappers);
  }

}
