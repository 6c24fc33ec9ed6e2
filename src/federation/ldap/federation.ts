// The local (imported) user of an LDAP entry: found by its LDAP_ID and federation link, created
// or refreshed from what the mappers made of the entry, in one transaction. As Keycloak's
// importUserFromLDAP: federationLink = the provider, attributes LDAP_ID and LDAP_ENTRY_DN, e-mail
// lower-cased and verified when the provider trusts e-mail, new users with the realm's default
// role, default groups and default required actions. A local user (no federation link) or another
// provider's user with the same username is never taken over (LdapImportConflictError).
//
// Memberships: Keycloak reads READ_ONLY / LDAP_ONLY group and role mappings from LDAP on every
// request and merges them with the local ones; here they are stored. So that memberships an
// administrator gave locally survive, a local membership the mapper's LDAP answer lacks is removed
// only when it is the mapper's to manage: under its groups path (or in its role container) AND
// named like one of its LDAP groups (or for LDAP_ONLY, where Keycloak ignores local mappings
// altogether, every one in that scope). IMPORT mode memberships are imported at creation only, as
// Keycloak does. Hardcoded groups and roles are added and never removed.
import { sql } from 'kysely';

import { defaultRoleOf } from '../../admin/realms.ts';
import { newId } from '../../crypto/random.ts';
import { disabledByPermanentLockout } from '../../login/brute-force.ts';
import { defaultActionsForNewUser } from '../../login/required-actions.ts';
import { parseRealmSettings } from '../../realms/settings.ts';
import type { Db } from '../../store/db.ts';
import { groupPaths } from '../../store/groups.ts';
import type { Realm, User } from '../../store/schema.ts';
import { ldapLog } from './log.ts';
import type { LdapMappedUser, LdapMembership, MappedProperties } from './mappers.ts';
import type { LdapProviderConfig, MappedLdapUser } from './types.ts';

export const LDAP_ID = 'LDAP_ID';
export const LDAP_ENTRY_DN = 'LDAP_ENTRY_DN';

/** The entry cannot be imported: its username or e-mail belongs to another local user. */
export class LdapImportConflictError extends Error {
  readonly conflict: 'username' | 'email';
  constructor(conflict: 'username' | 'email', message: string) {
    super(message);
    this.conflict = conflict;
  }
}

const isUniqueViolation = (error: unknown): boolean => (error as { code?: unknown }).code === '23505';

/** The user's LDAP_ID attribute. */
export function ldapIdOf(user: Pick<User, 'attributes'>): string | undefined {
  return user.attributes[LDAP_ID]?.[0];
}

/**
 * The local user of an LDAP entry: the user linked to this provider with this LDAP_ID, else the
 * one linked to this provider with this username (the entry was re-created in LDAP).
 */
export async function findFederatedUser(db: Db, realmId: string, providerId: string, key: { ldapId: string; username: string }): Promise<User | undefined> {
  const username = key.username.toLowerCase();
  // The username index first: it finds every known user whose name did not change.
  const byName = await db.selectFrom('users').selectAll().where('realm_id', '=', realmId)
    .where((eb) => eb(eb.fn('lower', ['username']), '=', username)).executeTakeFirst();
  if (byName && byName.federation_link === providerId && ldapIdOf(byName) === key.ldapId) return byName;
  const byId = await db.selectFrom('users').selectAll().where('realm_id', '=', realmId).where('federation_link', '=', providerId)
    .where(sql<string>`attributes #>> '{LDAP_ID,0}'`, '=', key.ldapId).limit(1).executeTakeFirst();
  if (byId) return byId;
  return byName && byName.federation_link === providerId ? byName : undefined;
}

/** A plain MappedLdapUser (not from mapLdapUser): its groups and roles are added, never removed. */
function membershipsOf(mapped: MappedLdapUser): LdapMembership[] {
  const detailed = (mapped as Partial<LdapMappedUser>).memberships;
  if (detailed) return detailed;
  return [
    ...mapped.groupPaths.map((path): LdapMembership => ({ kind: 'hardcoded-group', mapperName: '(mapped)', path })),
    ...mapped.roles.map((role): LdapMembership => ({ kind: 'hardcoded-role', mapperName: '(mapped)', role })),
  ];
}

function mappedProperties(mapped: MappedLdapUser): MappedProperties {
  return (mapped as Partial<LdapMappedUser>).mapped ?? { email: true, firstName: true, lastName: true, emailVerified: true, enabled: !mapped.enabled };
}

/** JSON with object keys sorted (jsonb does not keep the written order). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

const pathText = (segments: string[]): string => `/${segments.join('/')}`;
const pathSegments = (path: string): string[] => path.split('/').filter((s) => s !== '');

type Removals = { groups: string[]; roles: string[] };

/** Client uuid of a clientId (undefined: no such client). */
async function clientUuid(db: Db, realmId: string, clientId: string): Promise<string | undefined> {
  return (await db.selectFrom('clients').select('id').where('realm_id', '=', realmId).where('client_id', '=', clientId).executeTakeFirst())?.id;
}

