// The LDAP mappers' import semantics that need no directory (no membership mappers: no search),
// and the msad mapper's reading of AD bind errors, which slapd cannot produce.
import { describe, expect, it } from 'vitest';

import { adBindErrorCode, ldapAttributesToRead, LdapMappingError, mapLdapUser, msadBindOutcome } from '../../src/federation/ldap/mappers.ts';
import type { LdapEntry, LdapMapperConfig, LdapProviderConfig } from '../../src/federation/ldap/types.ts';

let ids = 0;
const mapper = (providerId: string, config: Record<string, string>, name = providerId): LdapMapperConfig => ({
  id: `00000000-0000-4000-8000-${String(++ids).padStart(12, '0')}`, name, providerId, config,
});
const attribute = (model: string, ldap: string, extra: Record<string, string> = {}): LdapMapperConfig =>
  mapper('user-attribute-ldap-mapper', { 'user.model.attribute': model, 'ldap.attribute': ldap, ...extra }, model);

function provider(mappers: LdapMapperConfig[], overrides: Partial<LdapProviderConfig> = {}): LdapProviderConfig {
  return {
    id: 'p1', realmId: 'r1', name: 'ldap', enabled: true, priority: 0, vendor: 'other', connectionUrls: ['ldap://127.0.0.1:1'],
    usersDn: 'ou=people,dc=example,dc=org', authType: 'simple', bindDn: 'cn=admin', bindCredential: 'x', startTls: false,
    connectionTimeout: 1000, readTimeout: 1000, editMode: 'READ_ONLY', usernameLDAPAttribute: 'uid', rdnLDAPAttribute: 'uid',
    uuidLDAPAttribute: 'entryUUID', userObjectClasses: ['inetOrgPerson'], customUserSearchFilter: '', searchScope: 'one',
    pagination: true, batchSizeForSync: 1000, fullSyncPeriod: -1, changedSyncPeriod: -1, importEnabled: true, trustEmail: false,
    usePasswordModifyExtendedOp: false, tlsCaBundle: undefined, removeMissingUsers: true, mappers, ...overrides,
  };
}

const entry = (attributes: Record<string, (string | Buffer)[]>, dn = 'uid=jo,ou=people,dc=example,dc=org'): LdapEntry =>
  ({ dn, attributes: new Map(Object.entries(attributes).map(([k, v]) => [k.toLowerCase(), v])) });

