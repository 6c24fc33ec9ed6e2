// Admin REST API: users (Keycloak's UsersResource and UserResource): search and count, create,
// read, update, delete; passwords and other credentials; group membership; sessions, logout and
// consents; links to identity providers; the e-mail actions (execute-actions-email, send-verify-email).
import { sql } from 'kysely';
import { z } from 'zod';

import { hashPassword, parseStoredPassword } from '../crypto/passwords.ts';
import { newId } from '../crypto/random.ts';
import { recordEvent } from '../events/events.ts';
import { LdapPasswordError } from '../federation/ldap/password.ts';
import { LdapUnavailableError } from '../federation/ldap/types.ts';
import { publicOrigin } from '../http/origin.ts';
import { actionTokenLifespan, sendActionEmail, userLocale } from '../login/action-emails.ts';
import { loginAuthenticatorFor } from '../login/login-authenticators.ts';
import { changePassword, PASSWORD_HISTORY, passwordViolation, storePasswordHash } from '../login/password-change.ts';
import { checkPassword, formatPolicyViolation, parsePasswordPolicy, type PolicyEntry, type PolicyViolation } from '../login/password-policy.ts';
import { defaultActionsForNewUser, SUPPORTED_REQUIRED_ACTIONS } from '../login/required-actions.ts';
import { MailError } from '../mail/mailer.ts';
import { isSmtpMap } from '../mail/smtp-config.ts';
import { redirectUriMatches } from '../oidc/client-policy.ts';
import { endSsoSession, endUserSessions } from '../oidc/session-end.ts';
import type { RealmContext } from '../realms/context.ts';
import { credentialRep, type CredentialRepresentation } from '../realms/representation.ts';
import { argon2Params, parseRealmSettings } from '../realms/settings.ts';
import type { Db } from '../store/db.ts';
import type { User } from '../store/schema.ts';
import { deleteUserSession } from '../store/sessions.ts';
import {
  countRealmPeople, emailTaken, escapeLike, isEveryPerson, listUsers, tokenSubjectCached, userSearchCondition, usernameTaken, type UserSearch, type UserSearchField,
} from '../store/users.ts';
import { releaseLockout } from './attack-detection.ts';
import { giveNewUserDefaults } from '../realms/new-users.ts';
import { UUID } from './realms.ts';
import {
  AdminError, AdminErrorResponse, badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest,
} from './router.ts';

/** Aliases of Keycloak 26's built-in required action providers. */
const REQUIRED_ACTIONS = new Set([
  'VERIFY_EMAIL', 'UPDATE_PROFILE', 'CONFIGURE_TOTP', 'UPDATE_PASSWORD', 'TERMS_AND_CONDITIONS', 'VERIFY_PROFILE',
  'delete_account', 'webauthn-register', 'webauthn-register-passwordless', 'update_user_locale', 'delete_credential',
  'CONFIGURE_RECOVERY_AUTHN_CODES', 'UPDATE_EMAIL', 'idp_link',
]);

/** Attributes Keycloak keeps as user columns, never as attributes. */
const ROOT_ATTRIBUTES = new Set(['username', 'email', 'firstName', 'lastName']);

/** Credential types whose secretData is a recoverable secret (sealed at rest); a password's is a hash. */
const HASHED_TYPES = new Set(['password', 'password-history']);

// ---------------------------------------------------------------------------------------------
// Representations

export type UserRepresentationOptions = {
  brief?: boolean;
  /** Keycloak's `access` map: what the caller may do with the user (set by the users routes). */
  access?: Record<string, boolean>;
};

/**
 * Keycloak's UserRepresentation of a user row (what GET /users/{id} answers). `brief` is what
 * lists with briefRepresentation=true answer. Other modules (group members, service-account-user)
 * use this too: keep the signature.
 */
export async function userRepresentation(db: Db, user: User, options: UserRepresentationOptions = {}): Promise<Record<string, unknown>> {
  const [rep] = await userRepresentations(db, [user], options);
  return rep!;
}

/** userRepresentation for a page of users, with a fixed number of queries. */
export async function userRepresentations(db: Db, users: User[], options: UserRepresentationOptions = {}): Promise<Array<Record<string, unknown>>> {
  const access = options.access ? { access: options.access } : {};
  const briefOf = (user: User): Record<string, unknown> => ({
    id: user.id,
    username: user.username,
    ...(user.first_name !== null ? { firstName: user.first_name } : {}),
    ...(user.last_name !== null ? { lastName: user.last_name } : {}),
    ...(user.email !== null ? { email: user.email } : {}),
    emailVerified: user.email_verified,
    createdTimestamp: new Date(user.created_at).getTime(),
    enabled: user.enabled,
    ...(user.federation_link !== null ? { federationLink: user.federation_link } : {}),
    // Beyond Keycloak: shown only for application users, so other users' representations stay Keycloak's.
    ...(user.application ? { application: true } : {}),
  });
  if (options.brief || users.length === 0) return users.map((user) => ({ ...briefOf(user), ...access }));

  const ids = users.map((u) => u.id);
  const withOtp = new Set((await db.selectFrom('credentials').select('user_id').distinct()
    .where('user_id', 'in', ids).where('type', '=', 'otp').execute()).map((r) => r.user_id));
  const clientUuids = [...new Set(users.flatMap((u) => (u.service_account_client_id ? [u.service_account_client_id] : [])))];
  const serviceAccountClients = new Map(clientUuids.length === 0 ? [] : (await db.selectFrom('clients').select(['id', 'client_id'])
    .where('id', 'in', clientUuids).execute()).map((c) => [c.id, c.client_id]));

  return users.map((user) => {
    const { federationLink, ...brief } = briefOf(user);
    const serviceAccountClientId = user.service_account_client_id ? serviceAccountClients.get(user.service_account_client_id) : undefined;
    return {
      ...brief,
      ...(Object.keys(user.attributes).length > 0 ? { attributes: user.attributes } : {}),
      totp: withOtp.has(user.id),
      ...(federationLink !== undefined ? { federationLink } : {}),
      ...(serviceAccountClientId ? { serviceAccountClientId } : {}),
      // Only user storage providers make credential types disableable; local users have none.
      disableableCredentialTypes: [],
      requiredActions: user.required_actions,
      notBefore: user.not_before,
      // Beyond Keycloak: the login authenticator assigned to the user itself (not via a group).
      ...(user.login_authenticator_id ? { loginAuthenticatorId: user.login_authenticator_id } : {}),
      ...access,
    };
  });
}

/**
 * CXone tells users by e-mail whenever their password changes, an administrator's reset included.
 * Best effort, off the request path: a realm without SMTP settings simply sends nothing.
 */
async function tellUserPasswordChanged(req: RealmRequest, user: User): Promise<void> {
  const smtp = (req.realm.settings as Record<string, unknown>).smtpServer;
  if (!user.email || !isSmtpMap(smtp) || !smtp.host) return;
  const realm = await req.services.registry.get(req.realm.name);
  if (!realm) return;
  await req.services.mailer.send(realm, {
    to: user.email, template: 'password-updated', locale: userLocale(realm, user),
    data: {
      realmName: realm.name, ...(realm.realm.display_name ? { realmDisplayName: realm.realm.display_name } : {}),
      user: { username: user.username, firstName: user.first_name, lastName: user.last_name, email: user.email },
    },
  }).catch((err: unknown) => req.services.logger.warn({ err, realm: realm.name, userId: user.id }, 'could not send the password-changed e-mail'));
}

