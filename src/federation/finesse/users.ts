// The local user of a Finesse agent or supervisor, created or refreshed from Finesse's <User>
// document in one transaction: found by its federated identity (identity provider alias + loginId),
// else (when creating) made like an Admin API user (the realm's default role and default groups),
// with username = loginName lower-cased (loginId when there is none), names, the attributes
// finesse.loginId / finesse.loginName / finesse.extension / finesse.teamId and the link row.
// No password is ever stored: Finesse checks it at every login.
//
// What Finesse decides, and only that, is replaced on every refresh: the two mapped realm (or
// client) roles (Agent -> agentRole, Supervisor -> supervisorRole) and the memberships of groups
// under teamsGroupPath (the agent's team, a supervisor's supervised teams). Roles and groups an
// administrator gave locally elsewhere stay. A local user holding the wanted username without the
// link is never taken over: nothing is created and undefined is returned (logged).
import { sql } from 'kysely';

import { defaultRoleOf } from '../../admin/realms.ts';
import { newId } from '../../crypto/random.ts';
import type { Db } from '../../store/db.ts';
import { groupPaths } from '../../store/groups.ts';
import { findRole, roleContainer } from '../../store/roles.ts';
import type { Realm, User } from '../../store/schema.ts';
import { finesseLog } from './client.ts';
import type { FinesseProviderConfig } from './config.ts';
import type { FinesseTeam, FinesseUser } from './xml.ts';

export const FINESSE_LOGIN_ID = 'finesse.loginId';
export const FINESSE_LOGIN_NAME = 'finesse.loginName';
export const FINESSE_EXTENSION = 'finesse.extension';
/** On users (the agent's team) and on team groups (the team they stand for). */
export const FINESSE_TEAM_ID = 'finesse.teamId';

export type FinesseUpsertOptions = {
  /** Create a local user when none is linked yet (else: undefined). */
  create: boolean;
  /** The username of a new user (default: loginName lower-cased, else loginId). */
  username?: string;
};

const isUniqueViolation = (error: unknown): boolean => (error as { code?: unknown }).code === '23505';

/** JSON with object keys sorted (jsonb does not keep the written order). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

/** Text PostgreSQL can store (no NUL), trimmed; null when nothing is left. */
function clean(value: string | null | undefined): string | null {
  const text = value?.replaceAll('\0', '').trim();
  return text ? text : null;
}

/** The local username Finesse's user gets (usernames are lower case, as Keycloak keeps them). */
/** Whether the user is linked to an enabled Finesse provider of the realm (its password lives in Finesse). */
export async function hasFinesseLink(db: Db, realmId: string, userId: string): Promise<boolean> {
  const row = await db.selectFrom('federated_identities as f')
    .innerJoin('identity_providers as p', (join) => join.onRef('p.alias', '=', 'f.identity_provider').onRef('p.realm_id', '=', 'f.realm_id'))
    .select('f.user_id').where('f.realm_id', '=', realmId).where('f.user_id', '=', userId)
    .where('p.provider_id', '=', 'finesse').where('p.enabled', '=', true).limit(1).executeTakeFirst();
  return row !== undefined;
}

export function finesseUsername(user: Pick<FinesseUser, 'loginId' | 'loginName'>): string | undefined {
  return (clean(user.loginName) ?? clean(user.loginId))?.toLowerCase() ?? undefined;
}

/** The local user linked to this provider's loginId, if any. */
export async function findFinesseLinkedUser(db: Db, realmId: string, alias: string, loginId: string): Promise<User | undefined> {
  if (loginId.includes('\0')) return undefined;
  return db.selectFrom('federated_identities').innerJoin('users', 'users.id', 'federated_identities.user_id')
    .selectAll('users').where('federated_identities.realm_id', '=', realmId)
    .where('federated_identities.identity_provider', '=', alias).where('federated_identities.external_user_id', '=', loginId)
    .executeTakeFirst();
}