/** Which local memberships of an existing user the membership mappers take away (see the header). */
async function plannedRemovals(db: Db, realm: Realm, config: LdapProviderConfig, user: User, memberships: LdapMembership[]): Promise<Removals> {
  const out: Removals = { groups: [], roles: [] };
  const managed = memberships.filter((m) => (m.kind === 'group-mapper' || m.kind === 'role-mapper') && m.mode !== 'IMPORT');
  if (managed.length === 0) return out;
  const keep = new Set<string>();
  for (const m of memberships) {
    if (m.kind === 'group-mapper') for (const g of m.groups) keep.add(pathText(g).toLowerCase());
    if (m.kind === 'hardcoded-group') keep.add(pathText(pathSegments(m.path)).toLowerCase());
  }
  const askLdap = async (m: Extract<LdapMembership, { ldapNames: unknown }>, names: string[]): Promise<Set<string>> => {
    if (m.exclusive) return new Set(names.map((n) => n.toLowerCase()));
    if (names.length === 0) return new Set();
    try {
      return await m.ldapNames(names);
    } catch (error) {
      // Not knowing which groups are LDAP's, nothing is removed this time.
      ldapLog().warn({ err: error, provider: config.name, mapper: m.mapperName }, 'LDAP group lookup failed; memberships kept');
      return new Set();
    }
  };

  const groupRows = await db.selectFrom('user_groups').innerJoin('groups', 'groups.id', 'user_groups.group_id')
    .select(['groups.id', 'groups.name']).where('user_groups.user_id', '=', user.id).execute();
  const paths = await groupPaths(db, groupRows.map((g) => g.id));
  for (const m of managed) {
    if (m.kind !== 'group-mapper') continue;
    const prefix = m.parent.length === 0 ? '/' : `${pathText(m.parent)}/`.toLowerCase();
    const candidates = groupRows.filter((g) => {
      const path = paths.get(g.id)?.toLowerCase();
      return path !== undefined && path.startsWith(prefix) && !keep.has(path);
    });
    const ldapGroups = await askLdap(m, candidates.map((g) => g.name));
    out.groups.push(...candidates.filter((g) => ldapGroups.has(g.name.toLowerCase())).map((g) => g.id));
  }

  const keepRoles = new Set<string>();
  for (const m of memberships) if (m.kind === 'role-mapper') for (const r of m.roles) keepRoles.add(`${m.clientId ?? ''}\n${r.toLowerCase()}`);
  for (const m of managed) {
    if (m.kind !== 'role-mapper') continue;
    const container = m.clientId === null ? null : await clientUuid(db, realm.id, m.clientId);
    if (container === undefined) continue;
    let query = db.selectFrom('user_roles').innerJoin('roles', 'roles.id', 'user_roles.role_id').select(['roles.id', 'roles.name'])
      .where('user_roles.user_id', '=', user.id);
    query = container === null ? query.where('roles.client_id', 'is', null) : query.where('roles.client_id', '=', container);
    const candidates = (await query.execute()).filter((r) => !keepRoles.has(`${m.clientId ?? ''}\n${r.name.toLowerCase()}`));
    const ldapRoles = await askLdap(m, candidates.map((r) => r.name));
    out.roles.push(...candidates.filter((r) => ldapRoles.has(r.name.toLowerCase())).map((r) => r.id));
  }
  return out;
}

/** The group at `segments`, created (with missing parents) when absent. */
async function ensureGroup(trx: Db, realmId: string, segments: string[]): Promise<string | undefined> {
  let parent: string | null = null;
  for (const name of segments) {
    const find = (): Promise<{ id: string } | undefined> => {
      const query = trx.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name);
      return (parent === null ? query.where('parent_id', 'is', null) : query.where('parent_id', '=', parent)).executeTakeFirst();
    };
    let group = await find();
    if (!group) {
      await trx.insertInto('groups').values({ id: newId(), realm_id: realmId, parent_id: parent, name, description: null, attributes: '{}' })
        .onConflict((oc) => oc.doNothing()).execute();
      group = await find();
    }
    if (!group) return undefined;
    parent = group.id;
  }
  return parent ?? undefined;
}

async function findGroup(trx: Db, realmId: string, segments: string[]): Promise<string | undefined> {
  let parent: string | null = null;
  for (const name of segments) {
    const query = trx.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name);
    const group: { id: string } | undefined = await (parent === null ? query.where('parent_id', 'is', null) : query.where('parent_id', '=', parent)).executeTakeFirst();
    if (!group) return undefined;
    parent = group.id;
  }
  return parent ?? undefined;
}

