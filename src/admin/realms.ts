// Admin REST API: realms (list, create from a representation or a full export, read, update,
// delete), their keys, logout-all and the realm-level default client scopes.
import { z } from 'zod';

import { newId, UUID } from '../crypto/random.ts';
import { maskedSmtpServer, sealSmtpServer } from '../mail/smtp-config.ts';
import { PasswordPolicyError, formatPasswordPolicy, parsePasswordPolicy } from '../login/password-policy.ts';
import { keycloakRealmDefaults } from '../realms/defaults.ts';
import { ImportError, RealmExistsError, importRealm, parseRealmRepresentation } from '../realms/import.ts';
import { STRUCTURAL_REALM_FIELDS, realmName } from '../realms/representation.ts';
import { parseRealmSettings } from '../realms/settings.ts';
import type { Db } from '../store/db.ts';
import type { Realm } from '../store/schema.ts';
import { MANAGEMENT_ROLES } from './auth.ts';
import { AdminError, badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

/** Realm imports (POST /admin/realms with users) can be large. */
const REALM_BODY_LIMIT = 256 * 1024 * 1024;

/** Realm settings Keycloak knows beyond the defaults every realm is created with, and their JSON types. */
const EXTRA_SETTING_TYPES: Record<string, 'string' | 'number' | 'boolean' | 'object' | 'array'> = {
  passwordPolicy: 'string', displayNameHtml: 'string', loginTheme: 'string', accountTheme: 'string', adminTheme: 'string',
  emailTheme: 'string', defaultLocale: 'string', eventsExpiration: 'number', clientOfflineSessionIdleTimeout: 'number',
  clientOfflineSessionMaxLifespan: 'number', clientSessionIdleTimeout: 'number', clientSessionMaxLifespan: 'number',
  ssoSessionIdleTimeoutRememberMe: 'number', ssoSessionMaxLifespanRememberMe: 'number',
  otpPolicyType: 'string', maxTemporaryLockouts: 'number', organizationsEnabled: 'boolean', adminPermissionsEnabled: 'boolean',
  verifiableCredentialsEnabled: 'boolean',
};

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  return typeof value;
}

let settingTypes: Map<string, string> | undefined;
/** Field -> JSON type, from Keycloak's defaults for a new realm plus the known optional fields. */
function realmSettingTypes(): Map<string, string> {
  if (!settingTypes) {
    settingTypes = new Map(Object.entries(EXTRA_SETTING_TYPES));
    for (const [key, value] of Object.entries(keycloakRealmDefaults('x').settings)) settingTypes.set(key, jsonType(value));
    settingTypes.delete('enabled');
  }
  return settingTypes;
}

/** PUT body: typed top-level fields; settings are checked field by field against their Keycloak type. */
const realmUpdateRep = z.object({
  realm: realmName.optional(),
  displayName: z.string().nullish(),
  enabled: z.boolean().optional(),
  notBefore: z.number().int().optional(),
  attributes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).optional(),
}).loose();

/** Validated settings changes of a PUT body; unknown fields are ignored, as Keycloak's Jackson mapping does. */
function settingsChanges(body: Record<string, unknown>): Record<string, unknown> {
  const types = realmSettingTypes();
  const changes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (STRUCTURAL_REALM_FIELDS.has(key) || key === 'attributes' || key === 'displayName' || value === undefined) continue;
    const expected = types.get(key);
    if (!expected) continue;
    if (value === null) continue; // Keycloak: a null field is "not sent"
    const actual = jsonType(value);
    if (actual !== expected) throw badRequest(`Invalid value for field '${key}': expected ${expected}, received ${actual}`);
    if (expected === 'number' && !Number.isInteger(value)) throw badRequest(`Invalid value for field '${key}': expected an integer`);
    changes[key] = value;
  }
  return changes;
}

