// Creates a realm from a Keycloak RealmRepresentation (a realm export, or just {"realm": "x"}),
// filling in what Keycloak creates in every new realm. One transaction: a realm is created whole
// or not at all. The same writer adds resources to an existing realm (bootstrap admin, the Admin
// API's partial import).
import type { Insertable } from 'kysely';
import { z } from 'zod';

import { ACCESS_KEY_PATTERN } from '../access-keys/access-keys.ts';
import { hashPassword, parseStoredPassword } from '../crypto/passwords.ts';
import { newClientSecret, newId, UUID } from '../crypto/random.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { PasswordPolicyError, checkPassword, formatPasswordPolicy, formatPolicyViolation, parsePasswordPolicy, type PolicyEntry } from '../login/password-policy.ts';
import { RequiredActionsError, importedRequiredActions } from '../login/required-actions.ts';
import { EXTRA_FIELDS } from '../login/authenticator-settings.ts';
import { DEFAULT_AUTHENTICATOR_NAME, ensureDefaultAuthenticator } from '../login/login-authenticators.ts';
import { isSmtpMap, sealSmtpServer } from '../mail/smtp-config.ts';
import type { Db } from '../store/db.ts';
import type { AccessKeyTable, CredentialTable, FederatedIdentityTable, NewUser } from '../store/schema.ts';
import { COMPONENT_SECRET_KEYS, IDENTITY_PROVIDER_SECRET_KEYS, SECRET_MASK, sealSecrets } from '../store/sealed-config.ts';
import { keycloakRealmDefaults } from './defaults.ts';
import { createRealmKey } from './keys.ts';
import {
  STRUCTURAL_REALM_FIELDS, clientRep, clientScopeRep, loginAuthenticatorsRep, realmRep, roleRep,
  type ClientRepresentation, type CredentialRepresentation, type GroupRepresentation, type LoginAuthenticatorRepresentation,
  type RoleRepresentation, userRep,
} from './representation.ts';
import { parseRealmSettings } from './settings.ts';

export class RealmExistsError extends Error {}
export class ImportError extends Error {}

const idOr = (id: string | undefined | null): string => (id && UUID.test(id) ? id.toLowerCase() : newId());

/** Realm fields kept in their own tables although representation.ts does not list them as structural. */
const TABLE_REALM_FIELDS = new Set(['defaultGroups']);

/** Credential types whose secretData is a hash (readable); every other type's is sealed. */
const HASHED_TYPES = new Set(['password', 'password-history']);

/** Users are written in batches of this many rows (bounded statement size, few round trips). */
const USER_BATCH = 500;

// --- Representations Cloakroom stores beyond representation.ts (identity providers, components,
// federated identities, default groups). Loose like the others: unknown fields are kept or ignored.

/** IdP config: Keycloak's Map<String,String>; hand-written JSON may carry numbers or booleans. */
const stringConfig = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))
  .transform((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)])));
/** Component config: Keycloak's MultivaluedHashMap (string arrays); a single value is accepted too. */
const scalar = z.union([z.string(), z.number(), z.boolean()]).transform(String);
const multiConfig = z.record(z.string(), z.union([z.array(scalar), scalar, z.null()]))
  .transform((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null).map(([k, v]) => [k, Array.isArray(v) ? v : [v as string]])));

export const identityProviderRep = z.object({
  alias: z.string().min(1),
  internalId: z.string().optional(),
  providerId: z.string().min(1),
  displayName: z.string().nullish(),
  enabled: z.boolean().default(true),
  trustEmail: z.boolean().default(false),
  storeToken: z.boolean().default(false),
  linkOnly: z.boolean().default(false),
  hideOnLogin: z.boolean().default(false),
  config: stringConfig.default({}),
}).loose();
export type IdentityProviderRepresentation = z.infer<typeof identityProviderRep>;

export const identityProviderMapperRep = z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  identityProviderAlias: z.string().min(1),
  identityProviderMapper: z.string().min(1),
  config: stringConfig.default({}),
}).loose();
export type IdentityProviderMapperRepresentation = z.infer<typeof identityProviderMapperRep>;

export type ComponentExportRepresentation = {
  id?: string;
  name?: string | null;
  providerId: string;
  subType?: string | null;
  subComponents?: Record<string, ComponentExportRepresentation[]>;
  config?: Record<string, string[]>;
};
export const componentExportRep: z.ZodType<ComponentExportRepresentation> = z.lazy(() => z.object({
  id: z.string().optional(),
  name: z.string().nullish(),
  providerId: z.string().min(1),
  subType: z.string().nullish(),
  subComponents: z.record(z.string(), z.array(componentExportRep)).optional(),
  config: multiConfig.optional(),
}).loose());