/** REMOVE_TOTP in the realm's login events (next to the admin event) when OTP devices went. */
async function recordRemovedTotp(req: RealmRequest, userId: string, removed: number): Promise<void> {
  if (removed === 0) return;
  const realm = await req.services.registry.get(req.realm.name);
  if (realm) recordEvent(req.db, realm, req.services.logger, { type: 'REMOVE_TOTP', userId, ipAddress: req.ctx.ip, details: { removed_by: 'admin', credentials: String(removed) } });
}

/** A login authenticator id of this realm (null clears, undefined leaves as is); 400 for another. */
async function realmAuthenticatorId(req: RealmRequest, id: string | null | undefined): Promise<string | null | undefined> {
  if (id === undefined) return undefined;
  if (id === null || id === '') return null;
  const row = UUID.test(id)
    ? await req.db.selectFrom('login_authenticators').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!row) throw badRequest('Login authenticator not found');
  return row.id;
}

/** Keycloak's UserPermissions.getAccess, without fine-grained permissions. */
function accessOf(req: RealmRequest): Record<string, boolean> {
  const manage = req.auth.can(req.realmRef, 'manage-users');
  return {
    view: manage || req.auth.can(req.realmRef, 'view-users'),
    manage,
    mapRoles: manage,
    manageGroupMembership: manage,
    impersonate: req.auth.can(req.realmRef, 'impersonation'),
  };
}

function credentialRepresentation(row: { id: string; type: string; user_label: string | null; created_at: Date; credential_data: unknown }): Record<string, unknown> {
  return {
    id: row.id,
    type: row.type,
    ...(row.user_label !== null ? { userLabel: row.user_label } : {}),
    createdDate: new Date(row.created_at).getTime(),
    credentialData: typeof row.credential_data === 'string' ? row.credential_data : JSON.stringify(row.credential_data),
  };
}

/** '/parent/child' of each group id. */
async function groupPaths(db: Db, groupIds: string[]): Promise<Map<string, string>> {
  if (groupIds.length === 0) return new Map();
  const { rows } = await sql<{ leaf: string; path: string }>`
    WITH RECURSIVE chain(leaf, parent_id, path) AS (
      SELECT g.id, g.parent_id, '/' || g.name FROM groups g WHERE g.id IN (${sql.join(groupIds)})
      UNION ALL
      SELECT c.leaf, p.parent_id, '/' || p.name || c.path FROM chain c JOIN groups p ON p.id = c.parent_id
    )
    SELECT leaf, path FROM chain WHERE parent_id IS NULL
  `.execute(db);
  return new Map(rows.map((r) => [r.leaf, r.path]));
}

type GroupRow = { id: string; name: string; description: string | null; parent_id: string | null; attributes: Record<string, string[]> };

/** Keycloak's GroupRepresentation (ModelToRepresentation.toRepresentation(group, full)). */
async function groupRepresentations(db: Db, groups: GroupRow[], full: boolean): Promise<Array<Record<string, unknown>>> {
  const paths = await groupPaths(db, groups.map((g) => g.id));
  const roles = full && groups.length > 0
    ? await db.selectFrom('group_roles').innerJoin('roles', 'roles.id', 'group_roles.role_id')
      .leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['group_roles.group_id', 'roles.name', 'clients.client_id'])
      .where('group_roles.group_id', 'in', groups.map((g) => g.id)).orderBy('roles.name').execute()
    : [];
  return groups.map((group) => {
    const rep: Record<string, unknown> = {
      id: group.id, name: group.name,
      ...(group.description !== null ? { description: group.description } : {}),
      path: paths.get(group.id) ?? `/${group.name}`,
      ...(group.parent_id !== null ? { parentId: group.parent_id } : {}),
      subGroups: [],
    };
    if (!full) return rep;
    const own = roles.filter((r) => r.group_id === group.id);
    const clientRoles: Record<string, string[]> = {};
    for (const role of own) if (role.client_id !== null) (clientRoles[role.client_id] ??= []).push(role.name);
    return { ...rep, attributes: group.attributes, realmRoles: own.filter((r) => r.client_id === null).map((r) => r.name), clientRoles };
  });
}

// ---------------------------------------------------------------------------------------------
// Bodies

const hasNul = (value: string): boolean => value.includes('\0');
/** PostgreSQL text and jsonb cannot hold NUL: refuse it at the edge instead of failing in the database. */
const text = z.string().refine((s) => !hasNul(s), 'must not contain NUL characters');
const noNulInside = (value: unknown): boolean => !JSON.stringify(value ?? null).includes('\\u0000');

const attributeMap = z.record(text, z.union([z.array(text), text, z.null()]))
  .transform((m) => Object.fromEntries(Object.entries(m)
    .filter(([name, v]) => v !== null && !ROOT_ATTRIBUTES.has(name))
    .map(([name, v]) => [name, Array.isArray(v) ? v : [v as string]])));

/** Keycloak's columns for these are varchar(255); the external id is also in a unique index. */
const federatedIdentityRep = z.object({
  identityProvider: text.max(255).nullish(),
  userId: text.max(255).nullish(),
  userName: text.max(255).nullish(),
}).loose();

const userFields = {
  username: text.nullish(),
  email: text.nullish(),
  firstName: text.nullish(),
  lastName: text.nullish(),
  enabled: z.boolean().nullish(),
  emailVerified: z.boolean().nullish(),
  attributes: attributeMap.nullish(),
  requiredActions: z.array(text).nullish(),
  credentials: z.array(credentialRep).nullish().refine(noNulInside, 'must not contain NUL characters'),
  federationLink: text.nullish(),
  /** Beyond Keycloak: an application user (bot, IVA, integration) signs in only with access keys. */
  application: z.boolean().nullish(),
  /** Beyond Keycloak: the user's own login authenticator ("" or null clears it on update). */
  loginAuthenticatorId: z.string().max(64).nullish(),
};
const newUserRep = z.object({
  ...userFields,
  groups: z.array(text).nullish(),
  federatedIdentities: z.array(federatedIdentityRep).nullish(),
  createdTimestamp: z.number().int().min(0).max(8.64e15).nullish(),
}).loose();
const userUpdateRep = z.object(userFields).loose();
type UserFields = z.infer<typeof userUpdateRep>;

const resetPasswordRep = z.object({ type: text.nullish(), value: text.nullish(), temporary: z.boolean().nullish() }).loose();

/**
 * The length rules of Keycloak's default user profile (username 3-255, the others at most 255);
 * they also keep values within what the prefix indexes can hold. Other profile validators
 * (e-mail format, prohibited characters) are not applied.
 */
function checkProfileLengths(values: { username?: string; email?: string | null; firstName?: string | null; lastName?: string | null }): void {
  if (values.username !== undefined && (values.username.length < 3 || values.username.length > 255)) throw badRequest('error-invalid-length');
  for (const value of [values.email, values.firstName, values.lastName]) {
    if (value && value.length > 255) throw badRequest('error-invalid-length');
  }
}

/** "" clears a name or e-mail (Keycloak drops blank profile values). */
const blankToNull = (value: string): string | null => (value.trim() === '' ? null : value);

const APPLICATION_PASSWORD = 'Application users cannot have a password; they sign in with access keys';
const APPLICATION_IDP_LINK = 'Application users cannot be linked to an identity provider';

/** A credential that sets a password (a plain value, or a stored password hash). */
const setsPassword = (c: CredentialRepresentation): boolean => (c.value !== undefined && c.value !== '') || c.type === 'password';

/** The plain password values of a representation's credentials (those the password policy checks). */
const plainPasswords = (reps: CredentialRepresentation[] | null | undefined): string[] =>
  (reps ?? []).flatMap((c) => (c.value !== undefined && c.value !== '' ? [c.value] : []));

/** Keycloak's answer to a password that breaks the policy: 400 {"error": key, "error_description": English text}. */
const passwordPolicyError = (violation: PolicyViolation): AdminError =>
  new AdminErrorResponse(400, violation.messageKey, formatPolicyViolation(violation));

