// Keycloak's LDAP storage mappers (the `ldap` provider's sub-components) applied to an LDAP user
// entry: what the imported local user gets (username, names, e-mail, attributes, enabled,
// required actions) and which groups and roles it holds. Keycloak's semantics per mapper:
// user-attribute-ldap-mapper (UserModel properties or attributes; binary ones are never stored),
// full-name-ldap-mapper (split at the last space), hardcoded-attribute-mapper,
// msad-user-account-control-mapper (userAccountControl ACCOUNTDISABLE, pwdLastSet), and the
// membership mappers group-ldap-mapper / role-ldap-mapper (LDAP searches, one pooled connection
// per user) and hardcoded-ldap-group-mapper / hardcoded-ldap-role-mapper. Keycloak keeps
// READ_ONLY / LDAP_ONLY memberships virtual (read from LDAP on every request); Cloakroom stores
// them on the local user at each import and login instead (upsertFederatedUser), so tokens need
// no LDAP round trip.
import { createHash } from 'node:crypto';

import { AndFilter, type Client, type Entry, EqualityFilter, ExtensibleFilter, type Filter, FilterParser, OrFilter, ResultCodeError } from 'ldapts';

import { withLdap } from './client.ts';
import { defaultAttributes, firstValue, ldapUuid } from './directory.ts';
import { ldapLog } from './log.ts';
import type { LdapEntry, LdapMapperConfig, LdapProviderConfig, MappedLdapUser } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Types: MappedLdapUser plus what upsertFederatedUser needs to apply it exactly

export type GroupMapperMode = 'READ_ONLY' | 'LDAP_ONLY' | 'IMPORT';

/** The groups one group-ldap-mapper gives the user. */
export type GroupMapperMemberships = {
  kind: 'group-mapper';
  mapperId: string;
  mapperName: string;
  mode: GroupMapperMode;
  /** Keycloak's groups.path as segments ([] = top level). */
  parent: string[];
  /** Each group as path segments below the realm (parent included): the user's direct LDAP groups. */
  groups: string[][];
  /** LDAP_ONLY with a top-level path: Keycloak shows only LDAP's groups, so other memberships go. */
  exclusive: boolean;
  /**
   * Which of these local group names are this mapper's groups in LDAP (lower-cased). A local
   * membership under `parent` that LDAP does not list is dropped only when its group is an LDAP
   * group: memberships an administrator gave locally stay, as in Keycloak's READ_ONLY mode.
   */
  ldapNames(names: string[]): Promise<Set<string>>;
};

/** The roles one role-ldap-mapper gives the user. */
export type RoleMapperMemberships = {
  kind: 'role-mapper';
  mapperId: string;
  mapperName: string;
  mode: GroupMapperMode;
  /** null: realm roles (use.realm.roles.mapping); else the clientId whose client roles are mapped. */
  clientId: string | null;
  /** Role names in that container; missing roles are created, as Keycloak does. */
  roles: string[];
  /** LDAP_ONLY: Keycloak takes the container's roles from LDAP only. */
  exclusive: boolean;
  ldapNames(names: string[]): Promise<Set<string>>;
};

export type HardcodedMembership =
  | { kind: 'hardcoded-group'; mapperName: string; path: string }
  | { kind: 'hardcoded-role'; mapperName: string; role: string };

export type LdapMembership = GroupMapperMemberships | RoleMapperMemberships | HardcodedMembership;

/** Which user properties some mapper set (the others keep their local value on a refresh). */
export type MappedProperties = { email: boolean; firstName: boolean; lastName: boolean; emailVerified: boolean; enabled: boolean };

/** MappedLdapUser with the detail upsertFederatedUser uses (plain MappedLdapUser values work too). */
export type LdapMappedUser = MappedLdapUser & {
  memberships: LdapMembership[];
  mapped: MappedProperties;
};

/** The entry cannot become a user: no username or no uuid (Keycloak's ModelException). */
export class LdapMappingError extends Error {}

// ---------------------------------------------------------------------------------------------
// Entry helpers

const MEMBERSHIP_PROVIDERS = new Set(['group-ldap-mapper', 'role-ldap-mapper']);
const ATTRIBUTE_PROVIDERS = new Set(['user-attribute-ldap-mapper', 'certificate-ldap-mapper']);

