// Mapper data sync (Keycloak's LDAPStorageMapper.syncDataFromFederationProviderToKeycloak), run
// before every user sync and on demand (POST .../user-storage/{id}/mappers/{mapperId}/sync):
// group-ldap-mapper brings the mapper's LDAP groups in as local groups under its groups path
// (a tree when preserve.group.inheritance is on), copying mapped.group.attributes, and with
// drop.non.existing.groups.during.sync removes local groups under that path LDAP does not have;
// role-ldap-mapper creates the LDAP roles missing in the realm or client. Other mappers have
// nothing to sync. The direction keycloakToFed (writing local groups or roles to LDAP) answers
// Keycloak's empty result for mappers not in LDAP_ONLY mode and is refused for LDAP_ONLY ones.
//
// The group tree follows the login path (mappers.ts): a group's parent is the group listing its DN
// as a member; of several parents the first by DN wins (Keycloak refuses such a directory).
import { AndFilter, type Client, type Entry, EqualityFilter, type Filter, FilterParser, ResultCodeError } from 'ldapts';

import { newId } from '../../crypto/random.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db } from '../../store/db.ts';
import type { Realm } from '../../store/schema.ts';
import { withLdap } from './client.ts';
import { groupPathSegments, list, normalizeDn, rawValues } from './mappers.ts';
import type { LdapMapperConfig, LdapProviderConfig } from './types.ts';

export type MapperSyncDirection = 'fedToKeycloak' | 'keycloakToFed';

/** Keycloak's SynchronizationResult with the status text of the mapper that produced it. */
export type MapperSyncResult = { ignored: boolean; added: number; updated: number; removed: number; failed: number; status: string };

type Counts = { added: number; updated: number; removed: number; failed: number };

const zero = (): Counts => ({ added: 0, updated: 0, removed: 0, failed: 0 });

const STATUS = {
  default: (c: Counts) => {
    let status = `${c.added} imported users, ${c.updated} updated users`;
    if (c.removed > 0) status += `, ${c.removed} removed users`;
    if (c.failed !== 0) status += `, ${c.failed} users failed sync! See server log for more details`;
    return status;
  },
  groupsIn: (c: Counts) => `${c.added} imported groups, ${c.updated} updated groups, ${c.removed} removed groups`,
  groupsOut: (c: Counts) => `${c.added} groups imported to LDAP, ${c.updated} groups updated to LDAP, ${c.removed} groups removed from LDAP`,
  rolesIn: (c: Counts) => `${c.added} imported roles, ${c.updated} roles already exists in Keycloak`,
  rolesOut: (c: Counts) => `${c.added} roles imported to LDAP, ${c.updated} roles already existed in LDAP`,
};

const result = (counts: Counts, status: (c: Counts) => string): MapperSyncResult => ({ ignored: false, ...counts, status: status(counts) });

/** A mapper whose configuration makes the sync impossible (answered 400 by the Admin API). */
export class LdapMapperSyncError extends Error {}

// ---------------------------------------------------------------------------------------------
// Mapper settings (the keys of Keycloak's GroupMapperConfig / RoleMapperConfig, mappers.ts defaults)

type MemberSettings = {
  baseDn: string;
  nameAttribute: string;
  objectClasses: string[];
  customFilter: string;
  membershipAttribute: string;
  mode: 'READ_ONLY' | 'LDAP_ONLY' | 'IMPORT';
};

const isTrue = (value: string | undefined): boolean => value?.trim().toLowerCase() === 'true';

function memberSettings(config: LdapProviderConfig, mapper: LdapMapperConfig, kind: 'group' | 'role'): MemberSettings {
  const c = mapper.config;
  const baseDn = c[kind === 'group' ? 'groups.dn' : 'roles.dn']?.trim();
  if (!baseDn) throw new LdapMapperSyncError(kind === 'group' ? 'Groups DN is null! Check your configuration' : 'Roles DN is null! Check your configuration');
  const mode = c.mode?.trim().toUpperCase();
  return {
    baseDn,
    nameAttribute: c[kind === 'group' ? 'group.name.ldap.attribute' : 'role.name.ldap.attribute']?.trim() || 'cn',
    objectClasses: list(c[kind === 'group' ? 'group.object.classes' : 'role.object.classes'] ?? (config.vendor === 'ad' ? 'group' : 'groupOfNames')),
    customFilter: c[kind === 'group' ? 'groups.ldap.filter' : 'roles.ldap.filter']?.trim() ?? '',
    membershipAttribute: c['membership.ldap.attribute']?.trim() || 'member',
    mode: mode === 'LDAP_ONLY' || mode === 'IMPORT' ? mode : 'READ_ONLY',
  };
}

