// A realm as Keycloak's realm export JSON (kc.sh export, the Admin API's partial-export): settings,
// roles, groups, clients, client scopes, scope mappings, identity providers, components and, when
// asked for, users with their credentials and access keys (as digests). What import.ts reads back
// in gives the same document.
// Every table is read with a handful of realm-wide queries (never one per user or client), so a
// realm with 100,000 users exports in a few seconds.
import { sql } from 'kysely';

import type { SecretBox } from '../crypto/secret-box.ts';
import { isSmtpMap, maskedSmtpServer, openSmtpServer } from '../mail/smtp-config.ts';
import type { Db } from '../store/db.ts';
import { SECRET_MASK, withSecrets } from '../store/sealed-config.ts';
import type { LoginAuthenticator, Realm } from '../store/schema.ts';
import { EXTRA_FIELDS, parseAuthenticatorSettings } from '../login/authenticator-settings.ts';
import { DEFAULT_AUTHENTICATOR_DESCRIPTION, DEFAULT_AUTHENTICATOR_NAME, authenticatorSettings } from '../login/login-authenticators.ts';
import { requiredActionProviders } from '../login/required-actions.ts';
import { keycloakRealmDefaults } from './defaults.ts';
import { STRUCTURAL_REALM_FIELDS, type RealmRepresentation } from './representation.ts';

/** The Keycloak version whose export format this is (the one defaults.ts reproduces). */
export const KEYCLOAK_EXPORT_VERSION = '26.7.1';

export class RealmNotFoundError extends Error {}

export type ExportOptions = {
  /** Include users with their credentials, role and group mappings and IdP links. */
  users: boolean;
  /** Secrets (client secrets, IdP and component secrets, SMTP password) in clear or as Keycloak's mask. */
  secrets: 'open' | 'masked';
  /** Include clients (default true); off for a partial export without clients. */
  clients?: boolean;
  /** Include roles and groups (default true); off for a partial export without them. */
  groupsAndRoles?: boolean;
  /** Include service-account users even when `users` is off (partial export with clients). */
  serviceAccounts?: boolean;
};

type Json = Record<string, unknown>;
type RoleRef = { id: string; name: string; clientUuid: string | null };

const byKey = <T>(key: (item: T) => string) => (a: T, b: T): number => {
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};
const sortedNames = (names: Iterable<string>): string[] => [...names].sort();

function groupBy<T, K>(items: T[], key: (item: T) => K): Map<K, T[]> {
  const map = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = map.get(k);
    if (list) list.push(item);
    else map.set(k, [item]);
  }
  return map;
}

/** Keycloak's order of realm settings (that of a fresh realm's export); unknown ones follow by name. */
const SETTINGS_ORDER = new Map(Object.keys(keycloakRealmDefaults('x').settings).map((key, index) => [key, index]));
function bySettingsOrder([a]: [string, unknown], [b]: [string, unknown]): number {
  const ia = SETTINGS_ORDER.get(a) ?? Number.MAX_SAFE_INTEGER;
  const ib = SETTINGS_ORDER.get(b) ?? Number.MAX_SAFE_INTEGER;
  return ia !== ib ? ia - ib : a < b ? -1 : a > b ? 1 : 0;
}

/** A default row as ensureDefaultAuthenticator makes it, untouched and unused, is left out so plain realms export as Keycloak does. */
const DEFAULT_EXTRAS = JSON.stringify(EXTRA_FIELDS.map((field) => parseAuthenticatorSettings({})[field]));

/** Realm fields that come from columns or other tables, never from realms.settings. */
const NOT_FROM_SETTINGS = new Set([...STRUCTURAL_REALM_FIELDS, 'defaultGroups', 'displayName']);

export async function exportRealm(db: Db, box: SecretBox, realmName: string, options: ExportOptions): Promise<RealmRepresentation> {
  const realm = await db.selectFrom('realms').selectAll().where('name', '=', realmName).executeTakeFirst();
  if (!realm) throw new RealmNotFoundError(`realm "${realmName}" does not exist`);
  return new RealmExport(db, box, realm, options).run();
}