describe('mapLdapUser', () => {
  const defaults = [
    attribute('username', 'uid'), attribute('firstName', 'cn'), attribute('lastName', 'sn'), attribute('email', 'mail'),
    attribute('createTimestamp', 'createTimestamp'), attribute('modifyTimestamp', 'modifyTimestamp'),
  ];

  it('maps the default mappers: lower-cased username and e-mail, attributes, absent ones emptied', async () => {
    const user = await mapLdapUser(provider(defaults), entry({
      uid: ['Jo'], cn: ['Jo'], sn: ['March'], mail: ['Jo.March@Example.ORG'], entryUUID: ['1b4e28ba-2fa1-11d2-883f-0016d3cca427'],
      createTimestamp: ['20240101000000Z'],
    }));
    expect(user).toMatchObject({
      ldapId: '1b4e28ba-2fa1-11d2-883f-0016d3cca427', dn: 'uid=jo,ou=people,dc=example,dc=org', username: 'jo',
      firstName: 'Jo', lastName: 'March', email: 'jo.march@example.org', enabled: true, emailVerified: false,
      attributes: { createTimestamp: ['20240101000000Z'], modifyTimestamp: [] }, groupPaths: [], roles: [], requiredActions: [],
      mapped: { email: true, firstName: true, lastName: true, emailVerified: false, enabled: false },
    });
  });

  it('splits a full name at the last space; an attribute mapper of the same property runs after it', async () => {
    const fullName = mapper('full-name-ldap-mapper', { 'ldap.full.name.attribute': 'cn', 'read.only': 'true', 'write.only': 'false' });
    const user = await mapLdapUser(provider([fullName, attribute('username', 'uid')]), entry({ uid: ['jo'], cn: [' Josephine  Ann March '], entryUUID: ['u1'] }));
    expect(user).toMatchObject({ firstName: 'Josephine  Ann', lastName: 'March' });
    const single = await mapLdapUser(provider([fullName]), entry({ uid: ['jo'], cn: ['Cher'], entryUUID: ['u1'] }));
    expect(single).toMatchObject({ firstName: null, lastName: 'Cher' });
    const both = await mapLdapUser(provider([fullName, attribute('lastName', 'sn')]), entry({ uid: ['jo'], cn: ['Jo March'], sn: ['Marsh'], entryUUID: ['u1'] }));
    expect(both).toMatchObject({ firstName: 'Jo', lastName: 'Marsh' });
  });

  it('never stores binary attributes and sets hardcoded ones; trustEmail verifies the address', async () => {
    const user = await mapLdapUser(provider([
      attribute('photo', 'jpegPhoto', { 'is.binary.attribute': 'true', 'always.read.value.from.ldap': 'true' }),
      mapper('hardcoded-attribute-mapper', { 'user.model.attribute': 'department', 'attribute.value': 'sales' }),
      mapper('hardcoded-attribute-mapper', { 'user.model.attribute': 'emailVerified', 'attribute.value': 'true' }),
    ], { trustEmail: true }), entry({ uid: ['jo'], jpegPhoto: [Buffer.from([1, 2, 3])], entryUUID: ['u1'] }));
    expect(user.attributes).toEqual({ department: ['sales'] });
    expect(user.emailVerified).toBe(true);
  });

  it('reads userAccountControl and pwdLastSet with the msad mapper (UPDATE_PASSWORD only when WRITABLE)', async () => {
    const msad = mapper('msad-user-account-control-mapper', { 'always.read.enabled.value.from.ldap': 'true' });
    const ad = (uac: string, pwdLastSet: string, editMode: LdapProviderConfig['editMode']) => mapLdapUser(
      provider([msad], { vendor: 'ad', usernameLDAPAttribute: 'sAMAccountName', editMode }),
      entry({ sAMAccountName: ['JoM'], entryUUID: ['u1'], userAccountControl: [uac], pwdLastSet: [pwdLastSet] }),
    );
    expect(await ad('514', '133000000000000000', 'READ_ONLY')).toMatchObject({ username: 'jom', enabled: false, requiredActions: [] });
    expect(await ad('512', '0', 'READ_ONLY')).toMatchObject({ enabled: true, requiredActions: [] });
    expect(await ad('512', '0', 'WRITABLE')).toMatchObject({ enabled: true, requiredActions: ['UPDATE_PASSWORD'] });
    expect(await ad(String(512 | 0x800000), '133000000000000000', 'WRITABLE')).toMatchObject({ requiredActions: ['UPDATE_PASSWORD'] });
  });

  it('refuses entries without a username or uuid, as Keycloak', async () => {
    await expect(mapLdapUser(provider(defaults), entry({ entryUUID: ['u1'] }))).rejects.toThrow(LdapMappingError);
    await expect(mapLdapUser(provider(defaults), entry({ uid: ['jo'] }))).rejects.toThrow(/null uuid/);
  });

  it('lists hardcoded groups and roles without asking the directory', async () => {
    const user = await mapLdapUser(provider([
      mapper('hardcoded-ldap-group-mapper', { group: '/staff/ldap' }), mapper('hardcoded-ldap-role-mapper', { role: 'app.viewer' }),
    ]), entry({ uid: ['jo'], entryUUID: ['u1'] }));
    expect(user).toMatchObject({ groupPaths: ['/staff/ldap'], roles: ['app.viewer'] });
  });
});

describe('ldapAttributesToRead', () => {
  it('asks for the mapped attributes and the membership ones', () => {
    const attributes = ldapAttributesToRead(provider([
      attribute('phone', 'telephoneNumber'),
      mapper('msad-user-account-control-mapper', {}),
      mapper('group-ldap-mapper', { 'groups.dn': 'ou=groups,dc=example,dc=org', mode: 'READ_ONLY', 'user.roles.retrieve.strategy': 'GET_GROUPS_FROM_USER_MEMBEROF_ATTRIBUTE', 'memberof.ldap.attribute': 'isMemberOf' }),
    ]));
    expect(attributes).toEqual(expect.arrayContaining(['*', 'entryUUID', 'uid', 'telephoneNumber', 'userAccountControl', 'pwdLastSet', 'isMemberOf']));
  });
});

describe('msad bind errors', () => {
  const msad = mapper('msad-user-account-control-mapper', {});
  const diagnostic = (code: string) => `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data ${code}, v4563`;

  it('reads the AD sub-error of a refused bind', () => {
    expect(adBindErrorCode(diagnostic('52e'))).toBe('52e');
    expect(adBindErrorCode('Invalid credentials')).toBeUndefined();
  });

  it('lets expired passwords in with UPDATE_PASSWORD and disables disabled accounts, on WRITABLE providers only', () => {
    const writable = provider([msad], { vendor: 'ad', editMode: 'WRITABLE' });
    expect(msadBindOutcome(writable, diagnostic('532'))).toBe('update-password');
    expect(msadBindOutcome(writable, diagnostic('773'))).toBe('update-password');
    expect(msadBindOutcome(writable, diagnostic('533'))).toBe('disabled');
    expect(msadBindOutcome(writable, diagnostic('52e'))).toBeUndefined();
    expect(msadBindOutcome(provider([msad], { vendor: 'ad', editMode: 'READ_ONLY' }), diagnostic('532'))).toBeUndefined();
    expect(msadBindOutcome(provider([], { vendor: 'ad', editMode: 'WRITABLE' }), diagnostic('532'))).toBeUndefined();
  });
});