/**
 * A password change an LDAP provider refused or could not take, as Keycloak's resetPassword
 * answers: READ_ONLY (ReadOnlyException) 400 "Can't reset password as account is read only"; a
 * refusal (ModelException) 400 with Keycloak's message as `error` and the directory's reason as
 * `error_description`. Beyond Keycloak: a directory that cannot be reached is a 503.
 */
function ldapPasswordAdminError(req: RealmRequest, error: unknown): unknown {
  if (error instanceof LdapPasswordError) {
    if (error.kind === 'read-only') return new AdminErrorResponse(400, READ_ONLY_RESET, READ_ONLY_RESET);
    req.services.logger.warn({ realm: req.realm.name, provider: error.providerId, reason: error.message }, 'LDAP password change refused');
    return new AdminErrorResponse(400, error.keycloakMessage, error.message);
  }
  if (error instanceof LdapUnavailableError) return new AdminErrorResponse(503, 'ldap_unavailable', `Cannot reach the user directory: ${error.message}`);
  return error;
}
const READ_ONLY_RESET = "Can't reset password as account is read only";

// ---------------------------------------------------------------------------------------------
// Credentials

type NewCredential = {
  id: string | undefined;
  type: string;
  userLabel: string | null;
  secretData: string;
  credentialData: string;
  createdDate: number | undefined;
  priority: number | undefined;
  /** A plain password: replaces the user's password credential. */
  replacesPassword: boolean;
};

const isInt32 = (n: number | undefined): boolean => n === undefined || (Number.isInteger(n) && Math.abs(n) < 2 ** 31);

/**
 * Keycloak's RepresentationToModel.createCredentials: a `value` sets the password (hashed with
 * the realm's argon2 parameters), otherwise secretData/credentialData are stored as they are.
 * Hashing happens here, before any transaction is opened.
 */
async function prepareCredentials(req: RealmRequest, reps: CredentialRepresentation[]): Promise<NewCredential[]> {
  const params = argon2Params(parseRealmSettings(req.realm.settings));
  const prepared: NewCredential[] = [];
  for (const rep of reps) {
    if (rep.type.length > 255) throw badRequest("Invalid value for field 'credentials.type': at most 255 characters");
    if (!isInt32(rep.priority)) throw badRequest("Invalid value for field 'credentials.priority': expected an integer");
    if (rep.createdDate !== undefined && !(Number.isInteger(rep.createdDate) && rep.createdDate >= 0 && rep.createdDate <= 8.64e15)) {
      throw badRequest("Invalid value for field 'credentials.createdDate': expected epoch milliseconds");
    }
    const id = rep.id && UUID.test(rep.id) ? rep.id.toLowerCase() : undefined;
    if (rep.value !== undefined && rep.value !== '') {
      const stored = await hashPassword(rep.value, params);
      prepared.push({
        id: undefined, type: 'password', userLabel: null, secretData: JSON.stringify(stored.secretData),
        credentialData: JSON.stringify(stored.credentialData), createdDate: undefined, priority: undefined, replacesPassword: true,
      });
      continue;
    }
    if (rep.secretData === undefined || rep.credentialData === undefined) {
      throw badRequest('A credential needs a value, or secretData and credentialData');
    }
    const asText = (value: string | Record<string, unknown>): string => (typeof value === 'string' ? value : JSON.stringify(value));
    let secretData = asText(rep.secretData);
    let credentialData = asText(rep.credentialData);
    if (HASHED_TYPES.has(rep.type)) {
      try {
        const stored = parseStoredPassword(rep.secretData, rep.credentialData);
        secretData = JSON.stringify(stored.secretData);
        credentialData = JSON.stringify(stored.credentialData);
      } catch (error) {
        throw badRequest(`Invalid ${rep.type} credential: ${(error as Error).message}`);
      }
    } else {
      try {
        JSON.parse(credentialData);
      } catch {
        throw badRequest("Invalid value for field 'credentials.credentialData': not JSON");
      }
      secretData = req.services.box.seal(secretData);
    }
    prepared.push({
      id, type: rep.type, userLabel: rep.userLabel ?? null, secretData, credentialData,
      createdDate: rep.createdDate, priority: rep.priority, replacesPassword: false,
    });
  }
  return prepared;
}

/**
 * Stores prepared credentials; a new credential goes last (Keycloak: last priority + 10). A plain
 * password replaces the password credential and moves the old hash to the history `passwordPolicy` keeps.
 */
async function storeCredentials(trx: Db, realmId: string, userId: string, credentials: NewCredential[], passwordPolicy: PolicyEntry[] = []): Promise<void> {
  for (const credential of credentials) {
    if (credential.replacesPassword) {
      await storePasswordHash(trx, realmId, userId, { secretData: credential.secretData, credentialData: credential.credentialData }, passwordPolicy);
      continue;
    }
    const existing = await trx.selectFrom('credentials').select(['id', 'type', 'priority'])
      .where('user_id', '=', userId).orderBy('priority').orderBy('created_at').execute();
    if (credential.id && existing.some((c) => c.id === credential.id)) continue; // Keycloak skips known ids
    const password = credential.replacesPassword ? existing.find((c) => c.type === 'password') : undefined;
    const last = existing.at(-1);
    if (password) await trx.deleteFrom('credentials').where('id', '=', password.id).execute();
    await trx.insertInto('credentials').values({
      id: password?.id ?? credential.id ?? newId(), realm_id: realmId, user_id: userId, type: credential.type,
      user_label: credential.userLabel, secret_data: credential.secretData, credential_data: credential.credentialData,
      priority: password?.priority ?? credential.priority ?? (last ? last.priority + 10 : 10),
      ...(credential.createdDate !== undefined ? { created_at: new Date(credential.createdDate) } : {}),
    }).execute();
  }
}

/** Keycloak's moveCredentialTo: reorder and renumber priorities 10, 20, ... */
async function moveCredential(db: Db, userId: string, credentialId: string, previousId: string | null): Promise<void> {
  const list = (await db.selectFrom('credentials').select(['id', 'priority']).where('user_id', '=', userId)
    .orderBy('priority').orderBy('created_at').orderBy('id').execute()).map((c) => c.id);
  const from = list.indexOf(credentialId);
  if (from < 0 || (previousId !== null && !list.includes(previousId))) return;
  list.splice(from, 1);
  list.splice(previousId === null ? 0 : list.indexOf(previousId) + 1, 0, credentialId);
  await db.transaction().execute(async (trx) => {
    for (const [index, id] of list.entries()) await trx.updateTable('credentials').set({ priority: (index + 1) * 10 }).where('id', '=', id).execute();
  });
}

// ---------------------------------------------------------------------------------------------
// Lookups

async function findUser(req: RealmRequest, param = 'id'): Promise<User> {
  const id = req.params[param] ?? '';
  const user = UUID.test(id)
    ? await req.db.selectFrom('users').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
    : undefined;
  if (!user) throw notFound('User not found');
  return user;
}

async function findUserCredential(req: RealmRequest, userId: string, param = 'credentialId') {
  const id = req.params[param] ?? '';
  const credential = UUID.test(id)
    ? await req.db.selectFrom('credentials').select(['id', 'type']).where('user_id', '=', userId).where('id', '=', id).executeTakeFirst()
    : undefined;
  if (!credential) throw notFound('Credential not found');
  return credential;
}