class RealmExport {
  readonly db: Db;
  readonly box: SecretBox;
  readonly realm: Realm;
  readonly options: Required<ExportOptions>;
  /** client uuid -> clientId */
  readonly clientIds = new Map<string, string>();
  readonly roles = new Map<string, RoleRef>();
  /** login authenticator id -> name */
  readonly authenticatorNames = new Map<string, string>();
  /** Login authenticators an exported user or group names. */
  readonly usedAuthenticators = new Set<string>();

  constructor(db: Db, box: SecretBox, realm: Realm, options: ExportOptions) {
    this.db = db;
    this.box = box;
    this.realm = realm;
    this.options = { clients: true, groupsAndRoles: true, serviceAccounts: false, ...options };
  }

  secret(value: string): string {
    return this.options.secrets === 'open' ? value : SECRET_MASK;
  }

  /** A role mapping list as Keycloak writes it: realm role names and {clientId: names}. */
  roleNames(roleIds: Iterable<string>): { realm: string[]; client: Record<string, string[]> } {
    const realm: string[] = [];
    const client: Record<string, string[]> = {};
    for (const id of roleIds) {
      const role = this.roles.get(id);
      if (!role) continue;
      if (role.clientUuid === null) realm.push(role.name);
      else (client[this.clientIds.get(role.clientUuid)!] ??= []).push(role.name);
    }
    for (const names of Object.values(client)) names.sort();
    return { realm: realm.sort(), client: Object.fromEntries(Object.entries(client).sort(byKey(([k]) => k))) };
  }