function filterOf(settings: MemberSettings): Filter {
  const clauses: Filter[] = settings.objectClasses.map((value) => new EqualityFilter({ attribute: 'objectClass', value }));
  if (settings.customFilter !== '') {
    try {
      clauses.push(FilterParser.parseString(settings.customFilter));
    } catch (error) {
      throw new LdapMapperSyncError(`Invalid LDAP filter of the mapper: ${settings.customFilter} (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  return new AndFilter({ filters: clauses });
}

/** Every entry of the mapper's groups (or roles), paged as the provider pages user searches. */
async function loadAll(config: LdapProviderConfig, settings: MemberSettings, attributes: string[]): Promise<Entry[]> {
  const filter = filterOf(settings);
  try {
    return await withLdap(config, async (client: Client) => {
      const search = { scope: config.searchScope, filter, attributes };
      if (!config.pagination) return (await client.search(settings.baseDn, search)).searchEntries;
      const out: Entry[] = [];
      for await (const page of client.searchPaginated(settings.baseDn, { ...search, paged: { pageSize: config.batchSizeForSync } })) out.push(...page.searchEntries);
      return out;
    });
  } catch (error) {
    // The directory answered (no such base DN, bad filter...): the mapper's configuration is wrong.
    if (error instanceof ResultCodeError) throw new LdapMapperSyncError(`LDAP search of ${settings.baseDn} failed: ${error.message}`);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// group-ldap-mapper: LDAP -> local groups

type LdapGroup = { dn: string; name: string; entry: Entry };

/** Each group's path below the mapper's groups path: flat, or the tree of member DNs. */
function groupPathsOf(groups: LdapGroup[], settings: MemberSettings, preserveInheritance: boolean): string[][] {
  if (!preserveInheritance) return groups.map((g) => [g.name]);
  const byDn = new Map(groups.map((g) => [normalizeDn(g.dn), g]));
  const parentOf = new Map<string, string>();
  for (const group of [...groups].sort((a, b) => a.dn.localeCompare(b.dn))) {
    const self = normalizeDn(group.dn);
    for (const member of rawValues(group.entry, settings.membershipAttribute)) {
      const child = normalizeDn(member);
      if (child !== self && byDn.has(child) && !parentOf.has(child)) parentOf.set(child, self);
    }
  }
  return groups.map((group) => {
    const segments = [group.name];
    const seen = new Set([normalizeDn(group.dn)]);
    let current = parentOf.get(normalizeDn(group.dn));
    while (current !== undefined && !seen.has(current)) {
      seen.add(current);
      segments.unshift(byDn.get(current)!.name);
      current = parentOf.get(current);
    }
    return segments;
  });
}

/** The local group `name` under `parent` (null: top level), created when absent. */
async function ensureGroup(db: Db, realmId: string, parent: string | null, name: string): Promise<{ id: string; created: boolean }> {
  const find = async (): Promise<string | undefined> => {
    const query = db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name);
    return (await (parent === null ? query.where('parent_id', 'is', null) : query.where('parent_id', '=', parent)).executeTakeFirst())?.id;
  };
  const found = await find();
  if (found) return { id: found, created: false };
  const inserted = await db.insertInto('groups').values({ id: newId(), realm_id: realmId, parent_id: parent, name, description: null, attributes: '{}' })
    .onConflict((oc) => oc.doNothing()).returning('id').executeTakeFirst();
  if (inserted) return { id: inserted.id, created: true };
  const raced = await find();
  if (!raced) throw new Error(`group ${name} could not be created`);
  return { id: raced, created: false };
}

async function syncGroupsFromLdap(db: Db, realm: Realm, config: LdapProviderConfig, mapper: LdapMapperConfig, logger: Logger): Promise<MapperSyncResult> {
  const settings = memberSettings(config, mapper, 'group');
  const c = mapper.config;
  const preserveInheritance = isTrue(c['preserve.group.inheritance']);
  const mappedAttributes = list(c['mapped.group.attributes'] ?? '');
  const entries = await loadAll(config, settings, [settings.nameAttribute, ...(preserveInheritance ? [settings.membershipAttribute] : []), ...mappedAttributes]);
  const groups = entries.flatMap((entry): LdapGroup[] => {
    const name = rawValues(entry, settings.nameAttribute)[0];
    return name ? [{ dn: entry.dn, name, entry }] : [];
  });
  const paths = groupPathsOf(groups, settings, preserveInheritance);

  // The groups path itself (created when missing, as first logins do).
  let root: string | null = null;
  for (const name of groupPathSegments(c['groups.path'] ?? '/')) root = (await ensureGroup(db, realm.id, root, name)).id;

  const counts = zero();
  const visited = new Set<string>();
  // Parents first, so every group's ancestors exist when it is reached.
  const order = groups.map((group, i) => ({ group, path: paths[i]! })).sort((a, b) => a.path.length - b.path.length);
  for (const { group, path } of order) {
    try {
      let parent = root;
      let created = false;
      for (const name of path) {
        const step = await ensureGroup(db, realm.id, parent, name);
        parent = step.id;
        created = step.created;
        visited.add(step.id);
      }
      if (created) counts.added++;
      else counts.updated++;
      if (mappedAttributes.length > 0 && parent !== null) await copyGroupAttributes(db, parent, group.entry, mappedAttributes);
    } catch (error) {
      counts.failed++;
      logger.error({ err: error, realm: realm.name, provider: config.name, mapper: mapper.name, group: group.name }, 'Failed to sync group from LDAP');
    }
  }
  if (isTrue(c['drop.non.existing.groups.during.sync'])) counts.removed = await dropGroupsNotInLdap(db, realm.id, root, visited);
  return result(counts, STATUS.groupsIn);
}

/** Keycloak's updateAttributesOfKCGroup: each mapped attribute takes the LDAP values, or goes. */
async function copyGroupAttributes(db: Db, groupId: string, entry: Entry, names: string[]): Promise<void> {
  const row = await db.selectFrom('groups').select('attributes').where('id', '=', groupId).executeTakeFirst();
  if (!row) return;
  const attributes = { ...row.attributes };
  for (const name of names) {
    const found = [...new Set(rawValues(entry, name))];
    if (found.length === 0) delete attributes[name];
    else attributes[name] = found;
  }
  await db.updateTable('groups').set({ attributes: JSON.stringify(attributes) }).where('id', '=', groupId).execute();
}

/** Local groups below the groups path that LDAP did not yield (a group keeping a synced descendant stays). */
async function dropGroupsNotInLdap(db: Db, realmId: string, root: string | null, visited: Set<string>): Promise<number> {
  const all = await db.selectFrom('groups').select(['id', 'parent_id']).where('realm_id', '=', realmId).execute();
  const children = new Map<string | null, string[]>();
  for (const g of all) children.set(g.parent_id, [...(children.get(g.parent_id) ?? []), g.id]);
  const doomed: string[] = [];
  /** True when the subtree at `id` holds a visited group. */
  const walk = (id: string): boolean => {
    let keeps = visited.has(id);
    for (const child of children.get(id) ?? []) keeps = walk(child) || keeps;
    if (!keeps) doomed.push(id);
    return keeps;
  };
  for (const top of children.get(root) ?? []) walk(top);
  // Deleting the highest doomed group of a branch takes its subgroups (cascade); all of them count.
  const doomedSet = new Set(doomed);
  const parentOf = new Map(all.map((g) => [g.id, g.parent_id]));
  const heads = doomed.filter((id) => !doomedSet.has(parentOf.get(id) ?? ''));
  for (let at = 0; at < heads.length; at += 500) {
    await db.deleteFrom('groups').where('realm_id', '=', realmId).where('id', 'in', heads.slice(at, at + 500)).execute();
  }
  return doomed.length;
}

// ---------------------------------------------------------------------------------------------
// role-ldap-mapper: LDAP -> local roles

async function syncRolesFromLdap(db: Db, realm: Realm, config: LdapProviderConfig, mapper: LdapMapperConfig, logger: Logger): Promise<MapperSyncResult> {
  const settings = memberSettings(config, mapper, 'role');
  const c = mapper.config;
  const realmRoles = c['use.realm.roles.mapping'] === undefined || isTrue(c['use.realm.roles.mapping']);
  let container: string | null = null;
  if (!realmRoles) {
    const clientId = c['client.id']?.trim();
    const client = clientId ? await db.selectFrom('clients').select('id').where('realm_id', '=', realm.id).where('client_id', '=', clientId).executeTakeFirst() : undefined;
    if (!client) {
      logger.warn({ realm: realm.name, mapper: mapper.name, clientId }, 'Ignored sync for federation mapper: client not found');
      return result(zero(), STATUS.rolesIn);
    }
    container = client.id;
  }
  const entries = await loadAll(config, settings, [settings.nameAttribute]);
  const counts = zero();
  for (const name of new Set(entries.map((e) => rawValues(e, settings.nameAttribute)[0]).filter((n): n is string => !!n))) {
    const inserted = await db.insertInto('roles').values({ id: newId(), realm_id: realm.id, client_id: container, name, description: null, attributes: '{}' })
      .onConflict((oc) => oc.doNothing()).returning('id').executeTakeFirst();
    if (inserted) counts.added++;
    else counts.updated++;
  }
  return result(counts, STATUS.rolesIn);
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** One mapper's data sync in the given direction (the Admin API's mapper sync). */
export async function syncLdapMapper(db: Db, realm: Realm, config: LdapProviderConfig, mapper: LdapMapperConfig, direction: MapperSyncDirection, logger: Logger): Promise<MapperSyncResult> {
  const membership = mapper.providerId === 'group-ldap-mapper' ? 'group' : mapper.providerId === 'role-ldap-mapper' ? 'role' : undefined;
  if (direction === 'fedToKeycloak') {
    if (membership === 'group') return syncGroupsFromLdap(db, realm, config, mapper, logger);
    if (membership === 'role') return syncRolesFromLdap(db, realm, config, mapper, logger);
    return result(zero(), STATUS.default);
  }
  if (membership === undefined) return result(zero(), STATUS.default);
  const settings = memberSettings(config, mapper, membership);
  // Keycloak: "Ignored sync for federation mapper ... as it's mode is ..." for the other modes.
  if (settings.mode !== 'LDAP_ONLY') return result(zero(), membership === 'group' ? STATUS.groupsOut : STATUS.rolesOut);
  throw new LdapMapperSyncError(`Writing ${membership}s from Cloakroom to LDAP is not supported`);
}

/**
 * Keycloak's syncMappers before a user sync: every group and role mapper brings its LDAP data in.
 * A mapper that cannot sync (bad configuration) is logged and skipped; an unreachable directory
 * stops the sync.
 */
export async function syncLdapMappersFromDirectory(db: Db, realm: Realm, config: LdapProviderConfig, logger: Logger): Promise<void> {
  for (const mapper of config.mappers) {
    if (mapper.providerId !== 'group-ldap-mapper' && mapper.providerId !== 'role-ldap-mapper') continue;
    try {
      const outcome = await syncLdapMapper(db, realm, config, mapper, 'fedToKeycloak', logger);
      if (outcome.added > 0 || outcome.updated > 0 || outcome.removed > 0 || outcome.failed > 0) {
        logger.info({ realm: realm.name, provider: config.name, mapper: mapper.name }, `Sync of federation mapper finished: ${outcome.status}`);
      }
    } catch (error) {
      if (!(error instanceof LdapMapperSyncError)) throw error;
      logger.warn({ realm: realm.name, provider: config.name, mapper: mapper.name, reason: error.message }, 'LDAP mapper sync skipped');
    }
  }
}
