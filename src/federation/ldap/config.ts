// An LDAP provider's typed configuration: Keycloak's `ldap` user-storage component and its mapper
// sub-components, with the bind credential opened and Keycloak's defaults (LDAPConfig, and the
// vendor defaults its admin console fills in) applied to missing keys.
import type { SecretBox } from '../../crypto/secret-box.ts';
import type { RealmContext } from '../../realms/context.ts';
import type { Db } from '../../store/db.ts';
import { openSecrets } from '../../store/sealed-config.ts';
import type { Component } from '../../store/schema.ts';
import type { LdapEditMode, LdapMapperConfig, LdapProviderConfig, LdapVendor } from './types.ts';

export const USER_STORAGE_PROVIDER_TYPE = 'org.keycloak.storage.UserStorageProvider';
export const LDAP_MAPPER_PROVIDER_TYPE = 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper';

/** Used when connectionTimeout / readTimeout are empty: Keycloak would wait forever, we never do. */
export const DEFAULT_CONNECTION_TIMEOUT_MS = 5000;
export const DEFAULT_READ_TIMEOUT_MS = 10000;
/** LDAPConstants.DEFAULT_BATCH_SIZE_FOR_SYNC. */
export const DEFAULT_BATCH_SIZE_FOR_SYNC = 1000;

type Config = Record<string, string[]>;

const VENDORS = new Set<LdapVendor>(['other', 'ad', 'rhds', 'tivoli', 'edirectory']);
const EDIT_MODES = new Set<LdapEditMode>(['READ_ONLY', 'WRITABLE', 'UNSYNCED']);

/** LDAPConstants.getUuidAttributeName. */
export function defaultUuidAttribute(vendor: LdapVendor): string {
  switch (vendor) {
    case 'ad': return 'objectGUID';
    case 'rhds': return 'nsuniqueid';
    case 'tivoli': return 'uniqueidentifier';
    case 'edirectory': return 'guid';
    default: return 'entryUUID';
  }
}

/** What Keycloak's admin console proposes per vendor (LDAPConfig itself has one default for all). */
export function defaultUserObjectClasses(vendor: LdapVendor): string {
  return vendor === 'ad' ? 'person, organizationalPerson, user' : 'inetOrgPerson, organizationalPerson';
}

