// The shapes LDAP user federation passes around: a provider's typed configuration (Keycloak's
// `ldap` user-storage component and its mapper sub-components), an LDAP user entry, and what the
// mappers make of it for the local (imported) user.

export type LdapVendor = 'other' | 'ad' | 'rhds' | 'tivoli' | 'edirectory';
export type LdapEditMode = 'READ_ONLY' | 'WRITABLE' | 'UNSYNCED';

/** One mapper sub-component (providerType org.keycloak.storage.ldap.mappers.LDAPStorageMapper). */
export type LdapMapperConfig = {
  id: string;
  name: string;
  /** user-attribute-ldap-mapper, full-name-ldap-mapper, group-ldap-mapper, role-ldap-mapper, ... */
  providerId: string;
  /** Keycloak's config, first value of each key. */
  config: Record<string, string>;
};

/** A provider (component providerId "ldap"), secrets opened, Keycloak's defaults applied. */
export type LdapProviderConfig = {
  /** Component id: the users' federationLink. */
  id: string;
  realmId: string;
  name: string;
  enabled: boolean;
  priority: number;
  vendor: LdapVendor;
  /** One or more ldap:// or ldaps:// URLs (space-separated in Keycloak), tried in order. */
  connectionUrls: string[];
  usersDn: string;
  authType: 'simple' | 'none';
  bindDn: string | undefined;
  bindCredential: string | undefined;
  startTls: boolean;
  /** Milliseconds; Keycloak's connectionTimeout / readTimeout (default here 5000 / 10000). */
  connectionTimeout: number;
  readTimeout: number;
  editMode: LdapEditMode;
  usernameLDAPAttribute: string;
  rdnLDAPAttribute: string;
  /** entryUUID (OpenLDAP), objectGUID (AD), nsuniqueid (RHDS). */
  uuidLDAPAttribute: string;
  userObjectClasses: string[];
  /** '(...)' or ''. */
  customUserSearchFilter: string;
  searchScope: 'one' | 'sub';
  pagination: boolean;
  batchSizeForSync: number;
  /** Seconds; <= 0 = off. */
  fullSyncPeriod: number;
  changedSyncPeriod: number;
  importEnabled: boolean;
  trustEmail: boolean;
  usePasswordModifyExtendedOp: boolean;
  /** Beyond Keycloak (which uses its truststore): PEM CA bundle for ldaps/StartTLS, config key `cloakroom.tlsCaBundle`. */
  tlsCaBundle: string | undefined;
  /** What to do with local users whose LDAP entry is gone at a full sync: Keycloak removes them; `cloakroom.removeMissingUsers` "false" unlinks instead. */
  removeMissingUsers: boolean;
  mappers: LdapMapperConfig[];
};

/** An LDAP entry as read: attribute names lower-cased, values as strings (binary ones like objectGUID as Buffer). */
export type LdapEntry = { dn: string; attributes: Map<string, (string | Buffer)[]> };

/** What the mappers make of an entry for the local user. */
export type MappedLdapUser = {
  /** Stable id from uuidLDAPAttribute (objectGUID decoded to Keycloak's UUID form for AD): attribute LDAP_ID. */
  ldapId: string;
  dn: string;
  username: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  /** False for AD accounts disabled through userAccountControl (msad mapper). */
  enabled: boolean;
  emailVerified: boolean;
  /** User attributes besides LDAP_ID / LDAP_ENTRY_DN / createTimestamp / modifyTimestamp. */
  attributes: Record<string, string[]>;
  /** Group paths the user belongs to (group-ldap-mapper, hardcoded-ldap-group-mapper). */
  groupPaths: string[];
  /** Realm role names and `clientId.role` client roles (role-ldap-mapper, hardcoded-ldap-role-mapper). */
  roles: string[];
  /** Required actions to add (AD: password must change, from userAccountControl / pwdLastSet). */
  requiredActions: string[];
};

/** The directory cannot be reached (connect/read timeout, refused, TLS failure, bind of the service account refused). */
export class LdapUnavailableError extends Error {
  readonly providerId: string;
  constructor(providerId: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.providerId = providerId;
  }
}