/** Text values of an attribute (Buffers decoded as UTF-8). */
function textValues(entry: LdapEntry, attribute: string): string[] {
  return (entry.attributes.get(attribute.toLowerCase()) ?? []).map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
}

const bool = (config: Record<string, string>, key: string): boolean => config[key]?.trim().toLowerCase() === 'true';

/** Keycloak's getConfigValues: comma-separated, trimmed, empty dropped. */
export const list = (value: string): string[] => value.split(',').map((v) => v.trim()).filter((v) => v !== '');

/** A DN compared loosely: case and spaces around separators do not matter. */
export function normalizeDn(dn: string): string {
  return dn.trim().replace(/\s*([,=+])\s*/g, '$1').toLowerCase();
}

/** Whether `dn` is (strictly) below `base`. */
function isDescendant(dn: string, base: string): boolean {
  const d = normalizeDn(dn);
  const b = normalizeDn(base);
  return d.length > b.length && d.endsWith(`,${b}`);
}

/** The value of the first RDN when its attribute is `attribute` (LDAPDn.getFirstRdn().getAttrValue). */
function firstRdnValue(dn: string, attribute: string): string | undefined {
  // The first RDN ends at the first unescaped comma.
  const match = /^((?:[^,\\]|\\.)*)/.exec(dn.trim());
  const rdn = match?.[1] ?? '';
  for (const part of rdn.split(/(?<!\\)\+/)) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    if (part.slice(0, eq).trim().toLowerCase() !== attribute.toLowerCase()) continue;
    return unescapeDnValue(part.slice(eq + 1).trim());
  }
  return undefined;
}