export const federatedIdentityRep = z.object({
  identityProvider: z.string().min(1),
  userId: z.string().min(1),
  userName: z.string().nullish(),
}).loose();

const epochMs = z.number().int().min(0).max(8.64e15);

/**
 * An access key as exports write it (beyond Keycloak): the HMAC-SHA256 digest of its secret under
 * the exporting server's master key, never the secret, so it verifies only where that key is.
 */
export const accessKeyExportRep = z.object({
  id: z.string().regex(ACCESS_KEY_PATTERN, 'must be 52 upper-case Base32 characters'),
  secretDigest: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url HMAC-SHA256 digest'),
  label: z.string().max(255).refine((s) => !s.includes('\0'), 'must not contain NUL characters').nullish(),
  createdAt: epochMs.nullish(),
  expiresAt: epochMs.nullish(),
  enabled: z.boolean().default(true),
  lastUsedAt: epochMs.nullish(),
}).loose();

export const importUserRep = userRep.extend({
  federatedIdentities: z.array(federatedIdentityRep).optional(),
  /** Beyond Keycloak: users that sign in only with access keys, and their keys. */
  application: z.boolean().optional(),
  accessKeys: z.array(accessKeyExportRep).optional(),
});
export type ImportUserRepresentation = z.infer<typeof importUserRep>;

const importRealmRep = realmRep.extend({
  users: z.array(importUserRep).optional(),
  identityProviders: z.array(identityProviderRep).optional(),
  identityProviderMappers: z.array(identityProviderMapperRep).optional(),
  components: z.record(z.string(), z.array(componentExportRep)).optional(),
  defaultGroups: z.array(z.string()).optional(),
  /** Beyond Keycloak (which ignores the field): Cloakroom's login authenticators. */
  loginAuthenticators: loginAuthenticatorsRep.optional(),
});
export type RealmImportRepresentation = z.infer<typeof importRealmRep>;

export type ImportResult = { realmId: string; realm: string; clientSecrets: Record<string, string> };

function issues(error: z.ZodError, input?: unknown): string {
  return error.issues.map((i) => `${issuePlace(i.path, input)}: ${i.message}`).join('; ');
}

/** Where a problem is: a login authenticator is named rather than numbered. */
function issuePlace(path: PropertyKey[], input: unknown): string {
  if (path[0] === 'loginAuthenticators' && typeof path[1] === 'number') {
    const entry = (input as { loginAuthenticators?: unknown[] } | undefined)?.loginAuthenticators?.[path[1]];
    const name = (entry as { name?: unknown } | undefined)?.name;
    if (typeof name === 'string') return `login authenticator "${name}"${path.length > 2 ? `: ${path.slice(2).map(String).join('.')}` : ''}`;
  }
  return path.map(String).join('.') || '(root)';
}

/**
 * Parses untrusted JSON into a RealmRepresentation; throws ImportError with every problem. Stored
 * credentials are checked too, so a file is known good before any database work starts.
 */
export function parseRealmRepresentation(input: unknown): RealmImportRepresentation {
  const parsed = importRealmRep.safeParse(input);
  if (!parsed.success) throw new ImportError(issues(parsed.error, input));
  const extra = parsed.data as Record<string, unknown>;
  // Keycloak parses the password policy at import (its wording when invalid) and keeps its normal form.
  if (typeof extra.passwordPolicy === 'string') {
    try {
      extra.passwordPolicy = formatPasswordPolicy(parsePasswordPolicy(extra.passwordPolicy, { strict: true }));
    } catch (error) {
      if (error instanceof PasswordPolicyError) throw new ImportError(error.message);
      throw error;
    }
  }
  if (extra.requiredActions !== undefined && extra.requiredActions !== null) {
    try {
      importedRequiredActions(extra.requiredActions);
    } catch (error) {
      if (error instanceof RequiredActionsError) throw new ImportError(error.message);
      throw error;
    }
  }
  for (const user of parsed.data.users ?? []) {
    for (const credential of user.credentials ?? []) credentialToStore(user.username, credential);
  }
  return parsed.data;
}