export async function defaultRoleOf(db: Db, realm: Realm): Promise<Record<string, unknown> | undefined> {
  const role = await db.selectFrom('roles').select(['id', 'name', 'description'])
    .where('realm_id', '=', realm.id).where('client_id', 'is', null).where('name', 'like', 'default-roles-%')
    .orderBy('name').executeTakeFirst();
  return role ? { id: role.id, name: role.name, description: role.description ?? undefined, composite: true, clientRole: false, containerId: realm.id } : undefined;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Keycloak's RealmRepresentation of a realm, without users, clients, roles and groups. */
export async function realmRepresentation(db: Db, realm: Realm): Promise<Record<string, unknown>> {
  // Required action providers are in exports only (Keycloak: authentication/required-actions).
  const { requiredActions: _requiredActions, ...settings } = realm.settings as Record<string, unknown>;
  return {
    id: realm.id,
    realm: realm.name,
    ...(realm.display_name !== null ? { displayName: realm.display_name } : {}),
    notBefore: realm.not_before,
    ...settings,
    ...(isObject(settings.smtpServer) ? { smtpServer: maskedSmtpServer(settings.smtpServer) } : {}),
    enabled: realm.enabled,
    defaultRole: await defaultRoleOf(db, realm),
  };
}

/** What an admin without view-realm sees of a realm (Keycloak's "brief" realm for other admins). */
function briefRealmRepresentation(realm: Realm): Record<string, unknown> {
  const settings = realm.settings as Record<string, unknown>;
  return {
    id: realm.id, realm: realm.name, ...(realm.display_name !== null ? { displayName: realm.display_name } : {}),
    enabled: realm.enabled, ...(settings.displayNameHtml !== undefined ? { displayNameHtml: settings.displayNameHtml } : {}),
    bruteForceProtected: settings.bruteForceProtected, internationalizationEnabled: settings.internationalizationEnabled,
    registrationAllowed: settings.registrationAllowed, registrationEmailAsUsername: settings.registrationEmailAsUsername,
    editUsernameAllowed: settings.editUsernameAllowed, verifyEmail: settings.verifyEmail, supportedLocales: settings.supportedLocales,
    defaultLocale: settings.defaultLocale, userManagedAccessAllowed: settings.userManagedAccessAllowed,
  };
}

/** Keycloak's KeysMetadataRepresentation. */
async function keysMetadata(db: Db, realm: Realm): Promise<Record<string, unknown>> {
  const keys = await db.selectFrom('signing_keys').select(['kid', 'alg', 'public_jwk', 'status', 'created_at', 'retire_at'])
    .where('realm_id', '=', realm.id).orderBy('created_at', 'desc').execute();
  const active: Record<string, string> = {};
  const { createPublicKey } = await import('node:crypto');
  const list = keys.map((key) => {
    if (key.status === 'active' && !active[key.alg]) active[key.alg] = key.kid;
    const publicKey = createPublicKey({ key: key.public_jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
      .export({ type: 'spki', format: 'der' }).toString('base64');
    return {
      providerId: key.alg.startsWith('ES') ? 'ecdsa-generated' : 'rsa-generated',
      providerPriority: key.status === 'active' ? 100 : 0,
      kid: key.kid,
      status: key.status === 'active' ? 'ACTIVE' : 'PASSIVE',
      type: key.alg.startsWith('ES') ? 'EC' : 'RSA',
      algorithm: key.alg,
      publicKey,
      use: 'SIG',
      ...(key.retire_at ? { validTo: new Date(key.retire_at).getTime() } : {}),
    };
  });
  return { active, keys: list };
}

/** clientId of a realm's admin client in master, whose roles are management roles in that realm (auth.ts). */
export const masterAdminClientId = (realmName: string): string => `${realmName}-realm`;

function findMasterAdminClient(db: Db, realmName: string): Promise<{ id: string } | undefined> {
  return db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id').select('clients.id')
    .where('realms.name', '=', 'master').where('clients.client_id', '=', masterAdminClientId(realmName)).executeTakeFirst();
}

/**
 * A creator without the master `admin` role gets Keycloak's per-realm admin client in master
 * (`<realm>-realm`) with every management role, as Keycloak grants the creator of a realm.
 */
async function grantCreatorAdmin(db: Db, realmName: string, creatorId: string): Promise<void> {
  const master = await db.selectFrom('realms').select('id').where('name', '=', 'master').executeTakeFirstOrThrow();
  const clientUuid = newId();
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('clients').values({
      id: clientUuid, realm_id: master.id, client_id: masterAdminClientId(realmName), name: `${realmName} Realm`, bearer_only: true,
      standard_flow_enabled: true, redirect_uris: '[]', web_origins: '[]', attributes: '{}', extra: '{}',
      secret_sealed: null,
    }).execute();
    for (const roleName of MANAGEMENT_ROLES) {
      if (roleName === 'realm-admin') continue;
      const roleId = newId();
      await trx.insertInto('roles').values({ id: roleId, realm_id: master.id, client_id: clientUuid, name: roleName, description: null, attributes: '{}' }).execute();
      await trx.insertInto('user_roles').values({ user_id: creatorId, role_id: roleId }).execute();
    }
  });
}

export function registerRealmsRoutes(admin: AdminRouter): void {
  const { db, box, registry } = admin.services;

  admin.server('get', '/realms', {}, async (req) => {
    const brief = req.bool('briefRepresentation') === true;
    const { first, max } = req.page(undefined);
    // A brief list leaves the settings column (kilobytes per realm) unread.
    let query = db.selectFrom('realms').select(['id', 'name', 'display_name', 'enabled'])
      .$if(!brief, (q) => q.select(['settings', 'not_before', 'created_at', 'updated_at'])).orderBy('name');
    const search = req.query.search;
    if (search) query = query.where((eb) => eb(eb.fn('lower', ['name']), 'like', `${search.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`));
    if (!req.auth.isSuperAdmin) {
      // Realms the caller administers: its own realm, or those of its master `<realm>-realm` client roles.
      const names = req.auth.isMaster
        ? (await db.selectFrom('user_roles').innerJoin('roles', 'roles.id', 'user_roles.role_id').innerJoin('clients', 'clients.id', 'roles.client_id')
          .select('clients.client_id').distinct().where('user_roles.user_id', '=', req.auth.identity.userId).execute())
          .map((r) => r.client_id).filter((c) => c.endsWith('-realm')).map((c) => c.slice(0, -'-realm'.length))
        : [req.auth.identity.realmName];
      if (names.length === 0) return ok([]);
      query = query.where('name', 'in', names);
    }
    if (first > 0) query = query.offset(first);
    if (max !== undefined) query = query.limit(max);
    const realms = (await query.execute()).filter((r) => req.auth.canAccess(r));
    if (brief) return ok(realms.map((r) => ({ id: r.id, realm: r.name, ...(r.display_name !== null ? { displayName: r.display_name } : {}), enabled: r.enabled })));
    const out = [];
    for (const realm of realms as Realm[]) out.push(req.auth.can(realm, 'view-realm') ? await realmRepresentation(db, realm) : briefRealmRepresentation(realm));
    return ok(out);
  });

  admin.server('post', '/realms', { bodyLimit: REALM_BODY_LIMIT, secretBody: true }, async (req) => {
    if (!req.auth.canCreateRealm) throw new AdminError(403, 'HTTP 403 Forbidden');
    const body = await req.json(z.record(z.string(), z.unknown()));
    let rep;
    try {
      rep = parseRealmRepresentation(body);
    } catch (error) {
      if (error instanceof ImportError) throw badRequest(error.message);
      throw error;
    }
    try {
      const result = await importRealm(db, box, rep);
      if (!req.auth.isSuperAdmin) await grantCreatorAdmin(db, result.realm, req.auth.identity.userId);
      await registry.realmChanged(result.realmId);
      return created(result.realm);
    } catch (error) {
      if (error instanceof RealmExistsError) throw conflict('Conflict detected. See logs for details');
      if (error instanceof ImportError) throw badRequest(error.message);
      throw error;
    }
  });

  admin.realm('get', '', { permission: 'any-admin' }, async (req) => {
    return ok(req.auth.can(req.realmRef, 'view-realm') ? await realmRepresentation(db, req.realm) : briefRealmRepresentation(req.realm));
  });

  admin.realm('put', '', { permission: 'manage-realm', secretBody: true }, async (req) => updateRealm(req, await req.json(realmUpdateRep)));

  admin.realm('delete', '', { permission: 'manage-realm' }, async (req) => {
    if (req.realm.name === 'master') throw badRequest('The master realm cannot be deleted');
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('realms').where('id', '=', req.realm.id).execute();
      // Keycloak's removeRealm drops the realm's admin client in master: left behind, its role
      // holders would administer the next realm of that name (auth.ts binds them by name).
      const adminClient = await findMasterAdminClient(trx, req.realm.name);
      if (adminClient) await trx.deleteFrom('clients').where('id', '=', adminClient.id).execute();
    });
    return noContent();
  });

  admin.realm('get', '/keys', { permission: 'view-realm' }, async (req) => ok(await keysMetadata(db, req.realm)));

  admin.realm('post', '/logout-all', { permission: 'manage-users' }, async (req) => {
    const now = Math.floor(Date.now() / 1000);
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('realms').set({ not_before: now, updated_at: new Date() }).where('id', '=', req.realm.id).execute();
      await trx.deleteFrom('user_sessions').where('realm_id', '=', req.realm.id).where('offline', '=', false).execute();
    });
    // Keycloak's GlobalRequestResult: back-channel pushes to clients' admin URLs (none are sent).
    return ok({ successRequests: [], failedRequests: [] });
  });

  admin.realm('post', '/push-revocation', { permission: 'manage-realm' }, async () => ok({ successRequests: [], failedRequests: [] }));

  // Realm-level default client scopes: what new clients get.
  for (const [segment, isDefault] of [['default-default-client-scopes', true], ['default-optional-client-scopes', false]] as const) {
    admin.realm('get', `/${segment}`, { permission: ['view-realm', 'view-clients'] }, async (req) => {
      const rows = await db.selectFrom('realm_default_client_scopes')
        .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
        .select(['client_scopes.id', 'client_scopes.name'])
        .where('realm_default_client_scopes.realm_id', '=', req.realm.id)
        .where('realm_default_client_scopes.default_scope', '=', isDefault)
        .orderBy('client_scopes.name').execute();
      return ok(rows);
    });
    admin.realm('put', `/${segment}/:scopeId`, { permission: 'manage-realm' }, async (req) => {
      const scope = await findScope(req);
      await db.deleteFrom('realm_default_client_scopes').where('realm_id', '=', req.realm.id).where('client_scope_id', '=', scope.id).execute();
      await db.insertInto('realm_default_client_scopes').values({ realm_id: req.realm.id, client_scope_id: scope.id, default_scope: isDefault }).execute();
      return noContent();
    });
    admin.realm('delete', `/${segment}/:scopeId`, { permission: 'manage-realm' }, async (req) => {
      const scope = await findScope(req);
      await db.deleteFrom('realm_default_client_scopes').where('realm_id', '=', req.realm.id)
        .where('client_scope_id', '=', scope.id).where('default_scope', '=', isDefault).execute();
      return noContent();
    });
  }

  async function findScope(req: RealmRequest): Promise<{ id: string }> {
    const id = req.params.scopeId ?? '';
    const scope = UUID.test(id)
      ? await db.selectFrom('client_scopes').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!scope) throw notFound('Client scope not found');
    return scope;
  }

  async function updateRealm(req: RealmRequest, body: z.infer<typeof realmUpdateRep>) {
    const realm = req.realm;
    const changes = settingsChanges(body);
    if (typeof changes.passwordPolicy === 'string') {
      // Keycloak parses the policy (400 with its wording when invalid) and stores its normal form.
      try {
        changes.passwordPolicy = formatPasswordPolicy(parsePasswordPolicy(changes.passwordPolicy, { strict: true }));
      } catch (error) {
        if (error instanceof PasswordPolicyError) throw badRequest(error.message);
        throw error;
      }
    }
    const renamed = body.realm !== undefined && body.realm !== realm.name ? body.realm : undefined;
    if (renamed !== undefined) {
      if (realm.name === 'master') throw badRequest('The master realm cannot be renamed');
      const taken = await db.selectFrom('realms').select('id').where('name', '=', renamed).executeTakeFirst();
      // A master admin client of the new name would hand the realm to its role holders.
      if (taken || await findMasterAdminClient(db, renamed)) throw conflict('Realm with same name exists');
    }
    // The SMTP password is stored sealed; the mask sent back keeps the stored one (Keycloak's updateRealm).
    if (isObject(changes.smtpServer)) changes.smtpServer = sealSmtpServer(box, changes.smtpServer, (realm.settings as Record<string, unknown>).smtpServer);
    const settings = { ...(realm.settings as Record<string, unknown>), ...changes };
    if (body.attributes) settings.attributes = { ...(settings.attributes as Record<string, string> | undefined), ...body.attributes };
    const parsed = parseRealmSettings(settings);
    if (parsed.defaultSignatureAlgorithm !== (realm.settings as { defaultSignatureAlgorithm?: string }).defaultSignatureAlgorithm) {
      const { createRealmKey } = await import('../realms/keys.ts');
      const has = await db.selectFrom('signing_keys').select('kid').where('realm_id', '=', realm.id)
        .where('alg', '=', parsed.defaultSignatureAlgorithm).where('status', '=', 'active').executeTakeFirst();
      if (!has) await createRealmKey(db, box, realm.id, parsed.defaultSignatureAlgorithm);
    }
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('realms').set({
        name: body.realm ?? realm.name,
        ...(body.displayName !== undefined ? { display_name: body.displayName } : {}),
        ...(body.enabled !== undefined ? { enabled: body.enabled } : {}),
        ...(body.notBefore !== undefined ? { not_before: body.notBefore } : {}),
        settings: JSON.stringify(settings),
        updated_at: new Date(),
      }).where('id', '=', realm.id).execute();
      // The realm's admin client in master follows the name (Keycloak's renameRealm).
      const adminClient = renamed === undefined ? undefined : await findMasterAdminClient(trx, realm.name);
      if (adminClient && renamed !== undefined) {
        await trx.updateTable('clients').set({ client_id: masterAdminClientId(renamed) }).where('id', '=', adminClient.id).execute();
      }
    });
    return noContent();
  }
}

/** Ids in admin paths are UUIDs; the admin modules import the check from here. */
export { UUID };