function text(config: Config, key: string): string | undefined {
  const value = config[key]?.[0]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function bool(config: Config, key: string, fallback: boolean): boolean {
  const value = text(config, key);
  return value === undefined ? fallback : value.toLowerCase() === 'true';
}

function int(config: Config, key: string, fallback: number): number {
  const value = text(config, key);
  if (value === undefined || !/^-?\d+$/.test(value)) return fallback;
  return Number.parseInt(value, 10);
}

/** A timeout in milliseconds; empty, zero or negative (JNDI: wait forever) means our default. */
function timeout(config: Config, key: string, fallback: number): number {
  const value = int(config, key, fallback);
  return value > 0 ? value : fallback;
}

function mapperConfig(component: Component): LdapMapperConfig {
  const config: Record<string, string> = {};
  for (const [key, values] of Object.entries(component.config as Config)) {
    if (values[0] !== undefined) config[key] = values[0];
  }
  return { id: component.id, name: component.name, providerId: component.provider_id, config };
}

/** Keycloak's LDAPConfig over a stored component (secrets opened) and its mapper sub-components. */
export function ldapProviderConfig(component: Component, mappers: Component[], box: SecretBox): LdapProviderConfig {
  const config: Config = { ...(component.config as Config), ...openSecrets<string[]>(box, component.secrets_sealed) };
  const vendorText = text(config, 'vendor')?.toLowerCase() as LdapVendor | undefined;
  const vendor: LdapVendor = vendorText && VENDORS.has(vendorText) ? vendorText : 'other';
  const username = text(config, 'usernameLDAPAttribute') ?? (vendor === 'ad' ? 'cn' : 'uid');
  // LDAPConfig.getRdnLdapAttribute: the username attribute, except sAMAccountName (not an RDN).
  const rdn = text(config, 'rdnLDAPAttribute') ?? (username.toLowerCase() === 'samaccountname' ? 'cn' : username);
  const editModeText = text(config, 'editMode') as LdapEditMode | undefined;
  const objectClasses = (text(config, 'userObjectClasses') ?? defaultUserObjectClasses(vendor))
    .split(',').map((c) => c.trim()).filter((c) => c !== '');
  const customFilter = text(config, 'customUserSearchFilter') ?? '';
  const bindDn = text(config, 'bindDn');
  const bindCredential = config.bindCredential?.[0];
  return {
    id: component.id,
    realmId: component.realm_id,
    name: component.name,
    enabled: bool(config, 'enabled', true),
    priority: int(config, 'priority', 0),
    vendor,
    connectionUrls: (text(config, 'connectionUrl') ?? '').split(/\s+/).filter((u) => u !== ''),
    usersDn: text(config, 'usersDn') ?? '',
    authType: text(config, 'authType')?.toLowerCase() === 'none' ? 'none' : 'simple',
    bindDn,
    bindCredential: bindCredential === undefined || bindCredential === '' ? undefined : bindCredential,
    startTls: bool(config, 'startTls', false),
    connectionTimeout: timeout(config, 'connectionTimeout', DEFAULT_CONNECTION_TIMEOUT_MS),
    readTimeout: timeout(config, 'readTimeout', DEFAULT_READ_TIMEOUT_MS),
    editMode: editModeText && EDIT_MODES.has(editModeText) ? editModeText : 'READ_ONLY',
    usernameLDAPAttribute: username,
    rdnLDAPAttribute: rdn,
    uuidLDAPAttribute: text(config, 'uuidLDAPAttribute') ?? defaultUuidAttribute(vendor),
    userObjectClasses: objectClasses,
    customUserSearchFilter: customFilter,
    // LDAPConfig: subtree when unset (the admin console proposes one level, "1").
    searchScope: text(config, 'searchScope') === '1' ? 'one' : 'sub',
    // Unset means paged, as the admin console sets it: unpaged searches hit server size limits.
    pagination: bool(config, 'pagination', true),
    batchSizeForSync: Math.max(1, int(config, 'batchSizeForSync', DEFAULT_BATCH_SIZE_FOR_SYNC)),
    fullSyncPeriod: int(config, 'fullSyncPeriod', -1),
    changedSyncPeriod: int(config, 'changedSyncPeriod', -1),
    importEnabled: bool(config, 'importEnabled', true),
    trustEmail: bool(config, 'trustEmail', false),
    usePasswordModifyExtendedOp: bool(config, 'usePasswordModifyExtendedOp', false),
    tlsCaBundle: text(config, 'cloakroom.tlsCaBundle'),
    removeMissingUsers: bool(config, 'cloakroom.removeMissingUsers', true),
    mappers: mappers.filter((m) => m.parent_id === component.id && m.provider_type === LDAP_MAPPER_PROVIDER_TYPE).map(mapperConfig),
  };
}

/** A realm's enabled LDAP providers, by priority (then name), with their mappers. */
export async function loadLdapProviders(db: Db, box: SecretBox, realmId: string): Promise<LdapProviderConfig[]> {
  const providers = await db.selectFrom('components').selectAll().where('realm_id', '=', realmId)
    .where('provider_type', '=', USER_STORAGE_PROVIDER_TYPE).where('provider_id', '=', 'ldap').execute();
  if (providers.length === 0) return [];
  const mappers = await db.selectFrom('components').selectAll().where('realm_id', '=', realmId)
    .where('provider_type', '=', LDAP_MAPPER_PROVIDER_TYPE).where('parent_id', 'in', providers.map((p) => p.id)).execute();
  return providers
    .map((p) => ldapProviderConfig(p, mappers, box))
    .filter((p) => p.enabled)
    .sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/** The realm's LDAP providers, loaded once per realm context (component writes drop the context). */
export function realmLdapProviders(realm: RealmContext): Promise<LdapProviderConfig[]> {
  return realm.memo('ldap-providers', () => loadLdapProviders(realm.db, realm.box, realm.realm.id));
}