async function findRole(trx: Db, realmId: string, container: string | null, name: string): Promise<string | undefined> {
  const query = trx.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('name', '=', name);
  return (await (container === null ? query.where('client_id', 'is', null) : query.where('client_id', '=', container)).executeTakeFirst())?.id;
}

/** The role (created when missing, as the role mapper does) in the realm or a client. */
async function ensureRole(trx: Db, realmId: string, container: string | null, name: string): Promise<string | undefined> {
  const found = await findRole(trx, realmId, container, name);
  if (found) return found;
  await trx.insertInto('roles').values({ id: newId(), realm_id: realmId, client_id: container, name, description: null, attributes: '{}' })
    .onConflict((oc) => oc.doNothing()).execute();
  return findRole(trx, realmId, container, name);
}

/** Keycloak's KeycloakModelUtils.getRoleFromString: a realm role, else clientId.roleName. */
async function roleFromString(trx: Db, realmId: string, role: string): Promise<string | undefined> {
  const realmRole = await findRole(trx, realmId, null, role);
  if (realmRole) return realmRole;
  const dot = role.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const client = await clientUuid(trx, realmId, role.slice(0, dot));
  return client === undefined ? undefined : findRole(trx, realmId, client, role.slice(dot + 1));
}

/**
 * Creates or refreshes the local user of an LDAP entry from what mapLdapUser made of it, in one
 * transaction. Throws LdapImportConflictError when a new entry's username or e-mail belongs to
 * another local user (an existing user keeps its old value instead, with a warning).
 */
export async function upsertFederatedUser(db: Db, realm: Realm, config: LdapProviderConfig, mapped: MappedLdapUser): Promise<{ user: User; created: boolean }> {
  try {
    return await upsertOnce(db, realm, config, mapped);
  } catch (error) {
    // Two first logins of one user at once: the loser finds the winner's row and refreshes it.
    if (!isUniqueViolation(error)) throw error;
    return upsertOnce(db, realm, config, mapped);
  }
}