/**
 * Creates or refreshes the local user of a Finesse user (see the header). undefined when there is
 * none and `create` is false, or when its username belongs to another local user.
 */
export async function upsertFinesseUser(db: Db, realm: Realm, config: FinesseProviderConfig, user: FinesseUser, options: FinesseUpsertOptions): Promise<User | undefined> {
  return (await upsertFinesseUserDetailed(db, realm, config, user, options))?.user;
}

/** upsertFinesseUser, also saying whether the user was created (sync counts, REGISTER events). */
export async function upsertFinesseUserDetailed(db: Db, realm: Realm, config: FinesseProviderConfig, user: FinesseUser, options: FinesseUpsertOptions): Promise<{ user: User; created: boolean } | undefined> {
  try {
    return await upsertOnce(db, realm, config, user, options);
  } catch (error) {
    // Two first logins of one agent at once: the loser finds the winner's row and refreshes it.
    if (!isUniqueViolation(error)) throw error;
    return upsertOnce(db, realm, config, user, options);
  }
}

async function upsertOnce(db: Db, realm: Realm, config: FinesseProviderConfig, fu: FinesseUser, options: FinesseUpsertOptions): Promise<{ user: User; created: boolean } | undefined> {
  const log = finesseLog();
  const loginId = clean(fu.loginId);
  if (!loginId) {
    log.warn({ realm: realm.name, provider: config.alias }, 'Finesse user without a loginId: not imported');
    return undefined;
  }
  const defaultRole = await defaultRoleOf(db, realm);
  return db.transaction().execute(async (trx) => {
    const existing = await findFinesseLinkedUser(trx, realm.id, config.alias, loginId);
    if (!existing && !options.create) return undefined;

    let username = existing ? finesseUsername(fu) ?? existing.username : clean(options.username)?.toLowerCase() ?? finesseUsername(fu);
    if (!username) return undefined;
    if (username !== existing?.username) {
      const holder = await trx.selectFrom('users').select(['id']).where('realm_id', '=', realm.id)
        .where((eb) => eb(eb.fn('lower', ['username']), '=', username!)).executeTakeFirst();
      if (holder && holder.id !== existing?.id) {
        if (!existing) {
          log.warn({ realm: realm.name, provider: config.alias, loginId, username }, 'Finesse user not imported: a local user without its link has this username');
          return undefined;
        }
        log.warn({ realm: realm.name, provider: config.alias, userId: existing.id, username }, 'Finesse username change skipped: the name is taken');
        username = existing.username;
      }
    }

    const attributes: Record<string, string[]> = { ...(existing?.attributes ?? {}) };
    const setAttribute = (name: string, value: string | null): void => {
      if (value === null) delete attributes[name];
      else attributes[name] = [value];
    };
    setAttribute(FINESSE_LOGIN_ID, loginId);
    setAttribute(FINESSE_LOGIN_NAME, clean(fu.loginName));
    setAttribute(FINESSE_EXTENSION, clean(fu.extension));
    setAttribute(FINESSE_TEAM_ID, clean(fu.teamId));
    const firstName = clean(fu.firstName);
    const lastName = clean(fu.lastName);
    const externalUsername = clean(fu.loginName);

    const userId = existing?.id ?? newId();
    if (existing) {
      // An administrator's enable/disable stays; most logins change nothing and write no row.
      const same = existing.username === username && existing.first_name === firstName && existing.last_name === lastName
        && canonical(existing.attributes) === canonical(attributes);
      if (!same) {
        await trx.updateTable('users').set({ username, first_name: firstName, last_name: lastName, attributes: JSON.stringify(attributes) })
          .where('id', '=', userId).execute();
      }
      await trx.updateTable('federated_identities').set({ external_username: externalUsername })
        .where('user_id', '=', userId).where('identity_provider', '=', config.alias)
        .where((eb) => eb.or([eb('external_username', 'is', null), eb('external_username', '!=', externalUsername ?? '')]))
        .execute();
    } else {
      await trx.insertInto('users').values({
        id: userId, realm_id: realm.id, username, email: null, email_verified: false, enabled: true,
        first_name: firstName, last_name: lastName, federation_link: null, service_account_client_id: null, application: false,
        attributes: JSON.stringify(attributes), required_actions: JSON.stringify([]),
      }).execute();
      await trx.insertInto('federated_identities').values({
        realm_id: realm.id, user_id: userId, identity_provider: config.alias, external_user_id: loginId,
        external_username: externalUsername, token_sealed: null,
      }).execute();
      // What Keycloak's addUser gives every new user: the default role and the default groups.
      if (defaultRole) await trx.insertInto('user_roles').values({ user_id: userId, role_id: defaultRole.id as string }).onConflict((oc) => oc.doNothing()).execute();
      const defaults = await trx.selectFrom('realm_default_groups').select('group_id').where('realm_id', '=', realm.id).execute();
      for (const { group_id } of defaults) {
        await trx.insertInto('user_groups').values({ user_id: userId, group_id }).onConflict((oc) => oc.doNothing()).execute();
      }
    }

    await applyFinesseRoles(trx, realm, config, userId, fu.roles);
    await applyFinesseTeams(trx, realm, config, userId, fu);

    const row = await trx.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirstOrThrow();
    return { user: row, created: !existing };
  });
}