/** Keycloak's KeycloakModelUtils.findGroupByPath ('/parent/child'). */
async function groupIdByPath(db: Db, realmId: string, path: string): Promise<string | undefined> {
  const trimmed = path.replace(/^\//, '').replace(/\/$/, '');
  if (trimmed === '') return undefined;
  let parent: string | null = null;
  for (const name of trimmed.split('/')) {
    const row: { id: string } | undefined = await db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name)
      .where('parent_id', parent === null ? 'is' : '=', parent).executeTakeFirst();
    if (!row) return undefined;
    parent = row.id;
  }
  return parent ?? undefined;
}

const setting = (req: RealmRequest, name: string): unknown => (req.realm.settings as Record<string, unknown>)[name];


/** Known required actions of `wanted`, in order, without repeats (Keycloak ignores unknown ones). */
function knownActions(wanted: string[]): string[] {
  return [...new Set(wanted.filter((a) => REQUIRED_ACTIONS.has(a)))];
}

const isUniqueViolation = (error: unknown): boolean => (error as { code?: unknown }).code === '23505';

// ---------------------------------------------------------------------------------------------
// Search

/** `application` (beyond Keycloak) narrows any search to application users or to the others. */
type ListQuery = { kind: 'none' } | { kind: 'id'; id: string } | { kind: 'search'; criteria: UserSearch; application: boolean | undefined };