/** RFC 4514 unescaping: `\,` and `\2c` forms. */
function unescapeDnValue(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const char = value[i]!;
    if (char === '\\' && i + 1 < value.length) {
      const hex = value.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(Number.parseInt(hex, 16));
        i += 2;
        continue;
      }
      bytes.push(...Buffer.from(value[i + 1]!, 'utf8'));
      i += 1;
      continue;
    }
    bytes.push(...Buffer.from(char, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** An attribute of a raw ldapts entry, whatever the server's spelling of its name. */
export function rawValues(entry: Entry, attribute: string): string[] {
  const wanted = attribute.toLowerCase();
  const out: string[] = [];
  for (const [name, value] of Object.entries(entry)) {
    if (name === 'dn' || name.toLowerCase() !== wanted) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push(typeof v === 'string' ? v : v.toString('utf8'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Membership mapper configuration (CommonLDAPGroupMapperConfig, GroupMapperConfig, RoleMapperConfig)

type Strategy = 'member' | 'memberOf' | 'recursive';

type MembershipConfig = {
  mapper: LdapMapperConfig;
  kind: 'group-mapper' | 'role-mapper';
  baseDn: string;
  nameAttribute: string;
  objectClasses: string[];
  customFilter: string;
  membershipAttribute: string;
  membershipType: 'DN' | 'UID';
  membershipUserAttribute: string;
  memberOfAttribute: string;
  strategy: Strategy;
  mode: GroupMapperMode;
  // group-ldap-mapper
  parent: string[];
  preserveInheritance: boolean;
  // role-ldap-mapper
  clientId: string | null;
};

function strategyOf(value: string | undefined): Strategy {
  if (value === 'GET_GROUPS_FROM_USER_MEMBEROF_ATTRIBUTE' || value === 'GET_ROLES_FROM_USER_MEMBEROF_ATTRIBUTE') return 'memberOf';
  if (value === 'LOAD_GROUPS_BY_MEMBER_ATTRIBUTE_RECURSIVELY' || value === 'LOAD_ROLES_BY_MEMBER_ATTRIBUTE_RECURSIVELY') return 'recursive';
  return 'member';
}

/** Group path segments of Keycloak's groups.path ('/' or empty = top level). */
export function groupPathSegments(path: string): string[] {
  return path.split('/').map((s) => s.trim()).filter((s) => s !== '');
}

/** The membership mapper's settings, or undefined (with the reason) when it cannot work. */
function membershipConfig(config: LdapProviderConfig, mapper: LdapMapperConfig): MembershipConfig | string {
  const c = mapper.config;
  const group = mapper.providerId === 'group-ldap-mapper';
  const baseDn = (group ? c['groups.dn'] : c['roles.dn'])?.trim();
  if (!baseDn) return group ? 'Groups DN is null! Check your configuration' : 'Roles DN is null! Check your configuration';
  const modeText = c.mode?.trim().toUpperCase();
  // Keycloak refuses a mapper without a mode; READ_ONLY is what its admin console proposes.
  const mode: GroupMapperMode = modeText === 'LDAP_ONLY' || modeText === 'IMPORT' ? modeText : 'READ_ONLY';
  const useRealmRoles = c['use.realm.roles.mapping'] === undefined || bool(c, 'use.realm.roles.mapping');
  const clientId = group || useRealmRoles ? null : (c['client.id']?.trim() || undefined);
  if (clientId === undefined) return 'Using client roles mapping is requested, but parameter client.id not found!';
  const customFilter = (group ? c['groups.ldap.filter'] : c['roles.ldap.filter'])?.trim() ?? '';
  if (customFilter !== '') {
    try {
      FilterParser.parseString(customFilter);
    } catch (error) {
      return `invalid LDAP filter ${customFilter} (${error instanceof Error ? error.message : String(error)})`;
    }
  }
  const ad = config.vendor === 'ad';
  return {
    mapper,
    kind: group ? 'group-mapper' : 'role-mapper',
    baseDn,
    nameAttribute: (group ? c['group.name.ldap.attribute'] : c['role.name.ldap.attribute'])?.trim() || 'cn',
    objectClasses: list((group ? c['group.object.classes'] : c['role.object.classes']) ?? (ad ? 'group' : 'groupOfNames')),
    customFilter,
    membershipAttribute: c['membership.ldap.attribute']?.trim() || 'member',
    membershipType: c['membership.attribute.type']?.trim().toUpperCase() === 'UID' ? 'UID' : 'DN',
    membershipUserAttribute: c['membership.user.ldap.attribute']?.trim() || config.usernameLDAPAttribute,
    memberOfAttribute: c['memberof.ldap.attribute']?.trim() || 'memberOf',
    strategy: strategyOf(c['user.roles.retrieve.strategy']?.trim()),
    mode,
    parent: group ? groupPathSegments(c['groups.path'] ?? '/') : [],
    // Keycloak's parseBooleanParameter: only "true" is true (the console proposes true).
    preserveInheritance: group && bool(c, 'preserve.group.inheritance'),
    clientId,
  };
}

/** (&(objectClass=...)(custom)...extra): the mapper's groups (createGroupQuery / createRoleQuery). */
function groupFilter(m: MembershipConfig, ...extra: Filter[]): Filter {
  const clauses: Filter[] = m.objectClasses.map((oc) => new EqualityFilter({ attribute: 'objectClass', value: oc }));
  if (m.customFilter !== '') clauses.push(FilterParser.parseString(m.customFilter));
  clauses.push(...extra);
  return new AndFilter({ filters: clauses });
}

/** LDAPUtils.getMemberValueOfChildObject: the user's DN, or its membership.user.ldap.attribute value. */
function memberValue(m: MembershipConfig, entry: LdapEntry): string | undefined {
  return m.membershipType === 'DN' ? entry.dn : firstValue(entry, m.membershipUserAttribute);
}

type LdapGroup = { dn: string; name: string };

function toGroup(m: MembershipConfig, raw: Entry): LdapGroup | undefined {
  const name = rawValues(raw, m.nameAttribute)[0];
  return name === undefined || name === '' ? undefined : { dn: raw.dn, name };
}

/** UserRolesRetrieveStrategy.getLDAPRoleMappings: the user's direct LDAP groups (or roles) of this mapper. */
async function userGroups(client: Client, config: LdapProviderConfig, m: MembershipConfig, entry: LdapEntry): Promise<LdapGroup[]> {
  const search = async (filter: Filter): Promise<LdapGroup[]> => {
    const { searchEntries } = await client.search(m.baseDn, { scope: config.searchScope, filter, attributes: [m.nameAttribute] });
    return searchEntries.map((e) => toGroup(m, e)).filter((g): g is LdapGroup => g !== undefined);
  };
  if (m.strategy === 'memberOf') {
    // Keycloak: memberOf values below the groups DN, fetched by their first RDN (so custom filters
    // apply), then only those whose full DN the user is really memberOf.
    const memberOf = textValues(entry, m.memberOfAttribute).filter((dn) => isDescendant(dn, m.baseDn));
    const names = [...new Set(memberOf.map((dn) => firstRdnValue(dn, m.nameAttribute)).filter((n): n is string => n !== undefined))];
    if (names.length === 0) return [];
    const wanted = new Set(memberOf.map(normalizeDn));
    const found = await search(groupFilter(m, new OrFilter({ filters: names.map((value) => new EqualityFilter({ attribute: m.nameAttribute, value })) })));
    return found.filter((g) => wanted.has(normalizeDn(g.dn)));
  }
  const value = memberValue(m, entry);
  if (value === undefined || value === '') return [];
  const membership = m.strategy === 'recursive'
    // AD's LDAP_MATCHING_RULE_IN_CHAIN: nested memberships in one query.
    ? new ExtensibleFilter({ matchType: m.membershipAttribute, rule: '1.2.840.113556.1.4.1941', value })
    : new EqualityFilter({ attribute: m.membershipAttribute, value });
  return search(groupFilter(m, membership));
}

// ---------------------------------------------------------------------------------------------
// Caches: the group tree (preserve.group.inheritance) and "is this an LDAP group" answers

const CACHE_TTL_MS = 60_000;
const CACHE_MAX = 10_000;

function mapperKey(config: LdapProviderConfig, m: MembershipConfig): string {
  return createHash('sha256').update(JSON.stringify([config.id, config.connectionUrls, m])).digest('base64url');
}

type GroupTree = { at: number; parentOf: Map<string, string>; nameOf: Map<string, string> };
const trees = new Map<string, Promise<GroupTree>>();

/**
 * The mapper's LDAP group tree (GroupTreeResolver): each group's parent is the group listing it
 * as a member. Loaded in one search and kept a minute, as every user's path needs it.
 */
function groupTree(client: Client, config: LdapProviderConfig, m: MembershipConfig): Promise<GroupTree> {
  const key = mapperKey(config, m);
  const cached = trees.get(key);
  if (cached) return cached;
  const load = (async (): Promise<GroupTree> => {
    const { searchEntries } = await client.search(m.baseDn, {
      scope: config.searchScope, filter: groupFilter(m), attributes: [m.nameAttribute, m.membershipAttribute],
    });
    const nameOf = new Map<string, string>();
    for (const raw of searchEntries) {
      const group = toGroup(m, raw);
      if (group) nameOf.set(normalizeDn(group.dn), group.name);
    }
    const parentOf = new Map<string, string>();
    for (const raw of [...searchEntries].sort((a, b) => a.dn.localeCompare(b.dn))) {
      for (const member of rawValues(raw, m.membershipAttribute)) {
        const child = normalizeDn(member);
        if (!nameOf.has(child) || child === normalizeDn(raw.dn)) continue;
        // Keycloak refuses a group with two parents ("detected to have multiple parents"); the first one wins here.
        if (!parentOf.has(child)) parentOf.set(child, normalizeDn(raw.dn));
      }
    }
    return { at: Date.now(), parentOf, nameOf };
  })();
  trees.set(key, load);
  load.catch(() => trees.delete(key));
  setTimeout(() => { if (trees.get(key) === load) trees.delete(key); }, CACHE_TTL_MS).unref();
  return load;
}

/** The group's path segments below the mapper's groups path (ancestors first). */
function treePath(tree: GroupTree, group: LdapGroup): string[] {
  const segments = [group.name];
  const seen = new Set<string>([normalizeDn(group.dn)]);
  let current = tree.parentOf.get(normalizeDn(group.dn));
  while (current !== undefined && !seen.has(current)) {
    seen.add(current);
    segments.unshift(tree.nameOf.get(current)!);
    current = tree.parentOf.get(current);
  }
  return segments;
}

type NameAnswer = { at: number; exists: boolean };
const nameAnswers = new Map<string, NameAnswer>();

/** Which of `names` are groups (or roles) of the mapper in LDAP, lower-cased; answers kept a minute. */
async function existingLdapNames(config: LdapProviderConfig, m: MembershipConfig, names: string[]): Promise<Set<string>> {
  const key = mapperKey(config, m);
  const now = Date.now();
  const out = new Set<string>();
  const unknown: string[] = [];
  for (const name of new Set(names.map((n) => n.toLowerCase()))) {
    const answer = nameAnswers.get(`${key}\n${name}`);
    if (answer && now - answer.at < CACHE_TTL_MS) {
      if (answer.exists) out.add(name);
    } else {
      unknown.push(name);
    }
  }
  if (unknown.length === 0) return out;
  const found = new Set<string>();
  await withLdap(config, async (client) => {
    for (let at = 0; at < unknown.length; at += 50) {
      const batch = unknown.slice(at, at + 50);
      const { searchEntries } = await client.search(m.baseDn, {
        scope: config.searchScope,
        filter: groupFilter(m, new OrFilter({ filters: batch.map((value) => new EqualityFilter({ attribute: m.nameAttribute, value })) })),
        attributes: [m.nameAttribute],
      });
      for (const raw of searchEntries) for (const name of rawValues(raw, m.nameAttribute)) found.add(name.toLowerCase());
    }
  });
  if (nameAnswers.size > CACHE_MAX) nameAnswers.clear();
  for (const name of unknown) {
    nameAnswers.set(`${key}\n${name}`, { at: now, exists: found.has(name) });
    if (found.has(name)) out.add(name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Attributes to read

/** What a user search must return for the provider's mappers (directory.ts's defaults plus mapper attributes). */
export function ldapAttributesToRead(config: LdapProviderConfig): string[] {
  const names = [...defaultAttributes(config), config.usernameLDAPAttribute, config.rdnLDAPAttribute, config.uuidLDAPAttribute];
  for (const mapper of config.mappers) {
    const c = mapper.config;
    if (ATTRIBUTE_PROVIDERS.has(mapper.providerId) && c['ldap.attribute']) names.push(c['ldap.attribute']);
    if (mapper.providerId === 'full-name-ldap-mapper' && !bool(c, 'write.only')) names.push(c['ldap.full.name.attribute'] || 'cn');
    if (mapper.providerId === 'msad-user-account-control-mapper') names.push('userAccountControl', 'pwdLastSet');
    if (MEMBERSHIP_PROVIDERS.has(mapper.providerId)) {
      const m = membershipConfig(config, mapper);
      if (typeof m !== 'string') names.push(m.strategy === 'memberOf' ? m.memberOfAttribute : m.membershipUserAttribute);
    }
  }
  const seen = new Set<string>();
  return names.filter((n) => n !== '' && !seen.has(n.toLowerCase()) && seen.add(n.toLowerCase()));
}

// ---------------------------------------------------------------------------------------------
// Mapping

/** userAccountControl flags (MSAD UserAccountControl). */
const ACCOUNTDISABLE = 0x0002;
const PASSWORD_EXPIRED = 0x800000;

/** Keycloak's LDAPMappersComparator.sortDesc: other mappers, then attribute mappers, the username mapper last. */
function importOrder(config: LdapProviderConfig, mappers: LdapMapperConfig[]): LdapMapperConfig[] {
  const rank = (m: LdapMapperConfig): number => {
    if (m.providerId !== 'user-attribute-ldap-mapper') return 0;
    if (m.config['user.model.attribute']?.toLowerCase() !== 'username') return 1;
    return m.config['ldap.attribute']?.toLowerCase() === config.usernameLDAPAttribute.toLowerCase() ? 3 : 2;
  };
  return [...mappers].sort((a, b) => rank(a) - rank(b) || b.id.localeCompare(a.id));
}

/** UserModel properties a user-attribute mapper can set (LDAPUtils.getUserModelProperties), by lower-cased name. */
const PROPERTIES: Record<string, 'username' | 'email' | 'firstName' | 'lastName' | 'enabled' | 'emailVerified'> = {
  username: 'username', email: 'email', firstname: 'firstName', lastname: 'lastName', enabled: 'enabled', emailverified: 'emailVerified',
};

/** Keycloak's Boolean.valueOf. */
const javaBoolean = (value: string): boolean => value.trim().toLowerCase() === 'true';

/**
 * What the mappers make of an LDAP entry (Keycloak's onImportUserFromLDAP of every mapper). The
 * membership mappers search the directory (one pooled connection for all of them); throws
 * LdapUnavailableError when it cannot be reached and LdapMappingError for an entry without a
 * username or uuid.
 */
export async function mapLdapUser(config: LdapProviderConfig, entry: LdapEntry): Promise<LdapMappedUser> {
  const usernameValue = firstValue(entry, config.usernameLDAPAttribute);
  if (!usernameValue) {
    throw new LdapMappingError(`User returned from LDAP has null username! Check configuration of your LDAP mappings. Mapped username LDAP attribute: ${config.usernameLDAPAttribute}, user DN: ${entry.dn}`);
  }
  const ldapId = ldapUuid(config, entry);
  if (!ldapId) {
    throw new LdapMappingError(`User returned from LDAP has null uuid! Check configuration of your LDAP settings. UUID Attribute must be unique among your LDAP records and available on all the LDAP user records. Mapped UUID LDAP attribute: ${config.uuidLDAPAttribute}, user DN: ${entry.dn}`);
  }

  const user: LdapMappedUser = {
    ldapId, dn: entry.dn, username: usernameValue.toLowerCase(), email: null, firstName: null, lastName: null,
    // importUserFromLDAP sets enabled before the mappers run.
    enabled: true, emailVerified: false, attributes: {}, groupPaths: [], roles: [], requiredActions: [],
    memberships: [], mapped: { email: false, firstName: false, lastName: false, emailVerified: false, enabled: false },
  };
  const setProperty = (property: (typeof PROPERTIES)[string], value: string | undefined): void => {
    switch (property) {
      case 'username':
        if (value) user.username = value.toLowerCase();
        return;
      case 'email':
        user.email = value ? value.toLowerCase() : null;
        user.mapped.email = true;
        return;
      case 'firstName':
      case 'lastName':
        user[property] = value ?? null;
        user.mapped[property] = true;
        return;
      case 'enabled':
      case 'emailVerified':
        user[property] = value !== undefined && javaBoolean(value);
        user.mapped[property] = true;
        return;
    }
  };

  const membershipMappers: MembershipConfig[] = [];
  for (const mapper of importOrder(config, config.mappers)) {
    const c = mapper.config;
    switch (mapper.providerId) {
      case 'user-attribute-ldap-mapper':
      case 'certificate-ldap-mapper': {
        const model = c['user.model.attribute']?.trim();
        const ldapAttribute = c['ldap.attribute']?.trim();
        // Keycloak never stores binary attributes in its database.
        if (!model || !ldapAttribute || bool(c, 'is.binary.attribute')) break;
        const property = PROPERTIES[model.toLowerCase()];
        if (property) setProperty(property, textValues(entry, ldapAttribute)[0]);
        else user.attributes[model] = [...new Set(textValues(entry, ldapAttribute))];
        break;
      }
      case 'full-name-ldap-mapper': {
        if (bool(c, 'write.only')) break;
        const fullName = textValues(entry, c['ldap.full.name.attribute'] || 'cn')[0]?.trim();
        if (!fullName) break;
        const space = fullName.lastIndexOf(' ');
        if (space === -1) {
          setProperty('lastName', fullName);
        } else {
          setProperty('firstName', fullName.slice(0, space));
          setProperty('lastName', fullName.slice(space + 1));
        }
        break;
      }
      case 'hardcoded-attribute-mapper': {
        const model = c['user.model.attribute']?.trim();
        const value = c['attribute.value'];
        if (!model || value === undefined) break;
        const property = PROPERTIES[model.toLowerCase()];
        if (property && property !== 'username' && property !== 'email') setProperty(property, value);
        else if (!property) user.attributes[model] = [value];
        break;
      }
      case 'msad-user-account-control-mapper': {
        const control = Number.parseInt(firstValue(entry, 'userAccountControl') ?? '0', 10) || 0;
        user.enabled = (control & ACCOUNTDISABLE) === 0;
        user.mapped.enabled = true;
        // MSADUserModelDelegate.getRequiredActionsStream: only a WRITABLE provider can take the new password.
        if (config.editMode === 'WRITABLE') {
          const pwdLastSet = Number.parseInt(firstValue(entry, 'pwdLastSet') ?? '0', 10) || 0;
          if (pwdLastSet === 0 || (control & PASSWORD_EXPIRED) !== 0) user.requiredActions.push('UPDATE_PASSWORD');
        }
        break;
      }
      case 'hardcoded-ldap-group-mapper':
        if (c.group?.trim()) user.memberships.push({ kind: 'hardcoded-group', mapperName: mapper.name, path: c.group.trim() });
        break;
      case 'hardcoded-ldap-role-mapper':
        if (c.role?.trim()) user.memberships.push({ kind: 'hardcoded-role', mapperName: mapper.name, role: c.role.trim() });
        break;
      case 'group-ldap-mapper':
      case 'role-ldap-mapper': {
        const m = membershipConfig(config, mapper);
        if (typeof m === 'string') ldapLog().warn({ provider: config.name, mapper: mapper.name, reason: m }, 'LDAP mapper skipped');
        else membershipMappers.push(m);
        break;
      }
      default:
        // hardcoded-ldap-attribute-mapper (registration only), kerberos-principal-attribute-mapper
        // (without Kerberos it changes nothing), msad-lds-user-account-control-mapper: no import effect here.
        break;
    }
  }
  // Keycloak's importUserFromLDAP: trusted e-mail addresses are verified.
  if (config.trustEmail) {
    user.emailVerified = true;
    user.mapped.emailVerified = true;
  }

  if (membershipMappers.length > 0) {
    const found = await withLdap(config, async (client) => {
      const out: { m: MembershipConfig; groups: LdapGroup[]; tree?: GroupTree }[] = [];
      for (const m of membershipMappers) {
        try {
          const groups = await userGroups(client, config, m, entry);
          const tree = m.preserveInheritance && groups.length > 0 ? await groupTree(client, config, m) : undefined;
          out.push({ m, groups, ...(tree ? { tree } : {}) });
        } catch (error) {
          // The directory answered with an error (no such groups DN, no access...): this mapper
          // neither adds nor removes anything this time. Connection failures still throw.
          if (!(error instanceof ResultCodeError)) throw error;
          ldapLog().warn({ provider: config.name, mapper: m.mapper.name, err: error.message }, 'LDAP membership search failed; mapper skipped');
        }
      }
      return out;
    });
    for (const { m, groups, tree } of found) {
      const ldapNames = (names: string[]): Promise<Set<string>> => existingLdapNames(config, m, names);
      if (m.kind === 'group-mapper') {
        const paths = groups.map((g) => [...m.parent, ...(tree ? treePath(tree, g) : [g.name])]);
        user.memberships.push({
          kind: 'group-mapper', mapperId: m.mapper.id, mapperName: m.mapper.name, mode: m.mode, parent: m.parent, groups: paths,
          exclusive: m.mode === 'LDAP_ONLY' && m.parent.length === 0, ldapNames,
        });
        user.groupPaths.push(...paths.map((p) => `/${p.join('/')}`));
      } else {
        const roles = [...new Set(groups.map((g) => g.name))];
        user.memberships.push({
          kind: 'role-mapper', mapperId: m.mapper.id, mapperName: m.mapper.name, mode: m.mode, clientId: m.clientId, roles,
          exclusive: m.mode === 'LDAP_ONLY', ldapNames,
        });
        user.roles.push(...roles.map((r) => (m.clientId === null ? r : `${m.clientId}.${r}`)));
      }
    }
  }
  for (const membership of user.memberships) {
    if (membership.kind === 'hardcoded-group') user.groupPaths.push(membership.path);
    if (membership.kind === 'hardcoded-role') user.roles.push(membership.role);
  }
  user.groupPaths = [...new Set(user.groupPaths)];
  user.roles = [...new Set(user.roles)];
  user.requiredActions = [...new Set(user.requiredActions)];
  return user;
}

// ---------------------------------------------------------------------------------------------
// Bind failures (MSADUserAccountControlStorageMapper.onAuthenticationFailure)

/** The AD sub-error of a failed bind ("... AcceptSecurityContext error, data 773, v..."), lower-case hex. */
export function adBindErrorCode(diagnostic: string): string | undefined {
  return /AcceptSecurityContext error, data ([0-9a-f]+), v/i.exec(diagnostic)?.[1]?.toLowerCase();
}

/**
 * What the msad mapper makes of a refused bind, as Keycloak's processAuthErrorCode (WRITABLE
 * providers only): 532 (password expired) and 773 (must change password) let the user in with
 * UPDATE_PASSWORD required; 533 (account disabled) lets the password count as right and disables
 * the user. undefined: an ordinary wrong password.
 */
export function msadBindOutcome(config: LdapProviderConfig, diagnostic: string): 'update-password' | 'disabled' | undefined {
  if (config.editMode !== 'WRITABLE' || !config.mappers.some((m) => m.providerId === 'msad-user-account-control-mapper')) return undefined;
  const code = adBindErrorCode(diagnostic);
  if (code === '532' || code === '773') return 'update-password';
  if (code === '533') return 'disabled';
  return undefined;
}