  async run(): Promise<RealmRepresentation> {
    const { db, realm, options } = this;
    const realmId = realm.id;
    const clients = await db.selectFrom('clients').selectAll().where('realm_id', '=', realmId).orderBy('client_id').execute();
    for (const c of clients) this.clientIds.set(c.id, c.client_id);
    const roles = await db.selectFrom('roles').selectAll().where('realm_id', '=', realmId).orderBy('name').execute();
    for (const r of roles) this.roles.set(r.id, { id: r.id, name: r.name, clientUuid: r.client_id });
    const scopes = await db.selectFrom('client_scopes').selectAll().where('realm_id', '=', realmId).orderBy('name').execute();
    const scopeNames = new Map(scopes.map((s) => [s.id, s.name]));
    const mappers = await db.selectFrom('protocol_mappers').selectAll().where('realm_id', '=', realmId).orderBy('name').orderBy('id').execute();
    const mapperRep = (m: (typeof mappers)[number]): Json => ({
      id: m.id, name: m.name, protocol: m.protocol, protocolMapper: m.protocol_mapper, consentRequired: false, config: m.config,
    });
    const clientMappers = groupBy(mappers.filter((m) => m.client_id !== null), (m) => m.client_id!);
    const scopeMappers = groupBy(mappers.filter((m) => m.client_scope_id !== null), (m) => m.client_scope_id!);

    const authenticators = await db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', realmId)
      .orderBy('is_default', 'desc').orderBy(sql`lower(name)`).execute();
    for (const a of authenticators) this.authenticatorNames.set(a.id, a.name);

    const settings = realm.settings as Json;
    const rep: Json = { id: realm.id, realm: realm.name };
    const displayName = realm.display_name ?? settings.displayName;
    if (displayName !== undefined && displayName !== null) rep.displayName = displayName;
    // Settings in Keycloak's order (jsonb keeps none), with the column-backed values in their place.
    for (const [key, value] of Object.entries(settings).sort(bySettingsOrder)) {
      if (key === 'notBefore') rep.notBefore = realm.not_before;
      else if (key === 'enabled') rep.enabled = realm.enabled;
      else if (!NOT_FROM_SETTINGS.has(key)) rep[key] = key === 'smtpServer' ? this.smtpServer(value) : value;
    }
    rep.notBefore = realm.not_before;
    rep.enabled = realm.enabled;

    if (options.groupsAndRoles) {
      const composites = await db.selectFrom('role_composites').innerJoin('roles', 'roles.id', 'role_composites.parent_id')
        .select(['role_composites.parent_id', 'role_composites.child_id']).where('roles.realm_id', '=', realmId).execute();
      const childrenOf = groupBy(composites, (c) => c.parent_id);
      const roleRep = (r: (typeof roles)[number]): Json => {
        const children = (childrenOf.get(r.id) ?? []).map((c) => c.child_id);
        const out: Json = { id: r.id, name: r.name };
        if (r.description !== null) out.description = r.description;
        out.composite = children.length > 0;
        if (children.length > 0) {
          const names = this.roleNames(children);
          out.composites = {
            ...(names.realm.length > 0 ? { realm: names.realm } : {}),
            ...(Object.keys(names.client).length > 0 ? { client: names.client } : {}),
          };
        }
        out.clientRole = r.client_id !== null;
        out.containerId = r.client_id ?? realmId;
        out.attributes = r.attributes;
        return out;
      };
      const rolesRep: Json = { realm: roles.filter((r) => r.client_id === null).map(roleRep) };
      if (options.clients) {
        const byClient = groupBy(roles.filter((r) => r.client_id !== null), (r) => r.client_id!);
        rolesRep.client = Object.fromEntries(clients.map((c) => [c.client_id, (byClient.get(c.id) ?? []).map(roleRep)]));
      }
      rep.roles = rolesRep;
      rep.groups = await this.groups();
    }
    const defaultRole = roles.filter((r) => r.client_id === null && r.name.startsWith('default-roles-'))
      .sort(byKey((r) => (r.name === `default-roles-${realm.name.toLowerCase()}` ? '' : r.name)))[0];
    if (defaultRole) {
      rep.defaultRole = {
        id: defaultRole.id, name: defaultRole.name, ...(defaultRole.description !== null ? { description: defaultRole.description } : {}),
        composite: true, clientRole: false, containerId: realmId,
      };
    }
    const defaultGroups = await this.defaultGroupPaths();
    if (defaultGroups.length > 0) rep.defaultGroups = defaultGroups;

    const users = options.users || (options.serviceAccounts && options.clients) ? await this.users(options.users) : undefined;
    if (users) rep.users = users;

    const { scopeMappings, clientScopeMappings } = await this.scopeMappings(scopeNames);
    rep.scopeMappings = scopeMappings;
    rep.clientScopeMappings = clientScopeMappings;

    if (options.clients) {
      const links = await db.selectFrom('client_client_scopes').innerJoin('clients', 'clients.id', 'client_client_scopes.client_id')
        .select(['client_client_scopes.client_id', 'client_client_scopes.client_scope_id', 'client_client_scopes.default_scope'])
        .where('clients.realm_id', '=', realmId).execute();
      const linksOf = groupBy(links, (l) => l.client_id);
      rep.clients = clients.map((c) => {
        const extra = { ...(c.extra as Json) };
        const attributes = { ...c.attributes };
        if (options.secrets === 'masked' && attributes['client.secret.rotated']) attributes['client.secret.rotated'] = SECRET_MASK;
        const out: Json = { id: c.id, clientId: c.client_id };
        if (c.name !== null) out.name = c.name;
        if (c.description !== null) out.description = c.description;
        if (c.root_url !== null) out.rootUrl = c.root_url;
        if (c.admin_url !== null) out.adminUrl = c.admin_url;
        if (c.base_url !== null) out.baseUrl = c.base_url;
        Object.assign(out, {
          enabled: c.enabled, clientAuthenticatorType: c.client_authenticator_type,
          ...(c.secret_sealed !== null ? { secret: this.secret(this.box.open(c.secret_sealed)) } : {}),
          redirectUris: c.redirect_uris, webOrigins: c.web_origins, bearerOnly: c.bearer_only,
          consentRequired: c.consent_required, standardFlowEnabled: c.standard_flow_enabled,
          implicitFlowEnabled: c.implicit_flow_enabled, directAccessGrantsEnabled: c.direct_access_grants_enabled,
          serviceAccountsEnabled: c.service_accounts_enabled, publicClient: c.public_client,
          frontchannelLogout: c.frontchannel_logout, protocol: c.protocol, attributes, fullScopeAllowed: c.full_scope_allowed,
        });
        // Fields Cloakroom keeps without interpreting them (surrogateAuthRequired, notBefore...).
        for (const [key, value] of Object.entries(extra)) if (!(key in out)) out[key] = value;
        const ownMappers = clientMappers.get(c.id) ?? [];
        if (ownMappers.length > 0) out.protocolMappers = ownMappers.map(mapperRep);
        const own = linksOf.get(c.id) ?? [];
        out.defaultClientScopes = sortedNames(own.filter((l) => l.default_scope).map((l) => scopeNames.get(l.client_scope_id)!));
        out.optionalClientScopes = sortedNames(own.filter((l) => !l.default_scope).map((l) => scopeNames.get(l.client_scope_id)!));
        return out;
      });
    }

    rep.clientScopes = scopes.map((s) => {
      const out: Json = { id: s.id, name: s.name };
      if (s.description !== null) out.description = s.description;
      out.protocol = s.protocol;
      out.attributes = s.attributes;
      const own = scopeMappers.get(s.id) ?? [];
      if (own.length > 0) out.protocolMappers = own.map(mapperRep);
      return out;
    });
    const realmDefaults = await db.selectFrom('realm_default_client_scopes').select(['client_scope_id', 'default_scope'])
      .where('realm_id', '=', realmId).execute();
    rep.defaultDefaultClientScopes = sortedNames(realmDefaults.filter((d) => d.default_scope).map((d) => scopeNames.get(d.client_scope_id)!));
    rep.defaultOptionalClientScopes = sortedNames(realmDefaults.filter((d) => !d.default_scope).map((d) => scopeNames.get(d.client_scope_id)!));

    Object.assign(rep, await this.identityProviders());
    rep.components = await this.components();
    // The realm's required action providers: the stored list, or Keycloak's defaults.
    rep.requiredActions = requiredActionProviders(settings);
    const loginAuthenticators = this.loginAuthenticators(authenticators);
    if (loginAuthenticators) rep.loginAuthenticators = loginAuthenticators;
    rep.keycloakVersion = KEYCLOAK_EXPORT_VERSION;
    return rep as RealmRepresentation;
  }