/** Keycloak's SearchQueryUtils.getFields: `name:value "quoted name":"quoted value" ...`. */
function parseSearchQuery(q: string): Map<string, string> {
  const pattern = /\s*(?:([^"\s:][^\s:]*)|"((?:\\.|[^"])+)"):(?:([^"\s]\S*)|"((?:\\.|[^"])+)")\s*/g;
  const unescape = (s: string): string => s.replace(/\\(.)/g, '$1');
  const fields = new Map<string, string>();
  for (const match of q.matchAll(pattern)) fields.set(match[1] ?? unescape(match[2] ?? ''), match[3] ?? unescape(match[4] ?? ''));
  return fields;
}

const FIELD_PARAMS = new Map<string, UserSearchField>([['username', 'username'], ['email', 'email'], ['firstName', 'first_name'], ['lastName', 'last_name']]);

/**
 * The criteria of GET /users and /users/count as Keycloak 26 reads them: `search` (with `id:<id>`)
 * wins over everything but `enabled`; otherwise field, attribute and state filters combine (and
 * then service accounts are listed too); with no filter at all, every user but service accounts.
 */
function listQuery(req: RealmRequest): ListQuery {
  const q = req.query;
  if (Object.values(q).some((v) => v !== undefined && hasNul(v))) return { kind: 'none' };
  const enabled = req.bool('enabled');
  const application = req.bool('application');
  if (q.search !== undefined) {
    if (q.search.startsWith('id:')) return { kind: 'id', id: q.search.slice(3).trim() };
    return { kind: 'search', criteria: { search: q.search, enabled, includeServiceAccounts: false }, application };
  }
  const fields: Partial<Record<UserSearchField, string>> = {};
  const attributes: Record<string, string> = Object.create(null);
  for (const [name, value] of parseSearchQuery(q.q ?? '')) {
    const field = FIELD_PARAMS.get(name);
    if (field) fields[field] = value;
    else attributes[name] = value;
  }
  for (const [param, field] of FIELD_PARAMS) if (q[param] !== undefined) fields[field] = q[param]!;
  const criteria: UserSearch = {
    fields, attributes, exact: req.bool('exact'), enabled, emailVerified: req.bool('emailVerified'),
    idpAlias: q.idpAlias, idpUserId: q.idpUserId, includeServiceAccounts: false,
  };
  criteria.includeServiceAccounts = Object.keys(fields).length > 0 || Object.keys(attributes).length > 0
    || [criteria.exact, enabled, criteria.emailVerified, criteria.idpAlias, criteria.idpUserId].some((v) => v !== undefined);
  return { kind: 'search', criteria, application };
}

// ---------------------------------------------------------------------------------------------
// Sessions

type SessionRow = { id: string; username: string; user_id: string; ip_address: string | null; started_at: Date; last_refresh_at: Date; remember_me: boolean };

/** Keycloak's UserSessionRepresentation of a user's live sessions (online or offline). */
async function userSessions(db: Db, realmId: string, userId: string, offline: boolean, onlyClient?: string): Promise<Array<Record<string, unknown>>> {
  const sessions: SessionRow[] = await db.selectFrom('user_sessions').innerJoin('users', 'users.id', 'user_sessions.user_id')
    .select(['user_sessions.id', 'users.username', 'user_sessions.user_id', 'user_sessions.ip_address', 'user_sessions.started_at',
      'user_sessions.last_refresh_at', 'user_sessions.remember_me'])
    .where('user_sessions.realm_id', '=', realmId).where('user_sessions.user_id', '=', userId)
    .where('user_sessions.offline', '=', offline)
    .where((eb) => eb.or([eb('user_sessions.expires_at', 'is', null), eb('user_sessions.expires_at', '>', sql<Date>`now()`)]))
    .orderBy('user_sessions.started_at').execute();
  if (sessions.length === 0) return [];
  const clients = await db.selectFrom('client_sessions').innerJoin('clients', 'clients.id', 'client_sessions.client_id')
    .select(['client_sessions.user_session_id', 'clients.id', 'clients.client_id', 'client_sessions.last_refresh_at'])
    .where('client_sessions.realm_id', '=', realmId).where('client_sessions.offline', '=', offline)
    .where('client_sessions.user_session_id', 'in', sessions.map((s) => s.id)).execute();
  const out: Array<Record<string, unknown>> = [];
  for (const session of sessions) {
    const own = clients.filter((c) => c.user_session_id === session.id);
    const selected = onlyClient === undefined ? undefined : own.find((c) => c.id === onlyClient);
    if (onlyClient !== undefined && !selected) continue;
    out.push({
      id: session.id,
      username: session.username,
      userId: session.user_id,
      ipAddress: session.ip_address ?? undefined,
      start: new Date(session.started_at).getTime(),
      // For one client's offline sessions Keycloak reports that client session's last refresh.
      lastAccess: new Date((selected ?? session).last_refresh_at).getTime(),
      rememberMe: session.remember_me,
      clients: Object.fromEntries(own.map((c) => [c.id, c.client_id])),
    });
  }
  return out;
}

/**
 * Ends the user's browser/password sessions as a logout does (client sessions, oidc-provider
 * session and grants, back-channel logout to clients); offline sessions stay.
 */
async function endOnlineSessions(req: RealmRequest, userId: string): Promise<void> {
  const realm = await req.services.registry.get(req.realm.name);
  if (realm) await endUserSessions(realm, realmIssuer(req), userId, req.services.logger);
}

/** The realm's issuer at the origin of this admin request (the `iss` of back-channel logout tokens). */
function realmIssuer(req: RealmRequest): string {
  const { config } = req.services;
  return `${publicOrigin(req.ctx, config)}${config.relativePath}/realms/${req.realm.name}`;
}

/** Removes the user's client sessions of one client (online or offline) and their oidc-provider grants. */
async function endClientSessions(db: Db, realmId: string, userId: string, clientUuid: string, offline: boolean): Promise<boolean> {
  const ended = await db.deleteFrom('client_sessions')
    .where('realm_id', '=', realmId).where('client_id', '=', clientUuid).where('offline', '=', offline)
    .where('user_session_id', 'in', (eb) => eb.selectFrom('user_sessions').select('id')
      .where('realm_id', '=', realmId).where('user_id', '=', userId).where('offline', '=', offline))
    .returning(['user_session_id', 'grant_id']).execute();
  const grants = ended.flatMap((e) => (e.grant_id ? [e.grant_id] : []));
  if (grants.length > 0) await db.deleteFrom('oidc_payloads').where('realm_id', '=', realmId).where('grant_id', 'in', grants).execute();
  if (offline && ended.length > 0) {
    // An offline session lives only through its clients (Keycloak's revokeOfflineToken).
    await db.deleteFrom('user_sessions').where('realm_id', '=', realmId).where('user_id', '=', userId).where('offline', '=', true)
      .where('id', 'in', ended.map((e) => e.user_session_id))
      .where((eb) => eb.not(eb.exists(eb.selectFrom('client_sessions').select('client_sessions.client_id')
        .whereRef('client_sessions.user_session_id', '=', 'user_sessions.id').where('client_sessions.offline', '=', true))))
      .execute();
  }
  return ended.length > 0;
}

// ---------------------------------------------------------------------------------------------
// E-mail actions

/**
 * Keycloak's verifySendEmailParams: the checks made before an action e-mail is built. Sending
 * itself does not exist yet, so every request that passes them is refused (see emailFailure).
 */
type SendEmailParams = { clientId: string; redirectUri?: string; lifespan: number };

/** Keycloak's verifySendEmailParams: the user can get mail, the client and redirect URI are valid. */
async function checkSendEmailParams(req: RealmRequest, user: User, realm: RealmContext): Promise<SendEmailParams> {
  if (user.email === null) throw badRequest('User email missing');
  if (!user.enabled) throw badRequest('User is disabled');
  const redirectUri = req.query.redirect_uri;
  const clientId = req.query.client_id;
  if (redirectUri !== undefined && clientId === undefined) throw badRequest('Client id missing');
  if ((redirectUri && hasNul(redirectUri)) || (clientId && hasNul(clientId))) throw badRequest("Client doesn't exist");
  const client = await req.db.selectFrom('clients').select(['client_id', 'enabled', 'redirect_uris'])
    .where('realm_id', '=', req.realm.id).where('client_id', '=', clientId ?? 'admin-cli').executeTakeFirst();
  if (!client) throw badRequest("Client doesn't exist");
  if (!client.enabled) throw badRequest('Client is not enabled');
  if (redirectUri !== undefined && !redirectUriMatches(client.redirect_uris, redirectUri)) throw badRequest('Invalid redirect uri.');
  // Keycloak reads an Integer (anything else never reaches it); a link must live at least a second.
  const lifespanText = req.query.lifespan;
  let lifespan = actionTokenLifespan(realm, 'admin');
  if (lifespanText !== undefined && lifespanText !== '') {
    lifespan = Number(lifespanText);
    if (!/^\d{1,9}$/.test(lifespanText) || lifespan < 1) throw badRequest('Invalid lifespan');
  }
  return { clientId: client.client_id, ...(redirectUri !== undefined ? { redirectUri } : {}), lifespan };
}

/** The realm's context (its SMTP settings, keys) and its issuer at the admin request's origin. */
async function mailContext(req: RealmRequest): Promise<{ realm: RealmContext; issuer: string }> {
  const { registry, config } = req.services;
  const realm = await registry.get(req.realm.name);
  if (!realm) throw notFound('Realm not found.');
  return { realm, issuer: `${publicOrigin(req.ctx, config)}${config.relativePath}/realms/${req.realm.name}` };
}

// ---------------------------------------------------------------------------------------------
// Routes

export function registerUsersRoutes(admin: AdminRouter): void {
  const { db, registry, mailer } = admin.services;

  /** Service accounts and access-key users feed cached token subjects: changing one refreshes the realm's context. */
  const refreshIfServiceAccount = async (req: RealmRequest, user: User, cached?: boolean): Promise<void> => {
    if (cached ?? await tokenSubjectCached(db, user)) await registry.realmChanged(req.realm.id);
  };

  admin.realm('get', '/users', { permission: 'query-users' }, async (req) => {
    const list = listQuery(req);
    const brief = req.bool('briefRepresentation') === true;
    if (list.kind === 'none') return ok([]);
    let users: User[];
    if (list.kind === 'id') {
      users = UUID.test(list.id) ? await db.selectFrom('users').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', list.id).execute() : [];
    } else if (list.application === undefined) {
      users = await listUsers(db, req.realm.id, list.criteria, req.page(100));
    } else {
      // users.application has no index: a walk of the username index, filtered (listUsers'
      // narrowing would need UserSearch in store/users.ts to know the flag).
      const { first, max } = req.page(100);
      let query = db.selectFrom('users').selectAll().where(userSearchCondition(req.realm.id, list.criteria))
        .where('users.application', '=', list.application).orderBy((eb) => eb.fn('lower', ['users.username'])).offset(first);
      if (max !== undefined) query = query.limit(max);
      users = await query.execute();
    }
    return ok(await userRepresentations(db, users, { brief, access: accessOf(req) }));
  });

  admin.realm('get', '/users/count', { permission: 'query-users' }, async (req) => {
    const list = listQuery(req);
    if (list.kind === 'none') return ok(0);
    if (list.kind === 'id') {
      if (!UUID.test(list.id)) return ok(0);
      const row = await db.selectFrom('users').select('id').where('realm_id', '=', req.realm.id).where('id', '=', list.id).executeTakeFirst();
      return ok(row ? 1 : 0);
    }
    if (list.application === undefined && isEveryPerson(list.criteria)) return ok(await countRealmPeople(db, req.realm.id));
    let query = db.selectFrom('users').select((eb) => eb.fn.countAll().as('count')).where(userSearchCondition(req.realm.id, list.criteria));
    if (list.application !== undefined) query = query.where('users.application', '=', list.application);
    const { count } = await query.executeTakeFirstOrThrow();
    return ok(Number(count));
  });

  admin.realm('post', '/users', { permission: 'manage-users', secretBody: true, changesRealm: false }, async (req) => {
    const rep = await req.json(newUserRep);
    const emailAsUsername = setting(req, 'registrationEmailAsUsername') === true;
    const username = (emailAsUsername ? rep.email : rep.username)?.trim().toLowerCase() ?? '';
    if (username === '') throw badRequest('User name is missing');
    const email = rep.email ? blankToNull(rep.email)?.toLowerCase() ?? null : null;
    checkProfileLengths({ username, email, firstName: rep.firstName, lastName: rep.lastName });
    if (await usernameTaken(db, req.realm.id, username)) throw conflict('User exists with same username');
    if (email && !parseRealmSettings(req.realm.settings).duplicateEmailsAllowed && await emailTaken(db, req.realm.id, email)) {
      throw conflict('User exists with same email');
    }
    const groupIds: string[] = [];
    for (const path of rep.groups ?? []) {
      const groupId = await groupIdByPath(db, req.realm.id, path);
      if (!groupId) throw badRequest(`Unable to find group specified by path: ${path}`);
      groupIds.push(groupId);
    }
    const application = rep.application ?? false;
    if (application && (rep.credentials ?? []).some(setsPassword)) throw badRequest(APPLICATION_PASSWORD);
    if (application && (rep.federatedIdentities ?? []).length > 0) throw badRequest(APPLICATION_IDP_LINK);
    const credentials = await prepareCredentials(req, rep.credentials ?? []);
    const temporaryPassword = (rep.credentials ?? []).some((c) => c.type === 'password' && c.temporary === true);
    // Keycloak's addUser gives a new user the realm's enabled default actions first.
    const actions = knownActions([...defaultActionsForNewUser(req.realm.settings), ...(rep.requiredActions ?? []), ...(temporaryPassword ? ['UPDATE_PASSWORD'] : [])]);
    const loginAuthenticatorId = await realmAuthenticatorId(req, rep.loginAuthenticatorId);
    const id = newId();
    try {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values({
          id, realm_id: req.realm.id, username, email, email_verified: rep.emailVerified ?? false,
          // Keycloak creates users disabled unless the representation says otherwise.
          enabled: rep.enabled ?? false,
          first_name: rep.firstName ? blankToNull(rep.firstName) : null, last_name: rep.lastName ? blankToNull(rep.lastName) : null,
          federation_link: rep.federationLink ?? null, service_account_client_id: null, application,
          attributes: JSON.stringify(rep.attributes ?? {}), required_actions: JSON.stringify(actions),
          login_authenticator_id: loginAuthenticatorId ?? null,
          ...(rep.createdTimestamp ? { created_at: new Date(rep.createdTimestamp) } : {}),
        }).execute();
        await giveNewUserDefaults(trx, req.realm, id, groupIds);
        for (const link of rep.federatedIdentities ?? []) {
          if (!link.identityProvider || !link.userId) throw badRequest('A federated identity needs identityProvider and userId');
          await trx.insertInto('federated_identities').values({
            realm_id: req.realm.id, user_id: id, identity_provider: link.identityProvider, external_user_id: link.userId,
            external_username: link.userName ?? null, token_sealed: null,
          }).execute();
        }
        // The policy of the authenticator the new user falls under (its own, its groups', the realm's).
        const plain = plainPasswords(rep.credentials);
        if (plain.length > 0) {
          const user = await trx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
          const policy = parsePasswordPolicy((await loginAuthenticatorFor(trx, req.realm, user)).settings.passwordPolicy);
          for (const password of plain) {
            const violation = checkPassword(policy, { password, username, email });
            if (violation) throw passwordPolicyError(violation);
          }
        }
        await storeCredentials(trx, req.realm.id, id, credentials);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict('User exists with same username or email');
      throw error;
    }
    return created(id);
  });

  admin.realm('get', '/users/:id', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    const rep = await userRepresentation(db, user, { access: accessOf(req) });
    // Keycloak adds the identity provider links when the realm has any identity provider.
    const hasProviders = await db.selectFrom('identity_providers').select('alias').where('realm_id', '=', req.realm.id).limit(1).executeTakeFirst();
    if (!hasProviders) return ok(rep);
    const { access, ...rest } = rep;
    return ok({ ...rest, federatedIdentities: await federatedIdentities(req.realm.id, user.id), access });
  });

  admin.realm('put', '/users/:id', { permission: 'manage-users', secretBody: true, changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const rep = await req.json(userUpdateRep);
    await updateUser(req, user, rep);
    await refreshIfServiceAccount(req, user);
    return noContent();
  });

  /** Keycloak's UserResource.updateUser: absent fields keep their value. */
  async function updateUser(req: RealmRequest, user: User, rep: UserFields): Promise<void> {
    const settings = parseRealmSettings(req.realm.settings);
    const emailAsUsername = setting(req, 'registrationEmailAsUsername') === true;
    const email = rep.email === undefined || rep.email === null ? user.email : blankToNull(rep.email)?.toLowerCase() ?? null;
    if (email !== user.email && email && !settings.duplicateEmailsAllowed && await emailTaken(db, req.realm.id, email, user.id)) {
      throw conflict('User exists with same email');
    }
    let username = user.username;
    if (emailAsUsername) {
      if (email && email !== user.email) username = email;
    } else if (rep.username !== undefined && rep.username !== null && rep.username.trim().toLowerCase() !== user.username) {
      // The user profile makes the username read-only unless the realm lets it be edited.
      if (setting(req, 'editUsernameAllowed') !== true) throw badRequest('error-user-attribute-read-only');
      username = rep.username.trim().toLowerCase();
      if (username === '') throw badRequest('User name is missing');
    }
    checkProfileLengths({ ...(username !== user.username ? { username } : {}), email, firstName: rep.firstName, lastName: rep.lastName });
    if (username !== user.username && await usernameTaken(db, req.realm.id, username, user.id)) throw conflict('User exists with same username');

    let attributes = rep.attributes ?? user.attributes;
    if (rep.enabled === true) attributes = (await releaseLockout(db, req.realm, { ...user, attributes })) ?? attributes;
    let actions = user.required_actions;
    if (rep.requiredActions) {
      // Known actions follow the representation; unknown ones a user carries (imports) stay.
      actions = [...actions.filter((a) => !REQUIRED_ACTIONS.has(a)), ...knownActions(rep.requiredActions)];
    }
    if ((rep.credentials ?? []).some((c) => c.type === 'password' && c.temporary === true)) actions = [...new Set([...actions, 'UPDATE_PASSWORD'])];
    const keep = <T>(value: T | null | undefined, current: T): T => (value === undefined || value === null ? current : value);
    // A password kept from before the user became an application user stays stored but unusable
    // (authenticatePassword refuses application users), so switching back restores it.
    const application = keep(rep.application, user.application);
    if (application && (rep.credentials ?? []).some(setsPassword)) throw badRequest(APPLICATION_PASSWORD);
    if (application && !user.application && await db.selectFrom('federated_identities').select('user_id').where('user_id', '=', user.id).limit(1).executeTakeFirst()) {
      throw badRequest(APPLICATION_IDP_LINK);
    }
    // A new plain password meets the user's policy, history included (Keycloak checks it after the profile update).
    let passwordPolicy: PolicyEntry[] = [];
    const plain = plainPasswords(rep.credentials);
    if (plain.length > 0) {
      passwordPolicy = parsePasswordPolicy((await loginAuthenticatorFor(db, req.realm, user)).settings.passwordPolicy);
      for (const password of plain) {
        const violation = await passwordViolation(db, { id: user.id, username, email }, password, passwordPolicy);
        if (violation) throw passwordPolicyError(violation);
      }
    }
    const credentials = await prepareCredentials(req, rep.credentials ?? []);
    const loginAuthenticatorId = await realmAuthenticatorId(req, rep.loginAuthenticatorId);
    try {
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('users').set({
          ...(loginAuthenticatorId !== undefined ? { login_authenticator_id: loginAuthenticatorId } : {}),
          username,
          email,
          first_name: rep.firstName === undefined || rep.firstName === null ? user.first_name : blankToNull(rep.firstName),
          last_name: rep.lastName === undefined || rep.lastName === null ? user.last_name : blankToNull(rep.lastName),
          enabled: keep(rep.enabled, user.enabled),
          email_verified: keep(rep.emailVerified, user.email_verified),
          federation_link: keep(rep.federationLink, user.federation_link),
          application,
          attributes: JSON.stringify(attributes),
          required_actions: JSON.stringify(actions),
        }).where('id', '=', user.id).execute();
        await storeCredentials(trx, req.realm.id, user.id, credentials, passwordPolicy);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict('User exists with same username or email');
      throw error;
    }
  }

  admin.realm('delete', '/users/:id', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const cached = await tokenSubjectCached(db, user); // asked before the row (and its keys) go
    await endOnlineSessions(req, user.id);
    // Offline sessions, credentials, memberships, links and consents go with the row (cascades).
    const offlineGrants = await db.selectFrom('client_sessions').select('grant_id')
      .where('realm_id', '=', req.realm.id).where('offline', '=', true).where('grant_id', 'is not', null)
      .where('user_session_id', 'in', (eb) => eb.selectFrom('user_sessions').select('id').where('user_id', '=', user.id).where('offline', '=', true))
      .execute();
    await db.transaction().execute(async (trx) => {
      const grants = offlineGrants.flatMap((g) => (g.grant_id ? [g.grant_id] : []));
      if (grants.length > 0) await trx.deleteFrom('oidc_payloads').where('realm_id', '=', req.realm.id).where('grant_id', 'in', grants).execute();
      await trx.deleteFrom('users').where('id', '=', user.id).execute();
    });
    await refreshIfServiceAccount(req, user, cached);
    return noContent();
  });

  // --- passwords and credentials

  admin.realm('put', '/users/:id/reset-password', { permission: 'manage-users', secretBody: true, changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const rep = await req.json(resetPasswordRep);
    if (user.application) throw badRequest(APPLICATION_PASSWORD);
    if (rep.value === undefined || rep.value === null) throw badRequest('No password provided');
    if (rep.value.trim() === '') throw badRequest('Empty password not allowed');
    // The user's login authenticator decides the rules; temporary=true asks for a new password at
    // the next login, a permanent one clears that.
    const authenticator = await loginAuthenticatorFor(db, req.realm, user);
    let result;
    try {
      result = await changePassword(db, req.realm, user, rep.value, authenticator.settings, {
        temporary: rep.temporary === true, box: req.services.box, adminRequest: true,
      });
    } catch (error) {
      throw ldapPasswordAdminError(req, error);
    }
    if (!result.ok) throw passwordPolicyError(result.violation);
    void tellUserPasswordChanged(req, user);
    return noContent();
  });

  admin.realm('get', '/users/:id/credentials', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    // Old passwords kept for the history policy are not the user's credentials to manage.
    const rows = await db.selectFrom('credentials').select(['id', 'type', 'user_label', 'created_at', 'credential_data'])
      .where('user_id', '=', user.id).where('type', '!=', PASSWORD_HISTORY).orderBy('priority').orderBy('created_at').orderBy('id').execute();
    return ok(rows.map(credentialRepresentation));
  });

  admin.realm('get', '/users/:id/configured-user-storage-credential-types', { permission: 'view-users' }, async (req) => {
    await findUser(req);
    return ok([]); // only users of a user storage provider have any
  });

  admin.realm('delete', '/users/:id/credentials/:credentialId', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const credential = await findUserCredential(req, user.id);
    await db.deleteFrom('credentials').where('id', '=', credential.id).execute();
    if (credential.type === 'otp') await recordRemovedTotp(req, user.id, 1);
    return noContent();
  });

  admin.realm('put', '/users/:id/credentials/:credentialId/userLabel', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const credential = await findUserCredential(req, user.id);
    const label = await req.text();
    if (label.trim() === '') throw badRequest('Credential label must not be empty');
    if (hasNul(label)) throw badRequest('Credential label must not contain NUL characters');
    await db.updateTable('credentials').set({ user_label: label }).where('id', '=', credential.id).execute();
    return noContent();
  });

  admin.realm('post', '/users/:id/credentials/:credentialId/moveToFirst', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const credential = await findUserCredential(req, user.id);
    await moveCredential(db, user.id, credential.id, null);
    return noContent();
  });

  // Keycloak ignores a previous credential that does not exist (nothing moves, 204).
  admin.realm('post', '/users/:id/credentials/:credentialId/moveAfter/:previousId', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const credential = await findUserCredential(req, user.id);
    const previousId = req.params.previousId ?? '';
    if (UUID.test(previousId)) await moveCredential(db, user.id, credential.id, previousId.toLowerCase());
    return noContent();
  });

  admin.realm('put', '/users/:id/remove-totp', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const removed = await db.deleteFrom('credentials').where('user_id', '=', user.id).where('type', '=', 'otp').executeTakeFirst();
    await recordRemovedTotp(req, user.id, Number(removed.numDeletedRows));
    return noContent();
  });

  // --- e-mail actions

  admin.realm('put', '/users/:id/execute-actions-email', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const body = (await req.text()).trim();
    let actions: unknown = [];
    try {
      if (body !== '') actions = JSON.parse(body);
    } catch {
      throw badRequest('the body is not valid JSON');
    }
    const parsed = z.array(text).nullable().safeParse(actions);
    if (!parsed.success) throw badRequest('The body must be a list of required action names');
    const { realm, issuer } = await mailContext(req);
    const params = await checkSendEmailParams(req, user, realm);
    const requested = parsed.data ?? [];
    // Keycloak accepts any registered required action; the link pages run these.
    if (requested.some((action) => !(SUPPORTED_REQUIRED_ACTIONS as readonly string[]).includes(action))) throw badRequest('Provided invalid required actions');
    if (user.application && requested.includes('UPDATE_PASSWORD')) throw badRequest(APPLICATION_PASSWORD);
    try {
      await sendActionEmail(mailer, realm, issuer, user, {
        kind: 'execute-actions', actions: [...new Set(requested)], lifespanSeconds: params.lifespan, locale: userLocale(realm, user),
        clientId: params.clientId, ...(params.redirectUri !== undefined ? { redirectUri: params.redirectUri } : {}),
      });
    } catch (error) {
      if (!(error instanceof MailError)) throw error;
      // Keycloak's status and wording (500), with the reason.
      throw new AdminError(500, `Failed to send execute actions email: ${error.message}`);
    }
    return noContent();
  });

  admin.realm('put', '/users/:id/send-verify-email', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const { realm, issuer } = await mailContext(req);
    const params = await checkSendEmailParams(req, user, realm);
    try {
      await sendActionEmail(mailer, realm, issuer, user, {
        kind: 'verify-email', lifespanSeconds: params.lifespan, locale: userLocale(realm, user),
        clientId: params.clientId, ...(params.redirectUri !== undefined ? { redirectUri: params.redirectUri } : {}),
      });
    } catch (error) {
      if (!(error instanceof MailError)) throw error;
      throw new AdminError(500, 'Failed to send verify email');
    }
    return noContent();
  });

  // --- groups

  admin.realm('get', '/users/:id/groups', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    const { first, max } = req.page(undefined);
    const search = req.query.search;
    let query = db.selectFrom('user_groups').innerJoin('groups', 'groups.id', 'user_groups.group_id')
      .select(['groups.id', 'groups.name', 'groups.description', 'groups.parent_id', 'groups.attributes'])
      .where('user_groups.user_id', '=', user.id).orderBy('groups.name').orderBy('groups.id').offset(first);
    if (search) {
      if (hasNul(search)) return ok([]);
      query = query.where((eb) => eb(eb.fn('lower', ['groups.name']), 'like', `%${escapeLike(search.toLowerCase())}%`));
    }
    if (max !== undefined) query = query.limit(max);
    // Keycloak's default here is the brief group representation.
    return ok(await groupRepresentations(db, await query.execute(), req.bool('briefRepresentation') === false));
  });

  admin.realm('get', '/users/:id/groups/count', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    const search = req.query.search;
    if (search && hasNul(search)) return ok({ count: 0 });
    let query = db.selectFrom('user_groups').innerJoin('groups', 'groups.id', 'user_groups.group_id')
      .select((eb) => eb.fn.countAll().as('count')).where('user_groups.user_id', '=', user.id);
    if (search) query = query.where((eb) => eb(eb.fn('lower', ['groups.name']), 'like', `%${escapeLike(search.toLowerCase())}%`));
    const { count } = await query.executeTakeFirstOrThrow();
    return ok({ count: Number(count) });
  });

  async function findGroup(req: RealmRequest): Promise<{ id: string }> {
    const id = req.params.groupId ?? '';
    const group = UUID.test(id)
      ? await db.selectFrom('groups').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!group) throw notFound('Group not found');
    return group;
  }

  admin.realm('put', '/users/:id/groups/:groupId', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const group = await findGroup(req);
    await db.insertInto('user_groups').values({ user_id: user.id, group_id: group.id }).onConflict((oc) => oc.doNothing()).execute();
    await refreshIfServiceAccount(req, user);
    return noContent();
  });

  admin.realm('delete', '/users/:id/groups/:groupId', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const group = await findGroup(req);
    await db.deleteFrom('user_groups').where('user_id', '=', user.id).where('group_id', '=', group.id).execute();
    await refreshIfServiceAccount(req, user);
    return noContent();
  });

  // --- sessions, logout, consents

  admin.realm('get', '/users/:id/sessions', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    return ok(await userSessions(db, req.realm.id, user.id, false));
  });

  admin.realm('get', '/users/:id/offline-sessions/:clientUuid', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    const clientUuid = req.params.clientUuid ?? '';
    const client = UUID.test(clientUuid)
      ? await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('id', '=', clientUuid).executeTakeFirst()
      : undefined;
    if (!client) throw notFound('Client not found');
    return ok(await userSessions(db, req.realm.id, user.id, true, client.id));
  });

  // Keycloak's RealmAdminResource.deleteSession: one user session (or, with isOffline=true, one
  // offline session) ends, its clients told through back-channel logout as at any logout.
  admin.realm('delete', '/sessions/:session', { permission: 'manage-users', changesRealm: false, resourceType: 'USER_SESSION' }, async (req) => {
    const offline = req.bool('isOffline') === true;
    const sessionId = req.params.session ?? '';
    const found = await db.selectFrom('user_sessions').select('id').where('realm_id', '=', req.realm.id)
      .where('id', '=', sessionId).where('offline', '=', offline).executeTakeFirst();
    if (!found) throw notFound('Sesssion not found'); // sic: Keycloak's text
    if (offline) {
      const grants = await deleteUserSession(db, { realmId: req.realm.id, id: sessionId, offline: true });
      if (grants.length > 0) await db.deleteFrom('oidc_payloads').where('realm_id', '=', req.realm.id).where('grant_id', 'in', grants).execute();
    } else {
      const realm = await req.services.registry.get(req.realm.name);
      if (realm) await endSsoSession(realm, realmIssuer(req), sessionId, req.services.logger);
    }
    return noContent();
  });

  // Keycloak's UserResource.logout: the user's sessions end and tokens issued before now are
  // stale for this user (not-before); offline sessions stay.
  admin.realm('post', '/users/:id/logout', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    await db.updateTable('users').set({ not_before: Math.floor(Date.now() / 1000) }).where('id', '=', user.id).execute();
    await endOnlineSessions(req, user.id);
    return noContent();
  });

  admin.realm('get', '/users/:id/consents', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    const consents = await db.selectFrom('user_consents').innerJoin('clients', 'clients.id', 'user_consents.client_id')
      .select(['clients.id as clientUuid', 'clients.client_id', 'user_consents.granted_scopes', 'user_consents.created_at', 'user_consents.updated_at'])
      .where('user_consents.user_id', '=', user.id).orderBy('clients.client_id').execute();
    // Clients holding an offline token of the user are listed too (Keycloak's "additional grants").
    const offlineClients = await db.selectFrom('client_sessions').innerJoin('clients', 'clients.id', 'client_sessions.client_id')
      .select(['clients.id', 'clients.client_id']).distinct()
      .where('client_sessions.realm_id', '=', req.realm.id).where('client_sessions.offline', '=', true)
      .where('client_sessions.user_session_id', 'in', (eb) => eb.selectFrom('user_sessions').select('id')
        .where('user_id', '=', user.id).where('offline', '=', true))
      .orderBy('clients.client_id').execute();
    const scopeIds = [...new Set(consents.flatMap((c) => c.granted_scopes).filter((s) => UUID.test(s)))];
    const scopeNames = new Map(scopeIds.length === 0 ? [] : (await db.selectFrom('client_scopes').select(['id', 'name'])
      .where('realm_id', '=', req.realm.id).where('id', 'in', scopeIds).execute()).map((s) => [s.id, s.name]));
    const offline = new Set(offlineClients.map((c) => c.id));
    const offlineGrant = (clientUuid: string): Array<Record<string, string>> => (offline.has(clientUuid) ? [{ client: clientUuid, key: 'Offline Token' }] : []);
    return ok([
      ...consents.map((c) => ({
        clientId: c.client_id,
        grantedClientScopes: c.granted_scopes.map((s) => scopeNames.get(s) ?? s),
        createdDate: new Date(c.created_at).getTime(),
        lastUpdatedDate: new Date(c.updated_at).getTime(),
        additionalGrants: offlineGrant(c.clientUuid),
      })),
      ...offlineClients.filter((c) => !consents.some((k) => k.clientUuid === c.id)).map((c) => ({
        clientId: c.client_id, grantedClientScopes: [], createdDate: null, lastUpdatedDate: null, additionalGrants: offlineGrant(c.id),
      })),
    ]);
  });

  // Keycloak's revokeConsent: the consent and the client's offline tokens go; with a consent, the
  // user is also logged out of that client.
  admin.realm('delete', '/users/:id/consents/:clientId', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const clientId = req.params.clientId ?? '';
    const client = hasNul(clientId) ? undefined
      : await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('client_id', '=', clientId).executeTakeFirst();
    if (!client) throw notFound('Client not found');
    const revoked = await db.deleteFrom('user_consents').where('user_id', '=', user.id).where('client_id', '=', client.id)
      .returning('client_id').executeTakeFirst();
    const offlineRevoked = await endClientSessions(db, req.realm.id, user.id, client.id, true);
    if (revoked) await endClientSessions(db, req.realm.id, user.id, client.id, false);
    if (!revoked && !offlineRevoked) throw notFound('Consent nor offline token not found');
    return noContent();
  });

  // --- identity provider links

  async function federatedIdentities(realmId: string, userId: string): Promise<Array<Record<string, unknown>>> {
    const rows = await db.selectFrom('federated_identities')
      .innerJoin('identity_providers', (join) => join.onRef('identity_providers.alias', '=', 'federated_identities.identity_provider')
        .onRef('identity_providers.realm_id', '=', 'federated_identities.realm_id'))
      .select(['federated_identities.identity_provider', 'federated_identities.external_user_id', 'federated_identities.external_username'])
      .where('federated_identities.realm_id', '=', realmId).where('federated_identities.user_id', '=', userId)
      .orderBy('federated_identities.identity_provider').execute();
    return rows.map((r) => ({
      identityProvider: r.identity_provider, userId: r.external_user_id,
      ...(r.external_username !== null ? { userName: r.external_username } : {}),
    }));
  }

  admin.realm('get', '/users/:id/federated-identity', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    return ok(await federatedIdentities(req.realm.id, user.id));
  });

  admin.realm('post', '/users/:id/federated-identity/:alias', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const alias = req.params.alias ?? '';
    const rep = await req.json(federatedIdentityRep);
    const provider = hasNul(alias) ? undefined
      : await db.selectFrom('identity_providers').select('alias').where('realm_id', '=', req.realm.id).where('alias', '=', alias).executeTakeFirst();
    if (!provider) throw notFound('Identity Provider not found');
    if (user.application) throw badRequest(APPLICATION_IDP_LINK);
    if (!rep.userId) throw badRequest("Invalid value for field 'userId': required");
    const linked = await db.selectFrom('federated_identities').select('user_id')
      .where('user_id', '=', user.id).where('identity_provider', '=', alias).executeTakeFirst();
    if (linked) throw conflict('User is already linked with provider');
    try {
      await db.insertInto('federated_identities').values({
        realm_id: req.realm.id, user_id: user.id, identity_provider: alias, external_user_id: rep.userId,
        external_username: rep.userName ?? null, token_sealed: null,
      }).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict('Another user is already linked with this provider identity');
      throw error;
    }
    return noContent();
  });

  admin.realm('delete', '/users/:id/federated-identity/:alias', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const alias = req.params.alias ?? '';
    const removed = hasNul(alias) ? undefined : await db.deleteFrom('federated_identities')
      .where('user_id', '=', user.id).where('identity_provider', '=', alias).returning('user_id').executeTakeFirst();
    if (!removed) throw notFound('Link not found');
    return noContent();
  });
}