async function upsertOnce(db: Db, realm: Realm, config: LdapProviderConfig, mapped: MappedLdapUser): Promise<{ user: User; created: boolean }> {
  const settings = parseRealmSettings(realm.settings);
  const flags = mappedProperties(mapped);
  const memberships = membershipsOf(mapped);
  const existing = await findFederatedUser(db, realm.id, config.id, mapped);
  const log = ldapLog();

  let username = mapped.username.toLowerCase();
  if (username !== existing?.username) {
    const holder = await db.selectFrom('users').select(['id', 'username', 'federation_link']).where('realm_id', '=', realm.id)
      .where((eb) => eb(eb.fn('lower', ['username']), '=', username)).executeTakeFirst();
    if (holder && holder.id !== existing?.id) {
      const message = holder.federation_link === null
        ? `Can't import user '${username}' from LDAP because a local user with this username already exists`
        : `Can't import user '${username}' from LDAP because a user of another user storage provider has this username`;
      if (!existing) throw new LdapImportConflictError('username', message);
      log.warn({ provider: config.name, userId: existing.id, username }, 'LDAP username change skipped: the name is taken');
      username = existing.username;
    }
  }

  let email = flags.email ? mapped.email?.toLowerCase() || null : existing?.email ?? null;
  if (email !== null && email !== existing?.email && !settings.duplicateEmailsAllowed) {
    let other = db.selectFrom('users').select('username').where('realm_id', '=', realm.id)
      .where((eb) => eb(eb.fn('lower', ['email']), '=', email));
    if (existing) other = other.where('id', '!=', existing.id);
    const holder = await other.executeTakeFirst();
    if (holder) {
      const message = `Can't import user '${username}' from LDAP because email '${email}' already exists in Keycloak. Existing user with this email is '${holder.username}'`;
      if (!existing) throw new LdapImportConflictError('email', message);
      log.warn({ provider: config.name, userId: existing.id }, 'LDAP e-mail change skipped: the address belongs to another user');
      email = existing.email;
    }
  }

  const attributes: Record<string, string[]> = { ...(existing?.attributes ?? {}) };
  for (const [name, values] of Object.entries(mapped.attributes)) {
    if (values.length === 0) delete attributes[name];
    else attributes[name] = values;
  }
  attributes[LDAP_ID] = [mapped.ldapId];
  attributes[LDAP_ENTRY_DN] = [mapped.dn];

  let enabled = existing ? existing.enabled : mapped.enabled;
  // The directory decides (msad userAccountControl), except over a brute-force permanent lockout.
  if (flags.enabled) enabled = mapped.enabled && !(existing && disabledByPermanentLockout(existing));
  const emailVerified = existing && !flags.emailVerified ? existing.email_verified : mapped.emailVerified;
  const firstName = flags.firstName ? mapped.firstName : existing?.first_name ?? null;
  const lastName = flags.lastName ? mapped.lastName : existing?.last_name ?? null;
  const requiredActions = [...new Set([...(existing ? existing.required_actions : defaultActionsForNewUser(realm.settings)), ...mapped.requiredActions])];

  const removals = existing ? await plannedRemovals(db, realm, config, existing, memberships) : { groups: [], roles: [] };
  const created = !existing;
  const defaultRole = created ? await defaultRoleOf(db, realm) : undefined;
  const userId = existing?.id ?? newId();

  await db.transaction().execute(async (trx) => {
    const row = {
      username, email, email_verified: emailVerified, enabled, first_name: firstName, last_name: lastName,
      attributes: JSON.stringify(attributes), required_actions: JSON.stringify(requiredActions),
    };
    if (existing) {
      // Most logins change nothing: no row write then.
      const same = existing.username === username && existing.email === email && existing.email_verified === emailVerified
        && existing.enabled === enabled && existing.first_name === firstName && existing.last_name === lastName
        && existing.federation_link === config.id && canonical(existing.attributes) === canonical(attributes)
        && canonical(existing.required_actions) === canonical(requiredActions);
      if (!same) await trx.updateTable('users').set({ ...row, federation_link: config.id }).where('id', '=', existing.id).execute();
    } else {
      await trx.insertInto('users').values({
        id: userId, realm_id: realm.id, ...row, federation_link: config.id, service_account_client_id: null, application: false,
      }).execute();
      // What Keycloak's addUser gives every new user (not in a scope an LDAP_ONLY mapper owns).
      const exclusiveGroups = memberships.some((m) => m.kind === 'group-mapper' && m.exclusive);
      const exclusiveRealmRoles = memberships.some((m) => m.kind === 'role-mapper' && m.exclusive && m.clientId === null);
      if (defaultRole && !exclusiveRealmRoles) {
        await trx.insertInto('user_roles').values({ user_id: userId, role_id: defaultRole.id as string }).onConflict((oc) => oc.doNothing()).execute();
      }
      if (!exclusiveGroups) {
        const defaults = await trx.selectFrom('realm_default_groups').select('group_id').where('realm_id', '=', realm.id).execute();
        for (const { group_id } of defaults) {
          await trx.insertInto('user_groups').values({ user_id: userId, group_id }).onConflict((oc) => oc.doNothing()).execute();
        }
      }
    }

    const joinGroup = async (groupId: string): Promise<void> => {
      await trx.insertInto('user_groups').values({ user_id: userId, group_id: groupId }).onConflict((oc) => oc.doNothing()).execute();
    };
    const grantRole = async (roleId: string): Promise<void> => {
      await trx.insertInto('user_roles').values({ user_id: userId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
    };
    for (const m of memberships) {
      switch (m.kind) {
        case 'group-mapper': {
          // IMPORT mode: memberships are imported with the user only (Keycloak's isCreate).
          if (m.mode === 'IMPORT' && !created) break;
          for (const segments of m.groups) {
            const groupId = await ensureGroup(trx, realm.id, segments);
            if (groupId) await joinGroup(groupId);
          }
          break;
        }
        case 'role-mapper': {
          if (m.mode === 'IMPORT' && !created) break;
          const container = m.clientId === null ? null : await clientUuid(trx, realm.id, m.clientId);
          if (container === undefined) {
            log.warn({ provider: config.name, mapper: m.mapperName, clientId: m.clientId }, 'LDAP role mapper skipped: client not found');
            break;
          }
          for (const name of m.roles) {
            const roleId = await ensureRole(trx, realm.id, container, name);
            if (roleId) await grantRole(roleId);
          }
          break;
        }
        case 'hardcoded-group': {
          const groupId = await findGroup(trx, realm.id, pathSegments(m.path));
          if (groupId) await joinGroup(groupId);
          else log.warn({ provider: config.name, mapper: m.mapperName, group: m.path }, 'Hardcoded LDAP group is not available anymore');
          break;
        }
        case 'hardcoded-role': {
          const roleId = await roleFromString(trx, realm.id, m.role);
          if (roleId) await grantRole(roleId);
          else log.warn({ provider: config.name, mapper: m.mapperName, role: m.role }, 'Hardcoded LDAP role is not available anymore');
          break;
        }
      }
    }
    if (removals.groups.length > 0) {
      await trx.deleteFrom('user_groups').where('user_id', '=', userId).where('group_id', 'in', removals.groups).execute();
    }
    if (removals.roles.length > 0) {
      await trx.deleteFrom('user_roles').where('user_id', '=', userId).where('role_id', 'in', removals.roles).execute();
    }
  });
  const user = await db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirstOrThrow();
  return { user, created };
}