  /**
   * Cloakroom's login authenticators (beyond Keycloak, which ignores the field): the default with
   * only its extras (its Keycloak fields are the realm's own), named ones with every setting.
   * Left out when there is nothing but an untouched, unused default.
   */
  loginAuthenticators(rows: LoginAuthenticator[]): Json[] | undefined {
    const pristine = (row: LoginAuthenticator): boolean => row.is_default && row.name === DEFAULT_AUTHENTICATOR_NAME
      && (row.description === null || row.description === DEFAULT_AUTHENTICATOR_DESCRIPTION) && !this.usedAuthenticators.has(row.id)
      && JSON.stringify(EXTRA_FIELDS.map((field) => authenticatorSettings(this.realm, row)[field])) === DEFAULT_EXTRAS;
    if (rows.every(pristine)) return undefined;
    return rows.map((row) => {
      const head: Json = { name: row.name, ...(row.description !== null ? { description: row.description } : {}) };
      const settings = authenticatorSettings(this.realm, row);
      if (!row.is_default) return { ...head, ...settings };
      return { ...head, default: true, ...Object.fromEntries(EXTRA_FIELDS.map((field) => [field, settings[field]])) };
    });
  }

  /** The name of the login authenticator a user or group row has, noted as used. */
  authenticatorName(id: string | null): string | undefined {
    if (id === null) return undefined;
    this.usedAuthenticators.add(id);
    return this.authenticatorNames.get(id);
  }

  /** The SMTP password is stored sealed (src/mail/smtp-config.ts): opened or masked like other secrets. */
  smtpServer(value: unknown): unknown {
    if (!isSmtpMap(value)) return value;
    return this.options.secrets === 'open' ? openSmtpServer(this.box, value) : maskedSmtpServer(value);
  }