// ---------------------------------------------------------------------------------------------
// Roles

/** The mapped role (created when missing when `create`). */
async function mappedRole(db: Db, realmId: string, spec: string, create: boolean): Promise<string | undefined> {
  const { container, name } = await roleContainer(db, realmId, spec);
  const found = await findRole(db, realmId, container, name);
  if (found || !create) return found;
  await db.insertInto('roles').values({ id: newId(), realm_id: realmId, client_id: container, name, description: null, attributes: '{}' })
    .onConflict((oc) => oc.doNothing()).execute();
  return findRole(db, realmId, container, name);
}

/** Grants the mapped roles of the user's Finesse roles and takes away the other mapped one. */
async function applyFinesseRoles(trx: Db, realm: Realm, config: FinesseProviderConfig, userId: string, roles: readonly string[]): Promise<void> {
  const mapping = [
    { spec: config.agentRole, held: roles.includes('Agent') },
    { spec: config.supervisorRole, held: roles.includes('Supervisor') },
  ];
  const grant = new Set<string>();
  const revoke = new Set<string>();
  for (const { spec, held } of mapping) {
    const roleId = await mappedRole(trx, realm.id, spec, held);
    if (!roleId) continue;
    (held ? grant : revoke).add(roleId);
  }
  // Both Finesse roles mapped to one local role: held when either is.
  for (const id of grant) revoke.delete(id);
  for (const roleId of grant) {
    await trx.insertInto('user_roles').values({ user_id: userId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
  }
  if (revoke.size > 0) await trx.deleteFrom('user_roles').where('user_id', '=', userId).where('role_id', 'in', [...revoke]).execute();
}

// ---------------------------------------------------------------------------------------------
// Teams

const pathSegments = (path: string): string[] => path.split('/').map((s) => s.trim()).filter((s) => s !== '');

/** The group at `segments` (created with missing parents). */
async function ensureGroupPath(db: Db, realmId: string, segments: string[]): Promise<string> {
  let parent: string | null = null;
  for (const name of segments) {
    const find = async (): Promise<string | undefined> => {
      const query = db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name);
      return (await (parent === null ? query.where('parent_id', 'is', null) : query.where('parent_id', '=', parent)).executeTakeFirst())?.id;
    };
    let id = await find();
    if (!id) {
      await db.insertInto('groups').values({ id: newId(), realm_id: realmId, parent_id: parent, name, description: null, attributes: '{}' })
        .onConflict((oc) => oc.doNothing()).execute();
      id = await find();
    }
    if (!id) throw new Error(`group ${name} could not be created`);
    parent = id;
  }
  if (parent === null) throw new Error('empty teams group path');
  return parent;
}

/** The parent group of the team groups (teamsGroupPath, created when missing). */
export function ensureFinesseTeamsParent(db: Db, realmId: string, config: Pick<FinesseProviderConfig, 'teamsGroupPath'>): Promise<string> {
  const segments = pathSegments(config.teamsGroupPath);
  return ensureGroupPath(db, realmId, segments.length > 0 ? segments : ['finesse-teams']);
}

/**
 * The group of a team under `parentId`: the child carrying its team id (renamed when the team was
 * and the new name is free), else a same-named child that stands for no team (adopted), else a new
 * one. undefined when the name belongs to another team's group (logged). Same rules as the sync.
 */
export async function ensureFinesseTeamGroup(db: Db, realm: Pick<Realm, 'id' | 'name'>, config: Pick<FinesseProviderConfig, 'alias'>, parentId: string, team: FinesseTeam): Promise<string | undefined> {
  const teamId = clean(team.id);
  const name = clean(team.name);
  if (!teamId || !name) return undefined;
  const children = db.selectFrom('groups').select(['id', 'name', 'attributes']).where('realm_id', '=', realm.id).where('parent_id', '=', parentId);
  const byTeam = await children.where(sql<string>`attributes #>> ${sql.lit(`{${FINESSE_TEAM_ID},0}`)}`, '=', teamId).executeTakeFirst();
  const byName = await children.where('name', '=', name).executeTakeFirst();
  if (byTeam) {
    if (byTeam.name !== name && !byName) await db.updateTable('groups').set({ name }).where('id', '=', byTeam.id).execute();
    return byTeam.id;
  }
  if (byName) {
    const owner = byName.attributes[FINESSE_TEAM_ID]?.[0];
    if (owner !== undefined && owner !== teamId) {
      finesseLog().warn({ realm: realm.name, provider: config.alias, teamId, name, otherTeamId: owner }, 'Finesse team has no group: its name belongs to another team\'s group');
      return undefined;
    }
    await db.updateTable('groups').set({ attributes: JSON.stringify({ ...byName.attributes, [FINESSE_TEAM_ID]: [teamId] }) }).where('id', '=', byName.id).execute();
    return byName.id;
  }
  const id = newId();
  await db.insertInto('groups').values({
    id, realm_id: realm.id, parent_id: parentId, name, description: null, attributes: JSON.stringify({ [FINESSE_TEAM_ID]: [teamId] }),
  }).execute();
  return id;
}

/** The user's team groups: its own team and the teams it supervises; other memberships under the parent go. */
async function applyFinesseTeams(trx: Db, realm: Realm, config: FinesseProviderConfig, userId: string, fu: FinesseUser): Promise<void> {
  const teams: FinesseTeam[] = [];
  if (fu.teamId && fu.teamName) teams.push({ id: fu.teamId, name: fu.teamName });
  teams.push(...fu.supervisedTeams);
  const current = await trx.selectFrom('user_groups').select('group_id').where('user_id', '=', userId).execute();
  // Nothing to add and nothing under a path that may not even exist: no parent group is made.
  if (teams.length === 0 && current.length === 0) return;

  const parentId = await ensureFinesseTeamsParent(trx, realm.id, config);
  const wanted = new Set<string>();
  for (const team of teams) {
    const groupId = await ensureFinesseTeamGroup(trx, realm, config, parentId, team);
    if (groupId) wanted.add(groupId);
  }
  for (const groupId of wanted) {
    await trx.insertInto('user_groups').values({ user_id: userId, group_id: groupId }).onConflict((oc) => oc.doNothing()).execute();
  }

  const [parentPath] = (await groupPaths(trx, [parentId])).values();
  const paths = await groupPaths(trx, current.map((g) => g.group_id));
  const prefix = `${parentPath}/`;
  const stale = current.map((g) => g.group_id).filter((id) => !wanted.has(id) && paths.get(id)?.startsWith(prefix));
  if (stale.length > 0) await trx.deleteFrom('user_groups').where('user_id', '=', userId).where('group_id', 'in', stale).execute();
}