/** A user representation (Admin API or partial import body), validated like those of a realm import. */
export function parseUserRepresentation(input: unknown): ImportUserRepresentation {
  const parsed = importUserRep.safeParse(input);
  if (!parsed.success) throw new ImportError(issues(parsed.error));
  for (const credential of parsed.data.credentials ?? []) credentialToStore(parsed.data.username, credential);
  return parsed.data;
}

export async function importRealm(db: Db, box: SecretBox, input: unknown): Promise<ImportResult> {
  const rep = parseRealmRepresentation(input);
  return db.transaction().execute((trx) => importRealmIn(trx, box, rep));
}

/** importRealm inside a transaction the caller holds. */
export async function importRealmIn(trx: Db, box: SecretBox, rep: RealmImportRepresentation): Promise<ImportResult> {
  const existing = await trx.selectFrom('realms').select('id').where('name', '=', rep.realm).executeTakeFirst();
  if (existing) throw new RealmExistsError(`Conflict detected. Realm ${rep.realm} already exists`);
  return new RealmImport(trx, box, rep).run();
}

/** Adds users (UserRepresentations) to an existing realm, inside the caller's transaction. */
export async function addUsers(trx: Db, box: SecretBox, realmId: string, users: unknown[]): Promise<string[]> {
  const writer = await RealmImport.forExisting(trx, box, realmId);
  return writer.insertUsers(users.map(parseUserRepresentation));
}

// --- Credentials ---------------------------------------------------------------------------

type StoredCredential =
  | { kind: 'plain'; type: 'password'; value: string }
  | { kind: 'stored'; type: string; secretData: string; credentialData: Record<string, unknown> };