  /** The group tree: Keycloak's GroupRepresentation with path, subGroups and role mappings. */
  async groups(): Promise<Json[]> {
    const realmId = this.realm.id;
    const groups = await this.db.selectFrom('groups').selectAll().where('realm_id', '=', realmId).orderBy('name').orderBy('id').execute();
    const grants = await this.db.selectFrom('group_roles').innerJoin('groups', 'groups.id', 'group_roles.group_id')
      .select(['group_roles.group_id', 'group_roles.role_id']).where('groups.realm_id', '=', realmId).execute();
    const rolesOf = groupBy(grants, (g) => g.group_id);
    const childrenOf = groupBy(groups, (g) => g.parent_id);
    const tree = (parentId: string | null, parentPath: string): Json[] => (childrenOf.get(parentId) ?? []).map((g) => {
      const path = `${parentPath}/${g.name}`;
      const names = this.roleNames((rolesOf.get(g.id) ?? []).map((r) => r.role_id));
      const loginAuthenticator = this.authenticatorName(g.login_authenticator_id);
      return {
        id: g.id, name: g.name, ...(g.description !== null ? { description: g.description } : {}), path,
        ...(parentId !== null ? { parentId } : {}), subGroups: tree(g.id, path), attributes: g.attributes,
        realmRoles: names.realm, clientRoles: names.client, ...(loginAuthenticator !== undefined ? { loginAuthenticator } : {}),
      };
    });
    return tree(null, '');
  }

  async groupPaths(): Promise<Map<string, string>> {
    const groups = await this.db.selectFrom('groups').select(['id', 'parent_id', 'name']).where('realm_id', '=', this.realm.id).execute();
    const byId = new Map(groups.map((g) => [g.id, g]));
    const paths = new Map<string, string>();
    const pathOf = (id: string): string => {
      const known = paths.get(id);
      if (known !== undefined) return known;
      const g = byId.get(id)!;
      const path = `${g.parent_id ? pathOf(g.parent_id) : ''}/${g.name}`;
      paths.set(id, path);
      return path;
    };
    for (const g of groups) pathOf(g.id);
    return paths;
  }

  async defaultGroupPaths(): Promise<string[]> {
    const rows = await this.db.selectFrom('realm_default_groups').select('group_id').where('realm_id', '=', this.realm.id).execute();
    if (rows.length === 0) return [];
    const paths = await this.groupPaths();
    return sortedNames(rows.map((r) => paths.get(r.group_id)!));
  }

