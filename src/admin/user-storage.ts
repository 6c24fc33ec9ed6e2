// Admin REST API: user storage (LDAP federation) operations beyond the components CRUD.
// POST /testLDAPConnection is Keycloak 26's TestLdapConnectionResource: manage-realm; a
// TestLdapConnectionRepresentation as JSON (or the deprecated form); 204 when the connection or
// the bind worked, else 400 with Keycloak's error code as errorMessage ("ConnectionFailed",
// "AuthenticationFailure", "SSLHandshakeFailed"...). The secret mask stands for the stored bind
// credential of `componentId` only when the URLs and bind DN are the stored ones, as in Keycloak,
// so a stored credential is never sent to another server. The sync routes (users, mappers,
// remove-imported-users, unlink-users) are registerUserStorageSyncRoutes, below.
import { ResultCodeError } from 'ldapts';
import { z } from 'zod';

import { LDAP_MAPPER_PROVIDER_TYPE, ldapProviderConfig, USER_STORAGE_PROVIDER_TYPE } from '../federation/ldap/config.ts';
import { LdapTestError, testLdapConnection } from '../federation/ldap/client.ts';
import { LdapMapperSyncError, syncLdapMapper, type MapperSyncDirection } from '../federation/ldap/mapper-sync.ts';
import { ignoredSyncResult, removeImportedUsers, syncUsersExclusive, unlinkUsers, type SyncMode } from '../federation/ldap/sync.ts';
import { LdapUnavailableError } from '../federation/ldap/types.ts';
import { readForm } from '../http/body.ts';
import { SECRET_MASK } from '../store/sealed-config.ts';
import type { Component } from '../store/schema.ts';
import type { LdapProviderConfig } from '../federation/ldap/types.ts';
import { UUID } from './realms.ts';
import { AdminError, AdminErrorResponse, badRequest, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

/** LDAPServerCapabilitiesManager.DEFAULT_TEST_TIMEOUT: used when connectionTimeout is not a positive number. */
const DEFAULT_TEST_TIMEOUT_MS = 30_000;

/** Keycloak's String fields: Jackson also takes numbers and booleans. */
const field = z.union([z.string(), z.number(), z.boolean()]).nullish().transform((v) => (v === null || v === undefined ? undefined : String(v)));

const testRepresentation = z.object({
  action: field,
  connectionUrl: field,
  bindDn: field,
  bindCredential: field,
  useTruststoreSpi: field,
  connectionTimeout: field,
  componentId: field,
  startTls: field,
  authType: field,
}).loose();

type TestRepresentation = z.infer<typeof testRepresentation>;

/** The deprecated form variant (authType simple, as Keycloak's form endpoint sets it). */
async function postedTest(req: RealmRequest): Promise<TestRepresentation> {
  if (!req.ctx.is('application/x-www-form-urlencoded')) return req.json(testRepresentation);
  const form = await readForm(req.ctx);
  const first = (value: unknown): unknown => (Array.isArray(value) ? value[0] : value);
  const parsed = testRepresentation.safeParse(Object.fromEntries(Object.entries(form).map(([k, v]) => [k, first(v)])));
  if (!parsed.success) throw badRequest('Invalid form parameters');
  return { ...parsed.data, authType: 'simple' };
}

function timeoutOf(value: string | undefined): number {
  const parsed = value !== undefined && /^\d+$/.test(value.trim()) ? Number.parseInt(value, 10) : 0;
  return parsed > 0 ? parsed : DEFAULT_TEST_TIMEOUT_MS;
}

/** URI equality as Java's: scheme and host case-insensitive, the rest exact. */
function sameUrl(a: string, b: string): boolean {
  const normal = (raw: string): string => {
    try {
      const url = new URL(raw);
      return `${url.protocol.toLowerCase()}//${url.username}@${url.hostname.toLowerCase()}:${url.port}${url.pathname}${url.search}`;
    } catch {
      return raw;
    }
  };
  return normal(a) === normal(b);
}

/** LDAPServerCapabilitiesManager.checkLdapConnectionUrl: same number of URLs, each the stored one. */
function sameUrls(posted: string, stored: string[]): boolean {
  const urls = posted.trim().split(' ');
  return urls.length === stored.length && urls.every((url, i) => sameUrl(url, stored[i]!));
}

async function storedProvider(req: RealmRequest, componentId: string | undefined): Promise<LdapProviderConfig | undefined> {
  if (!componentId || !UUID.test(componentId)) return undefined;
  const row = await req.db.selectFrom('components').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', componentId)
    .where('provider_type', '=', USER_STORAGE_PROVIDER_TYPE).where('provider_id', '=', 'ldap').executeTakeFirst();
  return row ? ldapProviderConfig(row, [], req.services.box) : undefined;
}

export function registerUserStorageRoutes(admin: AdminRouter): void {
  const { logger } = admin.services;
  registerUserStorageSyncRoutes(admin);

  admin.realm('post', '/testLDAPConnection', { permission: 'manage-realm', secretBody: true, changesRealm: false }, async (req) => {
    const body = await postedTest(req);
    const authType = body.authType?.toLowerCase() === 'none' ? 'none' : 'simple';
    const connectionUrl = body.connectionUrl ?? '';
    const stored = await storedProvider(req, body.componentId);
    let bindCredential = body.bindCredential;
    if (stored && authType !== 'none' && bindCredential === SECRET_MASK && sameUrls(connectionUrl, stored.connectionUrls)
      && body.bindDn !== undefined && body.bindDn.toLowerCase() === (stored.bindDn ?? '').toLowerCase()) {
      bindCredential = stored.bindCredential;
    }
    try {
      await testLdapConnection({
        action: body.action ?? '',
        connectionUrl,
        authType,
        bindDn: body.bindDn,
        bindCredential,
        startTls: body.startTls?.toLowerCase() === 'true',
        timeout: timeoutOf(body.connectionTimeout),
        tlsCaBundle: stored?.tlsCaBundle,
      });
    } catch (error) {
      if (!(error instanceof LdapTestError)) throw error;
      logger.info({ realm: req.realm.name, code: error.code, reason: error.message }, 'LDAP connection test failed');
      throw new AdminError(400, error.code);
    }
    return noContent();
  });
}

// ---------------------------------------------------------------------------------------------
// Sync (Keycloak's UserStorageProviderResource): manage-users, 404 for an unknown component or one
// that is not a user storage provider, 400 for a missing or unknown action / direction. A sync of a
// disabled provider, one without import, a non-LDAP one or one already syncing on any instance is
// Keycloak's "ignored" result. A directory that cannot be reached or refuses the search is
// Keycloak's 500 `{"error": "unknown_error", "error_description": ...}`, with the reason.

const SYNC_ACTIONS: Record<string, SyncMode> = { triggerFullSync: 'full', triggerChangedUsersSync: 'changed' };
const MAPPER_DIRECTIONS = new Set<string>(['fedToKeycloak', 'keycloakToFed']);

async function userStorageComponent(req: RealmRequest, id: string, missing = 'Could not find component'): Promise<Component> {
  const row = UUID.test(id)
    ? await req.db.selectFrom('components').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
    : undefined;
  if (!row) throw notFound(missing);
  if (row.provider_type !== USER_STORAGE_PROVIDER_TYPE) throw notFound('found, but not a UserStorageProvider');
  return row;
}

async function providerOf(req: RealmRequest, component: Component): Promise<LdapProviderConfig> {
  const mappers = await req.db.selectFrom('components').selectAll().where('realm_id', '=', req.realm.id)
    .where('parent_id', '=', component.id).where('provider_type', '=', LDAP_MAPPER_PROVIDER_TYPE).execute();
  return ldapProviderConfig(component, mappers, req.services.box);
}

/** LDAP failures of a sync as Keycloak answers them (its ModelException becomes a 500). */
function syncFailure(req: RealmRequest, error: unknown): never {
  if (error instanceof LdapUnavailableError || error instanceof ResultCodeError) {
    req.services.logger.warn({ realm: req.realm.name, err: error }, 'LDAP sync failed');
    throw new AdminErrorResponse(500, 'unknown_error', `LDAP sync failed: ${error.message}`);
  }
  throw error;
}

export function registerUserStorageSyncRoutes(admin: AdminRouter): void {
  const { store, box, logger } = admin.services;

  admin.realm('get', '/user-storage/:id/name', { permission: 'query-users' }, async (req) => {
    const component = await userStorageComponent(req, req.params.id ?? '');
    return ok({ id: component.id, name: component.name });
  });

  admin.realm('post', '/user-storage/:id/sync', { permission: 'manage-users' }, async (req) => {
    const component = await userStorageComponent(req, req.params.id ?? '');
    const action = req.query.action;
    if (!action) throw badRequest('Missing action');
    const mode = SYNC_ACTIONS[action];
    if (!mode) throw badRequest(`Unknown action: ${action}`);
    let result;
    if (component.provider_id !== 'ldap') {
      result = ignoredSyncResult();
    } else {
      try {
        result = await syncUsersExclusive(store, box, req.realm, await providerOf(req, component), mode, logger);
      } catch (error) {
        syncFailure(req, error);
      }
    }
    req.eventRepresentation = { action, result };
    return ok(result);
  });

  admin.realm('post', '/user-storage/:id/remove-imported-users', { permission: 'manage-users' }, async (req) => {
    const component = await userStorageComponent(req, req.params.id ?? '');
    const removed = await removeImportedUsers(req.db, req.realm.id, component.id);
    logger.info({ realm: req.realm.name, provider: component.name, removed }, 'Removed imported users of a user storage provider');
    return noContent();
  });

  admin.realm('post', '/user-storage/:id/unlink-users', { permission: 'manage-users' }, async (req) => {
    const component = await userStorageComponent(req, req.params.id ?? '');
    const unlinked = await unlinkUsers(req.db, req.realm.id, component.id);
    logger.info({ realm: req.realm.name, provider: component.name, unlinked }, 'Unlinked the users of a user storage provider');
    return noContent();
  });

  admin.realm('post', '/user-storage/:parentId/mappers/:id/sync', { permission: 'manage-users' }, async (req) => {
    const parent = await userStorageComponent(req, req.params.parentId ?? '', 'Parent model not found');
    const mapperId = req.params.id ?? '';
    const mapper = UUID.test(mapperId)
      ? await req.db.selectFrom('components').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', mapperId)
        .where('parent_id', '=', parent.id).where('provider_type', '=', LDAP_MAPPER_PROVIDER_TYPE).executeTakeFirst()
      : undefined;
    if (!mapper) throw notFound('Mapper model not found');
    const direction = req.query.direction ?? '';
    if (!MAPPER_DIRECTIONS.has(direction)) throw badRequest(`Unknown direction: ${direction}`);
    if (parent.provider_id !== 'ldap') throw badRequest('Mapper sync needs an LDAP provider');
    const config = await providerOf(req, parent);
    const mapperConfig = config.mappers.find((m) => m.id === mapper.id)!;
    logger.info({ realm: req.realm.name, mapper: mapper.name, providerId: mapper.provider_id, direction }, 'Syncing data for mapper');
    let result;
    try {
      result = await syncLdapMapper(req.db, req.realm, config, mapperConfig, direction as MapperSyncDirection, logger);
    } catch (error) {
      if (error instanceof LdapMapperSyncError) throw badRequest(error.message);
      syncFailure(req, error);
    }
    req.eventRepresentation = { action: direction, result };
    return ok(result);
  });
}
