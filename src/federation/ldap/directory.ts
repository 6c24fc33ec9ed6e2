// Reading users from an LDAP provider's directory: the user search of a login (by username or
// e-mail), lookup by DN, and the paged search of a sync. Filters are built as ldapts filter objects
// (values go to the server as raw octets, never through filter syntax), so user input cannot
// change a filter's structure. Entries come back with lower-cased attribute names, binary
// attributes (objectGUID...) as Buffers.
import { AndFilter, EqualityFilter, type Entry, type Filter, FilterParser, GreaterThanEqualsFilter, InvalidDNSyntaxError, NoSuchObjectError } from 'ldapts';

import { withLdap } from './client.ts';
import { LdapUnavailableError, type LdapEntry, type LdapProviderConfig } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Filters

/**
 * RFC 4515 escaping of an assertion value, as Keycloak's EscapeStrategy.DEFAULT: `*`, `(`, `)`,
 * `\`, NUL, and every non-ASCII byte of the UTF-8 form as `\xx`. For string filters; the filter
 * objects below need no escaping.
 */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += byte >= 0x80 || byte === 0 || '*()\\'.includes(char) ? `\\${byte.toString(16).padStart(2, '0')}` : char;
  }
  return out;
}

/** Control characters (NUL included) never occur in a real username or address: such logins find nobody. */
export function hasControlCharacters(value: string): boolean {
  return /[\u0000-\u001f\u007f]/.test(value);
}

/** The provider's customUserSearchFilter, parsed; a broken one makes the provider unusable, saying so. */
export function customUserFilter(config: LdapProviderConfig): Filter | undefined {
  const text = config.customUserSearchFilter.trim();
  if (text === '') return undefined;
  try {
    // ldapts's parser forgives a missing closing paren; an admin's typo should not change the filter.
    let depth = 0;
    for (const char of text) {
      depth += char === '(' ? 1 : char === ')' ? -1 : 0;
      if (depth < 0) break;
    }
    if (depth !== 0 || !text.startsWith('(')) throw new Error('unbalanced parentheses');
    return FilterParser.parseString(text);
  } catch (error) {
    throw new LdapUnavailableError(config.id, `the customUserSearchFilter of LDAP provider "${config.name}" is invalid (${error instanceof Error ? error.message : String(error)}): ${text}`, { cause: error });
  }
}

/** (&(objectClass=...)...(custom)...extra): what every user entry of the provider must match. */
export function userFilter(config: LdapProviderConfig, ...extra: Filter[]): Filter {
  const clauses: Filter[] = [
    ...extra,
    ...config.userObjectClasses.map((objectClass) => new EqualityFilter({ attribute: 'objectClass', value: objectClass })),
  ];
  const custom = customUserFilter(config);
  if (custom) clauses.push(custom);
  return new AndFilter({ filters: clauses });
}

/** The LDAP attribute of the e-mail (the user-attribute mapper of `email`), `mail` without one. */
export function emailAttribute(config: LdapProviderConfig): string {
  const mapper = config.mappers.find((m) => m.providerId === 'user-attribute-ldap-mapper' && m.config['user.model.attribute'] === 'email');
  return mapper?.config['ldap.attribute'] || 'mail';
}

/** GeneralizedTime as directories compare it (AD wants a fraction). */
export function ldapTimestamp(date: Date, vendor: LdapProviderConfig['vendor']): string {
  const stamp = date.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return vendor === 'ad' ? `${stamp}.0Z` : `${stamp}Z`;
}

// ---------------------------------------------------------------------------------------------
// Entries

/** Attributes to read back as bytes: the binary uuid (AD objectGUID, eDirectory guid) and binary mapped attributes. */
export function binaryAttributes(config: LdapProviderConfig): string[] {
  const names = new Set<string>();
  const uuid = config.uuidLDAPAttribute;
  if (uuid.toLowerCase() === 'objectguid' || (config.vendor === 'edirectory' && uuid.toLowerCase() === 'guid')) names.add(uuid);
  if (config.vendor === 'ad') names.add('objectGUID').add('objectSid');
  for (const mapper of config.mappers) {
    if (mapper.config['is.binary.attribute'] === 'true' && mapper.config['ldap.attribute']) names.add(mapper.config['ldap.attribute']);
  }
  // ldapts matches these names case-sensitively against the server's spelling.
  return [...names].flatMap((name) => [name, name.toLowerCase()]);
}

/** What a search asks for: user attributes, plus the operational ones Keycloak reads. */
export function defaultAttributes(config: LdapProviderConfig): string[] {
  const names = ['*', config.uuidLDAPAttribute, 'createTimestamp', 'modifyTimestamp', 'memberOf'];
  if (config.vendor === 'ad') names.push('whenCreated', 'whenChanged');
  return [...new Set(names)];
}

export function toLdapEntry(raw: Entry): LdapEntry {
  const attributes = new Map<string, (string | Buffer)[]>();
  for (const [name, value] of Object.entries(raw)) {
    if (name === 'dn') continue;
    const values = (Array.isArray(value) ? value : [value]) as (string | Buffer)[];
    if (values.length === 0) continue; // ldapts lists requested attributes the entry lacks as []
    const key = name.toLowerCase();
    attributes.set(key, [...(attributes.get(key) ?? []), ...values]);
  }
  return { dn: raw.dn, attributes };
}