  /** Users with everything Keycloak's exportUser writes; only service accounts unless `all`. */
  async users(all: boolean): Promise<Json[]> {
    const { db, options } = this;
    const realmId = this.realm.id;
    let userQuery = db.selectFrom('users').selectAll().where('realm_id', '=', realmId);
    if (!all) userQuery = userQuery.where('service_account_client_id', 'is not', null);
    const users = await userQuery.orderBy('username').execute();
    if (users.length === 0) return [];

    let roleQuery = db.selectFrom('user_roles').innerJoin('users', 'users.id', 'user_roles.user_id')
      .select(['user_roles.user_id', 'user_roles.role_id']).where('users.realm_id', '=', realmId);
    if (!all) roleQuery = roleQuery.where('users.service_account_client_id', 'is not', null);
    const roleRows = options.groupsAndRoles ? await roleQuery.execute() : [];
    const rolesOf = groupBy(roleRows, (r) => r.user_id);
    const groupRows = all
      ? await db.selectFrom('user_groups').innerJoin('users', 'users.id', 'user_groups.user_id')
        .select(['user_groups.user_id', 'user_groups.group_id']).where('users.realm_id', '=', realmId).execute()
      : [];
    const groupsOf = groupBy(groupRows, (r) => r.user_id);
    const paths = groupRows.length > 0 ? await this.groupPaths() : new Map<string, string>();
    const credentialRows = all
      ? await db.selectFrom('credentials').selectAll().where('realm_id', '=', realmId)
        .orderBy('user_id').orderBy('priority').orderBy('created_at').orderBy('id').execute()
      : [];
    const credentialsOf = groupBy(credentialRows, (c) => c.user_id);
    // Access keys as their digests, beside the credentials (and like them only in an open export):
    // they verify again on a server sharing this one's master key.
    const keyRows = all && options.secrets === 'open'
      ? await db.selectFrom('access_keys').selectAll().where('realm_id', '=', realmId).orderBy('user_id').orderBy('created_at').orderBy('id').execute()
      : [];
    const keysOf = groupBy(keyRows, (k) => k.user_id);
    const links = all ? await db.selectFrom('federated_identities').selectAll().where('realm_id', '=', realmId).orderBy('identity_provider').execute() : [];
    const linksOf = groupBy(links, (l) => l.user_id);

    return users.map((u) => {
      const credentials = credentialsOf.get(u.id) ?? [];
      const out: Json = { id: u.id, username: u.username };
      if (u.first_name !== null) out.firstName = u.first_name;
      if (u.last_name !== null) out.lastName = u.last_name;
      if (u.email !== null) out.email = u.email;
      out.emailVerified = u.email_verified;
      out.createdTimestamp = new Date(u.created_at).getTime();
      out.enabled = u.enabled;
      out.totp = credentials.some((c) => c.type === 'otp');
      if (u.federation_link !== null) out.federationLink = u.federation_link;
      if (u.service_account_client_id !== null) out.serviceAccountClientId = this.clientIds.get(u.service_account_client_id);
      if (u.application) out.application = true;
      if (Object.keys(u.attributes).length > 0) out.attributes = u.attributes;
      // Credentials are secrets through and through: a masked export leaves them out.
      if (all && options.secrets === 'open') {
        // Password hashes are stored as Keycloak's JSON text; other credential secrets are sealed.
        out.credentials = credentials.map((c) => ({
          id: c.id, type: c.type, ...(c.user_label !== null ? { userLabel: c.user_label } : {}),
          createdDate: new Date(c.created_at).getTime(),
          secretData: c.secret_data.startsWith('{') ? c.secret_data : this.box.open(c.secret_data),
          credentialData: JSON.stringify(c.credential_data), priority: c.priority,
        }));
      }
      const keys = keysOf.get(u.id) ?? [];
      if (keys.length > 0) {
        const ms = (value: Date | string | null): number | null => (value === null ? null : new Date(value).getTime());
        out.accessKeys = keys.map((k) => ({
          id: k.id, secretDigest: k.secret_digest, label: k.label, createdAt: ms(k.created_at), expiresAt: ms(k.expires_at),
          enabled: k.enabled, lastUsedAt: ms(k.last_used_at),
        }));
      }
      out.disableableCredentialTypes = out.totp ? ['otp'] : [];
      out.requiredActions = u.required_actions;
      const federated = linksOf.get(u.id) ?? [];
      if (federated.length > 0) {
        out.federatedIdentities = federated.map((l) => ({
          identityProvider: l.identity_provider, userId: l.external_user_id, ...(l.external_username !== null ? { userName: l.external_username } : {}),
        }));
      }
      if (options.groupsAndRoles) {
        // Always written, even empty: an absent list would give the user the default role on import.
        const names = this.roleNames((rolesOf.get(u.id) ?? []).map((r) => r.role_id));
        out.realmRoles = names.realm;
        if (Object.keys(names.client).length > 0) out.clientRoles = names.client;
      }
      out.notBefore = u.not_before;
      if (all) out.groups = sortedNames((groupsOf.get(u.id) ?? []).map((g) => paths.get(g.group_id)!));
      const loginAuthenticator = this.authenticatorName(u.login_authenticator_id);
      if (loginAuthenticator !== undefined) out.loginAuthenticator = loginAuthenticator;
      return out;
    });
  }

