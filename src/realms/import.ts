// Creates a realm from a Keycloak RealmRepresentation (a realm export, or just {"realm": "x"}),
// filling in what Keycloak creates in every new realm. One transaction: a realm is created whole
// or not at all.
import { hashPassword, parseStoredPassword } from '../crypto/passwords.ts';
import { newClientSecret, newId } from '../crypto/random.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import { keycloakRealmDefaults } from './defaults.ts';
import { createRealmKey } from './keys.ts';
import {
  STRUCTURAL_REALM_FIELDS, clientRep, clientScopeRep, realmRep, roleRep,
  type ClientRepresentation, type GroupRepresentation, type RealmRepresentation, type RoleRepresentation,
  type UserRepresentation, userRep,
} from './representation.ts';
import { parseRealmSettings } from './settings.ts';

export class RealmExistsError extends Error {}
export class ImportError extends Error {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const idOr = (id: string | undefined): string => (id && UUID.test(id) ? id.toLowerCase() : newId());

export type ImportResult = { realmId: string; realm: string; clientSecrets: Record<string, string> };

/** Parses untrusted JSON into a RealmRepresentation; throws ImportError with every problem. */
export function parseRealmRepresentation(input: unknown): RealmRepresentation {
  const parsed = realmRep.safeParse(input);
  if (!parsed.success) {
    throw new ImportError(parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  }
  return parsed.data;
}

export async function importRealm(db: Db, box: SecretBox, input: unknown): Promise<ImportResult> {
  const rep = parseRealmRepresentation(input);
  return db.transaction().execute((trx) => importRealmIn(trx, box, rep));
}

/** importRealm inside a transaction the caller holds. */
export async function importRealmIn(trx: Db, box: SecretBox, rep: RealmRepresentation): Promise<ImportResult> {
  const existing = await trx.selectFrom('realms').select('id').where('name', '=', rep.realm).executeTakeFirst();
  if (existing) throw new RealmExistsError(`Conflict detected. Realm ${rep.realm} already exists`);
  return new RealmImport(trx, box, rep).run();
}

/** Adds users (UserRepresentations) to an existing realm, inside the caller's transaction. */
export async function addUsers(trx: Db, box: SecretBox, realmId: string, users: unknown[]): Promise<string[]> {
  const realm = await trx.selectFrom('realms').select(['id', 'name']).where('id', '=', realmId).executeTakeFirstOrThrow();
  const target = new RealmImport(trx, box, parseRealmRepresentation({ realm: realm.name, id: realm.id }));
  await target.loadExisting();
  const ids: string[] = [];
  for (const user of users) {
    const parsed = userRep.safeParse(user);
    if (!parsed.success) throw new ImportError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    ids.push(await target.insertUser(parsed.data));
  }
  return ids;
}

class RealmImport {
  readonly db: Db;
  readonly box: SecretBox;
  readonly rep: RealmRepresentation;
  readonly realmId: string;
  readonly defaults;
  readonly realmRoles = new Map<string, string>();
  /** clientId -> (role name -> role id) */
  readonly clientRoles = new Map<string, Map<string, string>>();
  /** clientId -> client uuid */
  readonly clients = new Map<string, string>();
  readonly scopes = new Map<string, string>();
  readonly clientSecrets: Record<string, string> = {};
  /** '/parent/child' -> group id */
  readonly groupPaths = new Map<string, string>();

  constructor(db: Db, box: SecretBox, rep: RealmRepresentation) {
    this.db = db;
    this.box = box;
    this.rep = rep;
    this.realmId = idOr(rep.id);
    this.defaults = keycloakRealmDefaults(rep.realm, { master: rep.realm === 'master' });
  }

  async run(): Promise<ImportResult> {
    const { rep, defaults } = this;
    const settings: Record<string, unknown> = { ...defaults.settings };
    for (const [key, value] of Object.entries(rep)) {
      if (!STRUCTURAL_REALM_FIELDS.has(key) && value !== undefined) settings[key] = value;
    }
    await this.db.insertInto('realms').values({
      id: this.realmId,
      name: rep.realm,
      enabled: rep.enabled,
      display_name: rep.displayName ?? null,
      settings: JSON.stringify(settings),
      not_before: rep.notBefore ?? 0,
    }).execute();

    await this.importClientScopes();
    await this.importRealmRoles();
    const clientReps = this.mergedClients();
    for (const client of clientReps) await this.insertClient(client);
    await this.importComposites(clientReps);
    await this.importGroups(rep.groups ?? [], null);
    const users = rep.users ?? [];
    for (const user of users) await this.insertUser(user);
    for (const client of clientReps) {
      if (client.serviceAccountsEnabled && !users.some((u) => u.serviceAccountClientId === client.clientId)) {
        await this.insertServiceAccount(client.clientId);
      }
    }
    await this.importScopeMappings();

    const { defaultSignatureAlgorithm } = parseRealmSettings(settings);
    await createRealmKey(this.db, this.box, this.realmId, 'RS256');
    if (defaultSignatureAlgorithm !== 'RS256') await createRealmKey(this.db, this.box, this.realmId, defaultSignatureAlgorithm);
    return { realmId: this.realmId, realm: rep.realm, clientSecrets: this.clientSecrets };
  }

  async importClientScopes(): Promise<void> {
    const { rep, defaults } = this;
    const scopeReps = rep.clientScopes ?? defaults.clientScopes.map((s) => clientScopeRep.parse(s));
    for (const scope of scopeReps) {
      const id = idOr(scope.id);
      this.scopes.set(scope.name, id);
      await this.db.insertInto('client_scopes').values({
        id, realm_id: this.realmId, name: scope.name, description: scope.description ?? null,
        protocol: scope.protocol, attributes: JSON.stringify(scope.attributes),
      }).execute();
      for (const mapper of scope.protocolMappers) {
        await this.db.insertInto('protocol_mappers').values({
          id: idOr(mapper.id), realm_id: this.realmId, client_scope_id: id, client_id: null, name: mapper.name,
          protocol: mapper.protocol, protocol_mapper: mapper.protocolMapper, config: JSON.stringify(mapper.config),
        }).execute();
      }
    }
    const defaultNames = rep.defaultDefaultClientScopes ?? defaults.defaultDefaultClientScopes;
    const optionalNames = rep.defaultOptionalClientScopes ?? defaults.defaultOptionalClientScopes;
    for (const [names, isDefault] of [[defaultNames, true], [optionalNames, false]] as const) {
      for (const name of names) {
        const scopeId = this.scopes.get(name);
        if (!scopeId) continue; // Keycloak ignores defaults naming a scope that does not exist
        await this.db.insertInto('realm_default_client_scopes')
          .values({ realm_id: this.realmId, client_scope_id: scopeId, default_scope: isDefault })
          .onConflict((oc) => oc.doNothing()).execute();
      }
    }
  }

  async insertRole(role: RoleRepresentation, clientUuid: string | null): Promise<string> {
    const id = idOr(role.id);
    await this.db.insertInto('roles').values({
      id, realm_id: this.realmId, client_id: clientUuid, name: role.name,
      description: role.description ?? null, attributes: JSON.stringify(role.attributes ?? {}),
    }).execute();
    return id;
  }

  /** Realm roles: Keycloak's defaults, overridden by name by the representation's. */
  realmRoleReps(): RoleRepresentation[] {
    const { rep, defaults } = this;
    const byName = new Map<string, RoleRepresentation>();
    for (const role of [...defaults.roles.realm, defaults.defaultRole]) byName.set(role.name, roleRep.parse(role));
    for (const role of rep.roles?.realm ?? []) byName.set(role.name, role);
    if (rep.defaultRole) byName.set(rep.defaultRole.name, { ...byName.get(rep.defaultRole.name), ...rep.defaultRole });
    return [...byName.values()];
  }

  /** A client's roles: built-in client defaults, overridden by name by the representation's. */
  clientRoleReps(clientId: string): RoleRepresentation[] {
    const byName = new Map<string, RoleRepresentation>();
    for (const role of this.defaults.roles.client[clientId] ?? []) byName.set(role.name, roleRep.parse(role));
    for (const role of this.rep.roles?.client?.[clientId] ?? []) byName.set(role.name, role);
    return [...byName.values()];
  }

  async importRealmRoles(): Promise<void> {
    for (const role of this.realmRoleReps()) this.realmRoles.set(role.name, await this.insertRole(role, null));
  }

  /** Keycloak's built-in clients, unless the representation brings its own of the same clientId. */
  mergedClients(): ClientRepresentation[] {
    const given = this.rep.clients ?? [];
    const givenIds = new Set(given.map((c) => c.clientId));
    const builtIn = this.defaults.clients.filter((c) => !givenIds.has(c.clientId)).map((c) => clientRep.parse(c));
    return [...builtIn, ...given];
  }

  async insertClient(client: ClientRepresentation): Promise<void> {
    const id = idOr(client.id);
    this.clients.set(client.clientId, id);
    const confidential = !client.publicClient && !client.bearerOnly;
    let secret: string | null = null;
    if (confidential || client.bearerOnly) {
      secret = client.secret && client.secret !== '**********' ? client.secret : newClientSecret();
      this.clientSecrets[client.clientId] = secret;
    }
    const {
      id: _id, clientId, name, description, rootUrl, baseUrl, adminUrl, enabled, protocol, clientAuthenticatorType,
      secret: _secret, publicClient, bearerOnly, standardFlowEnabled, implicitFlowEnabled, directAccessGrantsEnabled,
      serviceAccountsEnabled, consentRequired, fullScopeAllowed, frontchannelLogout, redirectUris, webOrigins,
      attributes, defaultClientScopes, optionalClientScopes, protocolMappers, ...extra
    } = client;
    await this.db.insertInto('clients').values({
      id, realm_id: this.realmId, client_id: clientId, name: name ?? null, description: description ?? null,
      root_url: rootUrl ?? null, base_url: baseUrl ?? null, admin_url: adminUrl ?? null, enabled, protocol,
      client_authenticator_type: clientAuthenticatorType,
      secret_sealed: secret === null ? null : this.box.seal(secret),
      public_client: publicClient, bearer_only: bearerOnly, standard_flow_enabled: standardFlowEnabled,
      implicit_flow_enabled: implicitFlowEnabled, direct_access_grants_enabled: directAccessGrantsEnabled,
      service_accounts_enabled: serviceAccountsEnabled, consent_required: consentRequired,
      full_scope_allowed: fullScopeAllowed, frontchannel_logout: frontchannelLogout,
      redirect_uris: JSON.stringify(redirectUris), web_origins: JSON.stringify(webOrigins),
      attributes: JSON.stringify(attributes), extra: JSON.stringify(extra),
    }).execute();

    // Clients without explicit scopes get the realm's defaults, as in Keycloak.
    const realmDefaults = await this.db.selectFrom('realm_default_client_scopes')
      .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
      .select(['client_scopes.name', 'realm_default_client_scopes.default_scope'])
      .where('realm_default_client_scopes.realm_id', '=', this.realmId)
      .where('client_scopes.protocol', '=', protocol).execute();
    const defaultNames = [...(defaultClientScopes ?? realmDefaults.filter((s) => s.default_scope).map((s) => s.name))];
    // Keycloak 26 attaches the service_account scope to every client whose service account is on.
    if (serviceAccountsEnabled && !defaultNames.includes('service_account')) defaultNames.push('service_account');
    const optionalNames = optionalClientScopes ?? realmDefaults.filter((s) => !s.default_scope).map((s) => s.name);
    for (const [names, isDefault] of [[defaultNames, true], [optionalNames, false]] as const) {
      for (const scopeName of names) {
        const scopeId = this.scopes.get(scopeName);
        if (!scopeId) continue;
        await this.db.insertInto('client_client_scopes').values({ client_id: id, client_scope_id: scopeId, default_scope: isDefault })
          .onConflict((oc) => oc.doNothing()).execute();
      }
    }
    for (const mapper of protocolMappers ?? []) {
      await this.db.insertInto('protocol_mappers').values({
        id: idOr(mapper.id), realm_id: this.realmId, client_id: id, client_scope_id: null, name: mapper.name,
        protocol: mapper.protocol, protocol_mapper: mapper.protocolMapper, config: JSON.stringify(mapper.config),
      }).execute();
    }

    const roles = new Map<string, string>();
    this.clientRoles.set(clientId, roles);
    for (const role of this.clientRoleReps(clientId)) roles.set(role.name, await this.insertRole(role, id));
  }

  roleId(clientId: string | null, name: string): string {
    const id = clientId === null ? this.realmRoles.get(name) : this.clientRoles.get(clientId)?.get(name);
    if (!id) throw new ImportError(clientId === null ? `realm role "${name}" does not exist` : `role "${name}" of client "${clientId}" does not exist`);
    return id;
  }

  async importComposites(clientReps: ClientRepresentation[]): Promise<void> {
    const all: Array<[string | null, RoleRepresentation]> = [
      ...this.realmRoleReps().map((role): [null, RoleRepresentation] => [null, role]),
      ...clientReps.flatMap((client) => this.clientRoleReps(client.clientId).map((role): [string, RoleRepresentation] => [client.clientId, role])),
    ];
    for (const [clientId, role] of all) {
      const parentId = this.roleId(clientId, role.name);
      const children = [
        ...(role.composites?.realm ?? []).map((name) => this.roleId(null, name)),
        ...Object.entries(role.composites?.client ?? {}).flatMap(([cid, names]) => names.map((n) => this.roleId(cid, n))),
      ];
      for (const childId of children) {
        await this.db.insertInto('role_composites').values({ parent_id: parentId, child_id: childId })
          .onConflict((oc) => oc.doNothing()).execute();
      }
    }
  }

  async grantRoles(table: 'user_roles' | 'group_roles', ownerId: string, realmRoles: string[], clientRoles: Record<string, string[]>): Promise<void> {
    const ids = [
      ...realmRoles.map((name) => this.roleId(null, name)),
      ...Object.entries(clientRoles).flatMap(([cid, names]) => names.map((n) => this.roleId(cid, n))),
    ];
    for (const roleId of ids) {
      if (table === 'user_roles') {
        await this.db.insertInto('user_roles').values({ user_id: ownerId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
      } else {
        await this.db.insertInto('group_roles').values({ group_id: ownerId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
      }
    }
  }

  async importGroups(groups: GroupRepresentation[], parent: { id: string; path: string } | null): Promise<void> {
    for (const group of groups) {
      const id = idOr(group.id);
      const path = `${parent?.path ?? ''}/${group.name}`;
      this.groupPaths.set(path, id);
      await this.db.insertInto('groups').values({
        id, realm_id: this.realmId, parent_id: parent?.id ?? null, name: group.name,
        description: group.description ?? null, attributes: JSON.stringify(group.attributes ?? {}),
      }).execute();
      await this.grantRoles('group_roles', id, group.realmRoles ?? [], group.clientRoles ?? {});
      await this.importGroups(group.subGroups ?? [], { id, path });
    }
  }

  /** Fills the name -> id maps from a realm already in the database. */
  async loadExisting(): Promise<void> {
    const roles = await this.db.selectFrom('roles').leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['roles.id', 'roles.name', 'clients.client_id']).where('roles.realm_id', '=', this.realmId).execute();
    for (const role of roles) {
      if (role.client_id === null) this.realmRoles.set(role.name, role.id);
      else {
        if (!this.clientRoles.has(role.client_id)) this.clientRoles.set(role.client_id, new Map());
        this.clientRoles.get(role.client_id)!.set(role.name, role.id);
      }
    }
    for (const c of await this.db.selectFrom('clients').select(['id', 'client_id']).where('realm_id', '=', this.realmId).execute()) {
      this.clients.set(c.client_id, c.id);
    }
    const groups = await this.db.selectFrom('groups').select(['id', 'parent_id', 'name']).where('realm_id', '=', this.realmId).execute();
    const byId = new Map(groups.map((g) => [g.id, g]));
    const pathOf = (id: string): string => {
      const g = byId.get(id)!;
      return `${g.parent_id ? pathOf(g.parent_id) : ''}/${g.name}`;
    };
    for (const g of groups) this.groupPaths.set(pathOf(g.id), g.id);
  }

  async insertUser(user: UserRepresentation): Promise<string> {
    const id = idOr(user.id);
    const serviceAccountClient = user.serviceAccountClientId ? this.clients.get(user.serviceAccountClientId) : undefined;
    if (user.serviceAccountClientId && !serviceAccountClient) {
      throw new ImportError(`user "${user.username}": serviceAccountClientId "${user.serviceAccountClientId}" is not a client of the realm`);
    }
    await this.db.insertInto('users').values({
      id, realm_id: this.realmId, username: user.username.toLowerCase(), email: user.email?.toLowerCase() ?? null,
      email_verified: user.emailVerified, enabled: user.enabled, first_name: user.firstName ?? null,
      last_name: user.lastName ?? null, federation_link: user.federationLink ?? null,
      service_account_client_id: serviceAccountClient ?? null, attributes: JSON.stringify(user.attributes ?? {}),
      required_actions: JSON.stringify(user.requiredActions ?? []), not_before: user.notBefore ?? 0,
      ...(user.createdTimestamp ? { created_at: new Date(user.createdTimestamp) } : {}),
    }).execute();
    // A user without explicit role mappings gets the realm's default role, as Keycloak's user creation does.
    const realmRoles = user.realmRoles ?? [this.defaults.defaultRole.name];
    await this.grantRoles('user_roles', id, realmRoles, user.clientRoles ?? {});
    for (const path of user.groups ?? []) {
      const groupId = this.groupPaths.get(path.startsWith('/') ? path : `/${path}`);
      if (!groupId) throw new ImportError(`user "${user.username}": group "${path}" does not exist`);
      await this.db.insertInto('user_groups').values({ user_id: id, group_id: groupId }).onConflict((oc) => oc.doNothing()).execute();
    }
    for (const credential of user.credentials ?? []) {
      if (credential.type !== 'password') continue; // OTP and other types arrive with the MFA work
      const stored = credential.value !== undefined
        ? await hashPassword(credential.value)
        : credential.secretData !== undefined && credential.credentialData !== undefined
          ? parseStoredPassword(credential.secretData, credential.credentialData)
          : undefined;
      if (!stored) throw new ImportError(`user "${user.username}": a password credential needs "value" or "secretData" and "credentialData"`);
      await this.db.insertInto('credentials').values({
        id: idOr(credential.id), realm_id: this.realmId, user_id: id, type: 'password',
        user_label: credential.userLabel ?? null, secret_data: JSON.stringify(stored.secretData),
        credential_data: JSON.stringify(stored.credentialData), priority: credential.priority ?? 10,
        ...(credential.createdDate ? { created_at: new Date(credential.createdDate) } : {}),
      }).execute();
      if (credential.temporary) {
        const actions = [...new Set([...(user.requiredActions ?? []), 'UPDATE_PASSWORD'])];
        await this.db.updateTable('users').set({ required_actions: JSON.stringify(actions) }).where('id', '=', id).execute();
      }
    }
    return id;
  }

  async insertServiceAccount(clientId: string): Promise<void> {
    await this.insertUser({
      username: `service-account-${clientId}`, emailVerified: false, enabled: true, serviceAccountClientId: clientId,
    });
  }

  async importScopeMappings(): Promise<void> {
    const add = async (owner: { client?: string; clientScope?: string }, roleIds: string[]): Promise<void> => {
      const clientUuid = owner.client ? this.clients.get(owner.client) : undefined;
      const scopeUuid = owner.clientScope ? this.scopes.get(owner.clientScope) : undefined;
      if (!clientUuid && !scopeUuid) throw new ImportError(`scope mapping names unknown client or client scope "${owner.client ?? owner.clientScope}"`);
      for (const roleId of roleIds) {
        await this.db.insertInto('scope_mappings')
          .values({ client_id: clientUuid ?? null, client_scope_id: clientUuid ? null : scopeUuid ?? null, role_id: roleId })
          .onConflict((oc) => oc.doNothing()).execute();
      }
    };
    for (const mapping of this.rep.scopeMappings ?? this.defaults.scopeMappings) {
      await add(mapping, mapping.roles.map((name) => this.roleId(null, name)));
    }
    const clientScopeMappings: Record<string, Array<{ client?: string; clientScope?: string; roles: string[] }>> = this.rep.clientScopeMappings ?? this.defaults.clientScopeMappings;
    for (const [roleClientId, mappings] of Object.entries(clientScopeMappings)) {
      for (const mapping of mappings) await add(mapping, mapping.roles.map((name: string) => this.roleId(roleClientId, name)));
    }
  }
}