/** The first value of an attribute as text (Buffers decoded as UTF-8). */
export function firstValue(entry: LdapEntry, attribute: string): string | undefined {
  const value = entry.attributes.get(attribute.toLowerCase())?.[0];
  return value === undefined ? undefined : typeof value === 'string' ? value : value.toString('utf8');
}

/**
 * Keycloak's decodeObjectGUID: the GUID's first three fields are little-endian, so bytes
 * [3][2][1][0]-[5][4]-[7][6]-[8][9]-[10..15], lower-case hex.
 */
export function decodeObjectGuid(bytes: Buffer): string {
  const hex = (indexes: number[]): string => indexes.map((i) => bytes[i]!.toString(16).padStart(2, '0')).join('');
  return `${hex([3, 2, 1, 0])}-${hex([5, 4])}-${hex([7, 6])}-${hex([8, 9])}-${hex([10, 11, 12, 13, 14, 15])}`;
}

/** Keycloak's decodeGuid (eDirectory): the bytes in order, dashed. */
export function decodeEdirectoryGuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** The entry's stable id (the users' LDAP_ID): objectGUID in Keycloak's string form, else the attribute's text. */
export function ldapUuid(config: LdapProviderConfig, entry: LdapEntry): string | undefined {
  const attribute = config.uuidLDAPAttribute.toLowerCase();
  const value = entry.attributes.get(attribute)?.[0];
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (value.length === 16 && attribute === 'objectguid') return decodeObjectGuid(value);
  if (value.length === 16 && attribute === 'guid' && config.vendor === 'edirectory') return decodeEdirectoryGuid(value);
  return value.toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Searches

type ReadOptions = { attributes?: string[] };

function searchOptions(config: LdapProviderConfig, options: ReadOptions) {
  return {
    attributes: options.attributes ?? defaultAttributes(config),
    explicitBufferAttributes: binaryAttributes(config),
  };
}

/**
 * The user a login names: by the username attribute, or by the e-mail attribute when `byEmail`
 * and the login looks like an address. Nothing (and no query) for logins with control characters;
 * nothing either when the login matches several entries.
 */
export async function findLdapEntry(config: LdapProviderConfig, login: string, options: { byEmail: boolean } & ReadOptions): Promise<LdapEntry | undefined> {
  if (login.trim() === '' || hasControlCharacters(login)) return undefined;
  const attribute = options.byEmail && login.includes('@') ? emailAttribute(config) : config.usernameLDAPAttribute;
  const filter = userFilter(config, new EqualityFilter({ attribute, value: login }));
  const { searchEntries } = await withLdap(config, (client) => client.search(config.usersDn, {
    scope: config.searchScope, filter, sizeLimit: 2, ...searchOptions(config, options),
  }));
  return searchEntries.length === 1 ? toLdapEntry(searchEntries[0]!) : undefined;
}

/** The user entry at `dn` (it must still match the provider's user filter), if any. */
export async function findLdapEntryByDn(config: LdapProviderConfig, dn: string, options: ReadOptions = {}): Promise<LdapEntry | undefined> {
  if (dn.trim() === '' || hasControlCharacters(dn)) return undefined;
  const filter = userFilter(config);
  try {
    const { searchEntries } = await withLdap(config, (client) => client.search(dn, { scope: 'base', filter, ...searchOptions(config, options) }));
    return searchEntries[0] ? toLdapEntry(searchEntries[0]) : undefined;
  } catch (error) {
    if (error instanceof NoSuchObjectError || error instanceof InvalidDNSyntaxError) return undefined;
    throw error;
  }
}

/**
 * Every user entry of the provider (or those changed since `changedSince`: modifyTimestamp, AD
 * whenChanged), handed to `onPage` a page at a time. With pagination on, the directory pages
 * (Simple Paged Results, one read timeout per page); without it, one search split into pages here.
 */
export async function searchLdapEntries(
  config: LdapProviderConfig,
  options: { changedSince?: Date; pageSize: number } & ReadOptions,
  onPage: (entries: LdapEntry[]) => Promise<void>,
): Promise<void> {
  const extra = options.changedSince
    ? [new GreaterThanEqualsFilter({ attribute: config.vendor === 'ad' ? 'whenChanged' : 'modifyTimestamp', value: ldapTimestamp(options.changedSince, config.vendor) })]
    : [];
  const filter = userFilter(config, ...extra);
  const pageSize = Math.max(1, options.pageSize);
  await withLdap(config, async (client) => {
    const search = { scope: config.searchScope, filter, ...searchOptions(config, options) };
    if (config.pagination) {
      for await (const page of client.searchPaginated(config.usersDn, { ...search, paged: { pageSize } })) {
        if (page.searchEntries.length > 0) await onPage(page.searchEntries.map(toLdapEntry));
      }
      return;
    }
    const { searchEntries } = await client.search(config.usersDn, search);
    for (let at = 0; at < searchEntries.length; at += pageSize) {
      await onPage(searchEntries.slice(at, at + pageSize).map(toLdapEntry));
    }
  });
}