  /** Role scope mappings of clients and client scopes: realm roles and client roles apart. */
  async scopeMappings(scopeNames: Map<string, string>): Promise<{ scopeMappings: Json[]; clientScopeMappings: Record<string, Json[]> }> {
    const rows = await this.db.selectFrom('scope_mappings').innerJoin('roles', 'roles.id', 'scope_mappings.role_id')
      .select(['scope_mappings.client_id', 'scope_mappings.client_scope_id', 'scope_mappings.role_id'])
      .where('roles.realm_id', '=', this.realm.id).execute();
    type Owner = { key: string; rep: Json };
    const ownerOf = (row: (typeof rows)[number]): Owner | undefined => {
      if (row.client_id !== null) {
        if (!this.options.clients) return undefined;
        return { key: `client:${this.clientIds.get(row.client_id)}`, rep: { client: this.clientIds.get(row.client_id) } };
      }
      const name = scopeNames.get(row.client_scope_id!)!;
      return { key: `scope:${name}`, rep: { clientScope: name } };
    };
    const realmLevel = new Map<string, { rep: Json; roles: string[] }>();
    const clientLevel = new Map<string, Map<string, { rep: Json; roles: string[] }>>();
    for (const row of rows) {
      const owner = ownerOf(row);
      const role = this.roles.get(row.role_id);
      if (!owner || !role) continue;
      let target: Map<string, { rep: Json; roles: string[] }>;
      if (role.clientUuid === null) target = realmLevel;
      else {
        const roleClient = this.clientIds.get(role.clientUuid)!;
        target = clientLevel.get(roleClient) ?? new Map();
        clientLevel.set(roleClient, target);
      }
      const entry = target.get(owner.key) ?? { rep: owner.rep, roles: [] };
      entry.roles.push(role.name);
      target.set(owner.key, entry);
    }
    const list = (map: Map<string, { rep: Json; roles: string[] }>): Json[] => [...map.entries()]
      .sort(byKey(([key]) => key)).map(([, e]) => ({ ...e.rep, roles: sortedNames(e.roles) }));
    return {
      scopeMappings: list(realmLevel),
      clientScopeMappings: Object.fromEntries([...clientLevel.entries()].sort(byKey(([k]) => k)).map(([k, m]) => [k, list(m)])),
    };
  }

  async identityProviders(): Promise<{ identityProviders: Json[]; identityProviderMappers: Json[] }> {
    const realmId = this.realm.id;
    const idps = await this.db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realmId).orderBy('alias').execute();
    const aliases = new Map(idps.map((i) => [i.internal_id, i.alias]));
    const mappers = await this.db.selectFrom('identity_provider_mappers').selectAll().where('realm_id', '=', realmId).orderBy('name').orderBy('id').execute();
    return {
      identityProviders: idps.map((i) => ({
        alias: i.alias, ...(i.display_name !== null ? { displayName: i.display_name } : {}), internalId: i.internal_id,
        providerId: i.provider_id, enabled: i.enabled, trustEmail: i.trust_email, storeToken: i.store_token,
        linkOnly: i.link_only, hideOnLogin: i.hide_on_login,
        // Primitive booleans of Keycloak's representation: always present in its exports.
        addReadTokenRoleOnCreate: false, authenticateByDefault: false, ...(i.extra as Json),
        config: withSecrets(this.box, i.config, i.secrets_sealed, this.options.secrets),
      })),
      identityProviderMappers: mappers
        .map((m) => ({
          id: m.id, name: m.name, identityProviderAlias: aliases.get(m.identity_provider_id)!,
          identityProviderMapper: m.mapper_type, config: m.config,
        }))
        .sort(byKey((m) => m.identityProviderAlias)),
    };
  }

  /** Components as Keycloak exports them: {providerType: [component with subComponents]}. */
  async components(): Promise<Record<string, Json[]>> {
    const rows = await this.db.selectFrom('components').selectAll().where('realm_id', '=', this.realm.id)
      .orderBy('provider_type').orderBy('name').orderBy('id').execute();
    const childrenOf = groupBy(rows, (c) => c.parent_id);
    const level = (parentId: string): Record<string, Json[]> => {
      const out: Record<string, Json[]> = {};
      for (const c of childrenOf.get(parentId) ?? []) {
        (out[c.provider_type] ??= []).push({
          id: c.id, ...(c.name !== '' ? { name: c.name } : {}), providerId: c.provider_id, ...(c.sub_type !== null ? { subType: c.sub_type } : {}),
          subComponents: level(c.id), config: withSecrets(this.box, c.config, c.secrets_sealed, this.options.secrets),
        });
      }
      return out;
    };
    return level(this.realm.id);
  }
}