function jsonObject(input: string | Record<string, unknown>, what: string): Record<string, unknown> {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new Error(`${what} is not valid JSON`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * What a credential of the representation stores, as Keycloak's createCredentials decides it: a
 * non-blank `value` is always a new password; otherwise secretData/credentialData are kept as given
 * (password hashes checked to be usable, OTP seeds checked for their value and algorithm data).
 */
function credentialToStore(username: string, credential: CredentialRepresentation): StoredCredential {
  const type = credential.type;
  if (credential.value !== undefined && credential.value.trim() !== '') return { kind: 'plain', type: 'password', value: credential.value };
  if (credential.secretData === undefined || credential.credentialData === undefined) {
    throw new ImportError(`user "${username}": a ${type} credential needs "value" or "secretData" and "credentialData"`);
  }
  try {
    if (HASHED_TYPES.has(type)) {
      const stored = parseStoredPassword(credential.secretData, credential.credentialData);
      return { kind: 'stored', type, secretData: JSON.stringify(stored.secretData), credentialData: stored.credentialData };
    }
    const secretData = typeof credential.secretData === 'string' ? credential.secretData : JSON.stringify(credential.secretData);
    const secret = jsonObject(credential.secretData, 'secretData');
    const data = jsonObject(credential.credentialData, 'credentialData');
    if (type === 'otp') {
      if (typeof secret.value !== 'string' || secret.value === '') throw new Error('secretData.value must be a non-empty string');
      if (data.subType !== 'totp' && data.subType !== 'hotp') throw new Error('credentialData.subType must be "totp" or "hotp"');
      for (const key of ['digits', 'period', 'counter'] as const) {
        if (data[key] !== undefined && !Number.isInteger(data[key])) throw new Error(`credentialData.${key} must be an integer`);
      }
      if (data.algorithm !== undefined && typeof data.algorithm !== 'string') throw new Error('credentialData.algorithm must be a string');
    }
    return { kind: 'stored', type, secretData, credentialData: data };
  } catch (error) {
    throw new ImportError(`user "${username}": ${type} credential: ${(error as Error).message}`);
  }
}

// --- The writer ------------------------------------------------------------------------------

/** Writes a realm's resources; holds the name -> id maps later references resolve through. */
export class RealmImport {
  readonly db: Db;
  readonly box: SecretBox;
  readonly rep: RealmImportRepresentation;
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
  /** IdP alias -> internal id */
  readonly identityProviders = new Map<string, string>();
  /** Lower-cased login authenticator name -> id */
  readonly loginAuthenticators = new Map<string, string>();
  #hasDefaultAuthenticator = false;
  /** Lower-cased usernames written by this writer: a second one is a mistake in the input. */
  readonly #usernames = new Set<string>();
  /** Access key ids written by this writer (ids are unique across realms). */
  readonly #accessKeyIds = new Set<string>();
  /** The realm's password policy: plain passwords in the input must meet it, as in Keycloak. */
  #passwordPolicy: PolicyEntry[] = [];

  constructor(db: Db, box: SecretBox, rep: RealmImportRepresentation) {
    this.db = db;
    this.box = box;
    this.rep = rep;
    this.realmId = idOr(rep.id);
    this.defaults = keycloakRealmDefaults(rep.realm, { master: rep.realm === 'master' });
  }

  /** A writer for a realm already in the database, its maps filled from there. */
  static async forExisting(db: Db, box: SecretBox, realmId: string): Promise<RealmImport> {
    const realm = await db.selectFrom('realms').select(['id', 'name', 'settings']).where('id', '=', realmId).executeTakeFirstOrThrow();
    const writer = new RealmImport(db, box, parseRealmRepresentation({ realm: realm.name, id: realm.id }));
    const policy = realm.settings.passwordPolicy;
    writer.#passwordPolicy = parsePasswordPolicy(typeof policy === 'string' ? policy : undefined);
    await writer.loadExisting();
    return writer;
  }

  async run(): Promise<ImportResult> {
    const { rep, defaults } = this;
    const settings: Record<string, unknown> = { ...defaults.settings };
    for (const [key, value] of Object.entries(rep)) {
      if (!STRUCTURAL_REALM_FIELDS.has(key) && !TABLE_REALM_FIELDS.has(key) && value !== undefined) settings[key] = value;
    }
    // Required action providers live in the settings (checked by parseRealmRepresentation).
    const requiredActions = (rep as Record<string, unknown>).requiredActions;
    if (requiredActions !== undefined && requiredActions !== null) settings.requiredActions = importedRequiredActions(requiredActions);
    this.#passwordPolicy = parsePasswordPolicy(typeof settings.passwordPolicy === 'string' ? settings.passwordPolicy : undefined);
    if (isSmtpMap(settings.smtpServer)) settings.smtpServer = sealSmtpServer(this.box, settings.smtpServer);
    await this.db.insertInto('realms').values({
      id: this.realmId,
      name: rep.realm,
      enabled: rep.enabled,
      display_name: rep.displayName ?? null,
      settings: JSON.stringify(settings),
      not_before: rep.notBefore ?? 0,
    }).execute();

    await this.importLoginAuthenticators(rep.loginAuthenticators ?? []);
    await this.importClientScopes();
    await this.importRealmRoles();
    const clientReps = this.mergedClients();
    for (const client of clientReps) await this.insertClient(client);
    await this.importComposites(clientReps);
    await this.importGroups(rep.groups ?? [], null);
    await this.importDefaultGroups(rep.defaultGroups ?? []);
    for (const idp of rep.identityProviders ?? []) await this.insertIdentityProvider(idp);
    for (const mapper of rep.identityProviderMappers ?? []) await this.insertIdentityProviderMapper(mapper);
    await this.importComponents(rep.components ?? {}, this.realmId);
    const users = rep.users ?? [];
    await this.insertUsers(users);
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

  /** Inserts a client (scopes, mappers, and for built-in clients their default roles); returns its uuid. */
  async insertClient(client: ClientRepresentation): Promise<string> {
    const id = idOr(client.id);
    this.clients.set(client.clientId, id);
    const confidential = !client.publicClient && !client.bearerOnly;
    let secret: string | null = null;
    if (confidential || client.bearerOnly) {
      secret = client.secret && client.secret !== SECRET_MASK ? client.secret : newClientSecret();
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
    return id;
  }

  roleId(clientId: string | null, name: string): string {
    const id = clientId === null ? this.realmRoles.get(name) : this.clientRoles.get(clientId)?.get(name);
    if (!id) throw new ImportError(clientId === null ? `realm role "${name}" does not exist` : `role "${name}" of client "${clientId}" does not exist`);
    return id;
  }

  async importComposites(clientReps: ClientRepresentation[]): Promise<void> {
    await this.insertComposites([
      ...this.realmRoleReps().map((role): [null, RoleRepresentation] => [null, role]),
      ...clientReps.flatMap((client) => this.clientRoleReps(client.clientId).map((role): [string, RoleRepresentation] => [client.clientId, role])),
    ]);
  }

  /** Composite links of roles (already inserted), by the names in their `composites`. */
  async insertComposites(roles: Array<[string | null, RoleRepresentation]>): Promise<void> {
    for (const [clientId, role] of roles) {
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

  /** Adds realm and client roles (partial import): rows first, then their composites. Returns the new ids. */
  async insertRoles(realm: RoleRepresentation[], client: Record<string, RoleRepresentation[]>): Promise<void> {
    for (const role of realm) this.realmRoles.set(role.name, await this.insertRole(role, null));
    for (const [clientId, roles] of Object.entries(client)) {
      const clientUuid = this.clients.get(clientId);
      if (!clientUuid) throw new ImportError(`client "${clientId}" does not exist`);
      if (!this.clientRoles.has(clientId)) this.clientRoles.set(clientId, new Map());
      for (const role of roles) this.clientRoles.get(clientId)!.set(role.name, await this.insertRole(role, clientUuid));
    }
    await this.insertComposites([
      ...realm.map((role): [null, RoleRepresentation] => [null, role]),
      ...Object.entries(client).flatMap(([clientId, roles]) => roles.map((role): [string, RoleRepresentation] => [clientId, role])),
    ]);
  }

  async grantRoles(table: 'user_roles' | 'group_roles', ownerId: string, realmRoles: string[], clientRoles: Record<string, string[]>): Promise<void> {
    const ids = this.roleIds(realmRoles, clientRoles);
    for (const roleId of ids) {
      if (table === 'user_roles') {
        await this.db.insertInto('user_roles').values({ user_id: ownerId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
      } else {
        await this.db.insertInto('group_roles').values({ group_id: ownerId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
      }
    }
  }

  roleIds(realmRoles: string[], clientRoles: Record<string, string[]>): string[] {
    return [...new Set([
      ...realmRoles.map((name) => this.roleId(null, name)),
      ...Object.entries(clientRoles).flatMap(([cid, names]) => names.map((n) => this.roleId(cid, n))),
    ])];
  }

  async importGroups(groups: GroupRepresentation[], parent: { id: string; path: string } | null): Promise<string[]> {
    const ids: string[] = [];
    for (const group of groups) {
      const id = idOr(group.id);
      ids.push(id);
      const path = `${parent?.path ?? ''}/${group.name}`;
      this.groupPaths.set(path, id);
      const loginAuthenticatorId = group.loginAuthenticator ? await this.loginAuthenticatorId(group.loginAuthenticator, `group "${path}"`) : null;
      await this.db.insertInto('groups').values({
        id, realm_id: this.realmId, parent_id: parent?.id ?? null, name: group.name,
        description: group.description ?? null, attributes: JSON.stringify(group.attributes ?? {}),
        login_authenticator_id: loginAuthenticatorId,
      }).execute();
      await this.grantRoles('group_roles', id, group.realmRoles ?? [], group.clientRoles ?? {});
      await this.importGroups(group.subGroups ?? [], { id, path });
    }
    return ids;
  }

  /**
   * Login authenticators before the groups and users that name them. The default entry names and
   * describes the default row (created as the Admin API creates it; no description is none, as
   * exports write it) and sets its extras; its Keycloak fields are the realm settings just written.
   */
  async importLoginAuthenticators(list: LoginAuthenticatorRepresentation[]): Promise<void> {
    // The default first: its row starts as "default", which a named entry may be called.
    const ordered = [...list].sort((a, b) => Number(b.default ?? false) - Number(a.default ?? false));
    for (const entry of ordered) {
      const { name, description, default: isDefault, ...settings } = entry;
      let id: string;
      if (isDefault) {
        id = (await ensureDefaultAuthenticator(this.db, this.realmId)).id;
        const extras = Object.fromEntries(EXTRA_FIELDS.map((field) => [field, settings[field]]));
        await this.db.updateTable('login_authenticators')
          .set({ name, description: description ?? null, config: JSON.stringify(extras) })
          .where('id', '=', id).execute();
        this.#hasDefaultAuthenticator = true;
      } else {
        id = newId();
        await this.db.insertInto('login_authenticators').values({
          id, realm_id: this.realmId, name, description: description ?? null, is_default: false, config: JSON.stringify(settings),
        }).execute();
      }
      this.loginAuthenticators.set(name.toLowerCase(), id);
    }
  }

  /** The id of the login authenticator `owner` names; the default row is made on first use, as elsewhere. */
  async loginAuthenticatorId(name: string, owner: string): Promise<string> {
    const known = this.loginAuthenticators.get(name.toLowerCase());
    if (known) return known;
    if (!this.#hasDefaultAuthenticator && name.toLowerCase() === DEFAULT_AUTHENTICATOR_NAME) {
      const row = await ensureDefaultAuthenticator(this.db, this.realmId);
      this.#hasDefaultAuthenticator = true;
      this.loginAuthenticators.set(row.name.toLowerCase(), row.id);
      if (row.name.toLowerCase() === name.toLowerCase()) return row.id;
    }
    throw new ImportError(`${owner}: login authenticator "${name}" does not exist`);
  }

  groupId(path: string): string | undefined {
    return this.groupPaths.get(path.startsWith('/') ? path : `/${path}`);
  }

  async importDefaultGroups(paths: string[]): Promise<void> {
    for (const path of paths) {
      const groupId = this.groupId(path);
      // Keycloak refuses the import too ("default group in realm rep doesn't exist").
      if (!groupId) throw new ImportError(`default group "${path}" does not exist`);
      await this.db.insertInto('realm_default_groups').values({ realm_id: this.realmId, group_id: groupId })
        .onConflict((oc) => oc.doNothing()).execute();
    }
  }

  /** Inserts an identity provider; its secret config values are sealed. Returns the internal id. */
  async insertIdentityProvider(idp: IdentityProviderRepresentation): Promise<string> {
    const {
      alias, internalId, providerId, displayName, enabled, trustEmail, storeToken, linkOnly, hideOnLogin, config: given,
      types: _types, ...extra // `types` is computed by Keycloak from the provider, never stored
    } = idp;
    const id = idOr(internalId);
    // Keycloak still reads the legacy config attribute and moves it to the field.
    const { hideOnLoginPage, ...config } = given;
    const { config: plain, sealed } = sealSecrets(this.box, config, IDENTITY_PROVIDER_SECRET_KEYS);
    await this.db.insertInto('identity_providers').values({
      internal_id: id, realm_id: this.realmId, alias, provider_id: providerId, display_name: displayName ?? null,
      enabled, trust_email: trustEmail, store_token: storeToken, link_only: linkOnly,
      hide_on_login: hideOnLoginPage !== undefined ? hideOnLoginPage === 'true' : hideOnLogin,
      config: JSON.stringify(plain), secrets_sealed: sealed, extra: JSON.stringify(extra),
    }).execute();
    this.identityProviders.set(alias, id);
    return id;
  }

  async insertIdentityProviderMapper(mapper: IdentityProviderMapperRepresentation): Promise<string> {
    const idpId = this.identityProviders.get(mapper.identityProviderAlias);
    if (!idpId) throw new ImportError(`identity provider mapper "${mapper.name}": identity provider "${mapper.identityProviderAlias}" does not exist`);
    const id = idOr(mapper.id);
    await this.db.insertInto('identity_provider_mappers').values({
      id, realm_id: this.realmId, identity_provider_id: idpId, name: mapper.name,
      mapper_type: mapper.identityProviderMapper, config: JSON.stringify(mapper.config),
    }).execute();
    return id;
  }

  /** Components by provider type, with their sub-components (Keycloak's export shape). */
  async importComponents(components: Record<string, ComponentExportRepresentation[]>, parentId: string): Promise<void> {
    for (const [providerType, list] of Object.entries(components)) {
      for (const component of list) {
        const id = idOr(component.id);
        const { config, sealed } = sealSecrets(this.box, component.config ?? {}, COMPONENT_SECRET_KEYS);
        await this.db.insertInto('components').values({
          id, realm_id: this.realmId, parent_id: parentId, name: component.name ?? '',
          provider_id: component.providerId, provider_type: providerType, sub_type: component.subType ?? null,
          config: JSON.stringify(config), secrets_sealed: sealed,
        }).execute();
        await this.importComponents(component.subComponents ?? {}, id);
      }
    }
  }

  /** Fills the name -> id maps from the database (a realm that exists, or after deletions). */
  async loadExisting(): Promise<void> {
    for (const map of [this.realmRoles, this.clientRoles, this.clients, this.scopes, this.groupPaths, this.identityProviders, this.loginAuthenticators]) map.clear();
    const authenticators = await this.db.selectFrom('login_authenticators').select(['id', 'name', 'is_default']).where('realm_id', '=', this.realmId).execute();
    for (const a of authenticators) this.loginAuthenticators.set(a.name.toLowerCase(), a.id);
    this.#hasDefaultAuthenticator = authenticators.some((a) => a.is_default);
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
      if (!this.clientRoles.has(c.client_id)) this.clientRoles.set(c.client_id, new Map());
    }
    for (const s of await this.db.selectFrom('client_scopes').select(['id', 'name']).where('realm_id', '=', this.realmId).execute()) {
      this.scopes.set(s.name, s.id);
    }
    for (const idp of await this.db.selectFrom('identity_providers').select(['internal_id', 'alias']).where('realm_id', '=', this.realmId).execute()) {
      this.identityProviders.set(idp.alias, idp.internal_id);
    }
    const groups = await this.db.selectFrom('groups').select(['id', 'parent_id', 'name']).where('realm_id', '=', this.realmId).execute();
    const byId = new Map(groups.map((g) => [g.id, g]));
    const pathOf = (id: string): string => {
      const g = byId.get(id)!;
      return `${g.parent_id ? pathOf(g.parent_id) : ''}/${g.name}`;
    };
    for (const g of groups) this.groupPaths.set(pathOf(g.id), g.id);
  }

  async insertUser(user: ImportUserRepresentation): Promise<string> {
    const [id] = await this.insertUsers([user]);
    return id!;
  }

  /** Inserts users with their credentials, role and group mappings and IdP links, in batches. */
  async insertUsers(users: ImportUserRepresentation[]): Promise<string[]> {
    const ids: string[] = [];
    for (let start = 0; start < users.length; start += USER_BATCH) {
      ids.push(...await this.#insertUserBatch(users.slice(start, start + USER_BATCH)));
    }
    return ids;
  }

  async #insertUserBatch(batch: ImportUserRepresentation[]): Promise<string[]> {
    const ids = batch.map((user) => idOr(user.id));
    const users: NewUser[] = [];
    const userRoles: Array<{ user_id: string; role_id: string }> = [];
    const userGroups: Array<{ user_id: string; group_id: string }> = [];
    const federated: Array<Insertable<FederatedIdentityTable>> = [];
    const accessKeys: Array<Insertable<AccessKeyTable>> = [];
    // Plain passwords are hashed on the libuv pool, so a batch's hashes run side by side.
    const credentials = await Promise.all(batch.map((user, index) => this.#credentialRows(user, ids[index]!)));
    const authenticatorIds: Array<string | null> = [];
    for (const user of batch) {
      authenticatorIds.push(user.loginAuthenticator ? await this.loginAuthenticatorId(user.loginAuthenticator, `user "${user.username}"`) : null);
    }
    batch.forEach((user, index) => {
      const id = ids[index]!;
      const username = user.username.toLowerCase();
      if (this.#usernames.has(username)) throw new ImportError(`user "${user.username}" is listed twice`);
      this.#usernames.add(username);
      const serviceAccountClient = user.serviceAccountClientId ? this.clients.get(user.serviceAccountClientId) : undefined;
      if (user.serviceAccountClientId && !serviceAccountClient) {
        throw new ImportError(`user "${user.username}": serviceAccountClientId "${user.serviceAccountClientId}" is not a client of the realm`);
      }
      // A temporary password means "change it at the next login".
      const requiredActions = [...(user.requiredActions ?? [])];
      if ((user.credentials ?? []).some((c) => c.temporary) && credentials[index]!.some((c) => c.type === 'password') && !requiredActions.includes('UPDATE_PASSWORD')) {
        requiredActions.push('UPDATE_PASSWORD');
      }
      users.push({
        id, realm_id: this.realmId, username, email: user.email?.toLowerCase() ?? null,
        email_verified: user.emailVerified, enabled: user.enabled, first_name: user.firstName ?? null,
        last_name: user.lastName ?? null, federation_link: user.federationLink ?? null,
        service_account_client_id: serviceAccountClient ?? null, application: user.application ?? false,
        attributes: JSON.stringify(user.attributes ?? {}), login_authenticator_id: authenticatorIds[index]!,
        required_actions: JSON.stringify(requiredActions), not_before: user.notBefore ?? 0,
        ...(user.createdTimestamp ? { created_at: new Date(user.createdTimestamp) } : {}),
      });
      // A user without explicit role mappings gets the realm's default role, as Keycloak's user creation does.
      for (const roleId of this.roleIds(user.realmRoles ?? [this.defaults.defaultRole.name], user.clientRoles ?? {})) {
        userRoles.push({ user_id: id, role_id: roleId });
      }
      for (const path of new Set(user.groups ?? [])) {
        const groupId = this.groupId(path);
        if (!groupId) throw new ImportError(`user "${user.username}": group "${path}" does not exist`);
        userGroups.push({ user_id: id, group_id: groupId });
      }
      for (const key of user.accessKeys ?? []) {
        if (this.#accessKeyIds.has(key.id)) throw new ImportError(`user "${user.username}": access key ${key.id} is listed twice`);
        this.#accessKeyIds.add(key.id);
        accessKeys.push({
          id: key.id, realm_id: this.realmId, user_id: id, secret_digest: key.secretDigest, label: key.label ?? null,
          enabled: key.enabled, ...(key.createdAt !== undefined && key.createdAt !== null ? { created_at: new Date(key.createdAt) } : {}),
          expires_at: key.expiresAt !== undefined && key.expiresAt !== null ? new Date(key.expiresAt) : null,
          last_used_at: key.lastUsedAt !== undefined && key.lastUsedAt !== null ? new Date(key.lastUsedAt) : null,
        });
      }
      for (const link of user.federatedIdentities ?? []) {
        federated.push({
          realm_id: this.realmId, user_id: id, identity_provider: link.identityProvider,
          external_user_id: link.userId, external_username: link.userName ?? null,
        });
      }
    });
    if (users.length === 0) return ids;
    if (accessKeys.length > 0) {
      // A key id names one key on the whole server (the token endpoints look keys up by id).
      const taken = await this.db.selectFrom('access_keys').select('id').where('id', 'in', accessKeys.map((k) => k.id)).limit(1).executeTakeFirst();
      if (taken) throw new ImportError(`access key ${taken.id} already exists on this server`);
    }
    await this.db.insertInto('users').values(users).execute();
    await insertChunked(userRoles, (rows) => this.db.insertInto('user_roles').values(rows).onConflict((oc) => oc.doNothing()).execute());
    await insertChunked(userGroups, (rows) => this.db.insertInto('user_groups').values(rows).onConflict((oc) => oc.doNothing()).execute());
    await insertChunked(credentials.flat(), (rows) => this.db.insertInto('credentials').values(rows).execute());
    await insertChunked(federated, (rows) => this.db.insertInto('federated_identities').values(rows).execute());
    await insertChunked(accessKeys, (rows) => this.db.insertInto('access_keys').values(rows).execute());
    return ids;
  }

  async #credentialRows(user: ImportUserRepresentation, userId: string): Promise<Array<Insertable<CredentialTable>>> {
    const rows: Array<Insertable<CredentialTable>> = [];
    for (const credential of user.credentials ?? []) {
      const stored = credentialToStore(user.username, credential);
      const common = {
        id: idOr(credential.id), realm_id: this.realmId, user_id: userId, user_label: credential.userLabel ?? null,
        priority: credential.priority ?? 10, ...(credential.createdDate ? { created_at: new Date(credential.createdDate) } : {}),
      };
      if (stored.kind === 'plain') {
        const violation = checkPassword(this.#passwordPolicy, { password: stored.value, username: user.username.toLowerCase(), email: user.email?.toLowerCase() ?? null });
        if (violation) {
          throw new ImportError(`user "${user.username}": the password does not meet the realm's password policy (${violation.rule}): ${formatPolicyViolation(violation)}`);
        }
        const hashed = await hashPassword(stored.value);
        rows.push({ ...common, type: 'password', secret_data: JSON.stringify(hashed.secretData), credential_data: JSON.stringify(hashed.credentialData) });
      } else {
        // Password hashes stay readable (login parses them); OTP seeds and other credential secrets
        // can be used as they are, so they are sealed like every other secret at rest.
        const secretData = HASHED_TYPES.has(stored.type) ? stored.secretData : this.box.seal(stored.secretData);
        rows.push({ ...common, type: stored.type, secret_data: secretData, credential_data: JSON.stringify(stored.credentialData) });
      }
    }
    return rows;
  }

  async insertServiceAccount(clientId: string): Promise<void> {
    await this.insertUser(importUserRep.parse({
      username: `service-account-${clientId}`, emailVerified: false, enabled: true, serviceAccountClientId: clientId,
    }));
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

/** Multi-row inserts of up to 1000 rows per statement. */
async function insertChunked<T>(rows: T[], insert: (rows: T[]) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < rows.length; start += 1000) await insert(rows.slice(start, start + 1000));
}
