// LDAP federation without a directory: provider configuration with Keycloak's defaults per vendor,
// user filters (hostile logins stay assertion values, never filter syntax; Keycloak's escaping
// vectors), the custom filter, and objectGUID decoding against Keycloak's vectors.
import { randomBytes } from 'node:crypto';

import { AndFilter, BerReader, BerWriter, EqualityFilter, Filter, FilterParser } from 'ldapts';
import { describe, expect, it } from 'vitest';

import { createSecretBox } from '../../src/crypto/secret-box.ts';
import { failureKind, LdapConnectionError } from '../../src/federation/ldap/client.ts';
import { ldapProviderConfig } from '../../src/federation/ldap/config.ts';
import {
  binaryAttributes, customUserFilter, decodeObjectGuid, emailAttribute, escapeFilterValue, findLdapEntry, hasControlCharacters,
  ldapTimestamp, ldapUuid, toLdapEntry, userFilter,
} from '../../src/federation/ldap/directory.ts';
import { LdapUnavailableError, type LdapProviderConfig } from '../../src/federation/ldap/types.ts';
import { sealSecrets, COMPONENT_SECRET_KEYS } from '../../src/store/sealed-config.ts';
import type { Component } from '../../src/store/schema.ts';

const box = createSecretBox(randomBytes(32));
const PROVIDER_ID = '6f1d3c1e-7a55-4b0e-9a61-2f0c3d4e5f60';

function component(config: Record<string, string>, overrides: Partial<Component> = {}): Component {
  const { config: plain, sealed } = sealSecrets(box, Object.fromEntries(Object.entries(config).map(([k, v]) => [k, [v]])), COMPONENT_SECRET_KEYS);
  return {
    id: PROVIDER_ID, realm_id: 'realm-1', parent_id: 'realm-1', name: 'corp', provider_id: 'ldap',
    provider_type: 'org.keycloak.storage.UserStorageProvider', sub_type: null,
    config: plain as Component['config'], secrets_sealed: sealed, ...overrides,
  };
}

function mapper(providerId: string, config: Record<string, string>, name = providerId): Component {
  return component(config, { id: `m-${name}`, parent_id: PROVIDER_ID, name, provider_id: providerId, provider_type: 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper', secrets_sealed: null });
}

const minimal = { connectionUrl: 'ldap://127.0.0.1:389', usersDn: 'ou=people,dc=example,dc=org', editMode: 'READ_ONLY' };

function provider(config: Record<string, string> = {}, mappers: Component[] = []): LdapProviderConfig {
  return ldapProviderConfig(component({ ...minimal, ...config }), mappers, box);
}

/** The filter as the server receives it: BER-encoded, parsed back. */
function roundTrip(filter: Filter): Filter {
  const writer = new BerWriter();
  filter.write(writer);
  const reader = new BerReader(writer.buffer);
  return FilterParser.parse(reader);
}

describe('provider configuration', () => {
  it('applies Keycloak defaults for an OpenLDAP ("other") provider', () => {
    const config = provider({ bindDn: 'cn=admin,dc=example,dc=org', bindCredential: 'secret' });
    expect(config).toMatchObject({
      id: PROVIDER_ID, realmId: 'realm-1', name: 'corp', enabled: true, priority: 0, vendor: 'other',
      connectionUrls: ['ldap://127.0.0.1:389'], authType: 'simple', bindDn: 'cn=admin,dc=example,dc=org', bindCredential: 'secret',
      startTls: false, connectionTimeout: 5000, readTimeout: 10000, editMode: 'READ_ONLY',
      usernameLDAPAttribute: 'uid', rdnLDAPAttribute: 'uid', uuidLDAPAttribute: 'entryUUID',
      userObjectClasses: ['inetOrgPerson', 'organizationalPerson'], customUserSearchFilter: '', searchScope: 'sub',
      pagination: true, batchSizeForSync: 1000, fullSyncPeriod: -1, changedSyncPeriod: -1, importEnabled: true,
      trustEmail: false, usePasswordModifyExtendedOp: false, tlsCaBundle: undefined, removeMissingUsers: true, mappers: [],
    });
  });

  it('applies the vendor defaults for Active Directory, RHDS, Tivoli and eDirectory', () => {
    expect(provider({ vendor: 'ad' })).toMatchObject({
      vendor: 'ad', usernameLDAPAttribute: 'cn', rdnLDAPAttribute: 'cn', uuidLDAPAttribute: 'objectGUID',
      userObjectClasses: ['person', 'organizationalPerson', 'user'],
    });
    // sAMAccountName is no RDN: Keycloak's LDAPConfig falls back to cn.
    expect(provider({ vendor: 'ad', usernameLDAPAttribute: 'sAMAccountName' })).toMatchObject({ usernameLDAPAttribute: 'sAMAccountName', rdnLDAPAttribute: 'cn' });
    expect(provider({ vendor: 'rhds' }).uuidLDAPAttribute).toBe('nsuniqueid');
    expect(provider({ vendor: 'tivoli' }).uuidLDAPAttribute).toBe('uniqueidentifier');
    expect(provider({ vendor: 'edirectory' }).uuidLDAPAttribute).toBe('guid');
    expect(provider({ vendor: 'something-else' }).vendor).toBe('other');
  });

  it('reads the configured values, sealed credential included', () => {
    const config = provider({
      enabled: 'false', priority: '7', connectionUrl: 'ldaps://a.example:636  ldaps://b.example:636', authType: 'none',
      startTls: 'true', connectionTimeout: '1500', readTimeout: '2500', editMode: 'WRITABLE', usernameLDAPAttribute: 'mail',
      rdnLDAPAttribute: 'cn', uuidLDAPAttribute: 'ipaUniqueID', userObjectClasses: ' person ,, posixAccount ',
      customUserSearchFilter: ' (employeeType=staff) ', searchScope: '1', pagination: 'false', batchSizeForSync: '250',
      fullSyncPeriod: '3600', changedSyncPeriod: '60', importEnabled: 'false', trustEmail: 'true', usePasswordModifyExtendedOp: 'true',
      'cloakroom.tlsCaBundle': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', 'cloakroom.removeMissingUsers': 'false',
      bindCredential: 'sealed secret',
    });
    expect(config).toMatchObject({
      enabled: false, priority: 7, connectionUrls: ['ldaps://a.example:636', 'ldaps://b.example:636'], authType: 'none', startTls: true,
      connectionTimeout: 1500, readTimeout: 2500, editMode: 'WRITABLE', usernameLDAPAttribute: 'mail', rdnLDAPAttribute: 'cn',
      uuidLDAPAttribute: 'ipaUniqueID', userObjectClasses: ['person', 'posixAccount'], customUserSearchFilter: '(employeeType=staff)',
      searchScope: 'one', pagination: false, batchSizeForSync: 250, fullSyncPeriod: 3600, changedSyncPeriod: 60, importEnabled: false,
      trustEmail: true, usePasswordModifyExtendedOp: true, removeMissingUsers: false, bindCredential: 'sealed secret',
    });
    expect(config.tlsCaBundle).toContain('BEGIN CERTIFICATE');
  });

  it('never waits forever: empty, zero or negative timeouts become the defaults', () => {
    expect(provider({ connectionTimeout: '0', readTimeout: '-1' })).toMatchObject({ connectionTimeout: 5000, readTimeout: 10000 });
    expect(provider({ connectionTimeout: 'abc' }).connectionTimeout).toBe(5000);
  });

  it('takes the mapper sub-components of this provider only, first value of each key', () => {
    const mine = mapper('user-attribute-ldap-mapper', { 'user.model.attribute': 'email', 'ldap.attribute': 'mailPrimaryAddress' }, 'email');
    const other = { ...mapper('full-name-ldap-mapper', { 'ldap.full.name.attribute': 'cn' }, 'full'), parent_id: 'another-provider' };
    const config = provider({}, [mine, other]);
    expect(config.mappers).toEqual([{ id: 'm-email', name: 'email', providerId: 'user-attribute-ldap-mapper', config: { 'user.model.attribute': 'email', 'ldap.attribute': 'mailPrimaryAddress' } }]);
    expect(emailAttribute(config)).toBe('mailPrimaryAddress');
    expect(emailAttribute(provider())).toBe('mail');
  });
});

describe('user filters', () => {
  it('escapes as Keycloak (EscapeStrategy.DEFAULT test vectors)', () => {
    expect(escapeFilterValue('Véronique* Martin(john)second\\fff//eee\u0000')).toBe('V\\c3\\a9ronique\\2a Martin\\28john\\29second\\5cfff//eee\\00');
    expect(escapeFilterValue('Hi This is a test #çà')).toBe('Hi This is a test #\\c3\\a7\\c3\\a0');
  });

  it('escapes the RFC 4515 specials so a string filter stays one equality assertion', () => {
    for (const login of ['*', ')(uid=*', 'a)(|(uid=*', '\\', '\\2a', 'x\u0000y']) {
      const parsed = FilterParser.parseString(`(uid=${escapeFilterValue(login)})`);
      expect(parsed).toBeInstanceOf(EqualityFilter);
      expect((parsed as EqualityFilter).attribute).toBe('uid');
    }
  });

  it('keeps hostile logins as literal assertion values of one equality clause', () => {
    const config = provider();
    for (const login of ['*', ')(uid=*', '*)(objectClass=*', '\\', 'admin)(|(uid=*)', 'a\\2a']) {
      const filter = roundTrip(userFilter(config, new EqualityFilter({ attribute: 'uid', value: login })));
      expect(filter).toBeInstanceOf(AndFilter);
      const clauses = (filter as AndFilter).filters;
      expect(clauses).toHaveLength(3);
      expect(clauses.every((c) => c instanceof EqualityFilter)).toBe(true);
      expect(clauses[0]).toMatchObject({ attribute: 'uid', value: login });
      expect(clauses.slice(1).map((c) => (c as EqualityFilter).value)).toEqual(['inetorgperson', 'organizationalperson']);
    }
    expect(userFilter(config, new EqualityFilter({ attribute: 'uid', value: ')(uid=*' })).toString())
      .toBe('(&(uid=\\29\\28uid=\\2a)(objectClass=inetOrgPerson)(objectClass=organizationalPerson))');
  });

  it('ANDs the custom filter in, parsed', () => {
    const config = provider({ customUserSearchFilter: '(|(employeeType=staff)(employeeType=contractor))' });
    expect(userFilter(config, new EqualityFilter({ attribute: 'uid', value: 'jdoe' })).toString())
      .toBe('(&(uid=jdoe)(objectClass=inetOrgPerson)(objectClass=organizationalPerson)(|(employeeType=staff)(employeeType=contractor)))');
  });

  it('reports a broken custom filter as an unusable provider, naming it', () => {
    const config = provider({ customUserSearchFilter: '(&(uid=a)' });
    expect(() => customUserFilter(config)).toThrow(LdapUnavailableError);
    expect(() => customUserFilter(config)).toThrow(/customUserSearchFilter of LDAP provider "corp" is invalid/);
  });

  it('finds nothing, without asking any directory, for logins with control characters', async () => {
    // Port 9 on loopback: a query would fail with LdapUnavailableError, not return undefined.
    const config = provider({ connectionUrl: 'ldap://127.0.0.1:9' });
    for (const login of ['admin\u0000', '\u0000', 'a\nb', 'tab\tuser', 'del\u007f', '', '   ']) {
      expect(hasControlCharacters(login) || login.trim() === '').toBe(true);
      await expect(findLdapEntry(config, login, { byEmail: true })).resolves.toBeUndefined();
    }
    expect(hasControlCharacters('jdoe@example.org')).toBe(false);
  });

  it('formats change timestamps as each directory compares them', () => {
    const at = new Date('2024-03-05T06:07:08.999Z');
    expect(ldapTimestamp(at, 'other')).toBe('20240305060708Z');
    expect(ldapTimestamp(at, 'ad')).toBe('20240305060708.0Z');
  });
});

describe('entries and ids', () => {
  it('decodes objectGUID as Keycloak (LDAPUtilTest vector)', () => {
    // Keycloak's encodeObjectGUID("2f419d1c-6495-479f-b340-9cb419eb9ae7"): first three fields little-endian.
    const bytes = Buffer.from('1c9d412f95649f47b3409cb419eb9ae7', 'hex');
    expect(decodeObjectGuid(bytes)).toBe('2f419d1c-6495-479f-b340-9cb419eb9ae7');
    expect(decodeObjectGuid(Buffer.from('9eLQGLjeDE6kgxMT1ghj+g==', 'base64'))).toBe('18d0e2f5-deb8-4e0c-a483-1313d60863fa');
  });

  it('gives the LDAP_ID from the uuid attribute: objectGUID decoded, others as text', () => {
    const guid = Buffer.from('1c9d412f95649f47b3409cb419eb9ae7', 'hex');
    const ad = provider({ vendor: 'ad' });
    const entry = toLdapEntry({ dn: 'cn=J,ou=people,dc=example,dc=org', objectGUID: guid, cn: 'J', memberOf: [] });
    expect([...entry.attributes.keys()]).toEqual(['objectguid', 'cn']); // empty (unrequested) attributes dropped
    expect(ldapUuid(ad, entry)).toBe('2f419d1c-6495-479f-b340-9cb419eb9ae7');

    const other = provider();
    const openldap = toLdapEntry({ dn: 'uid=j,ou=people,dc=example,dc=org', entryUUID: '5e2b0a6e-33a5-103e-8f5e-d3b1c8e3a1f2', uid: ['j'] });
    expect(ldapUuid(other, openldap)).toBe('5e2b0a6e-33a5-103e-8f5e-d3b1c8e3a1f2');
    expect(ldapUuid(other, toLdapEntry({ dn: 'uid=x,dc=example,dc=org', uid: 'x' }))).toBeUndefined();
  });

  it('reads AD ids and binary mapped attributes as bytes', () => {
    const ad = provider({ vendor: 'ad' }, [mapper('user-attribute-ldap-mapper', { 'ldap.attribute': 'jpegPhoto', 'user.model.attribute': 'photo', 'is.binary.attribute': 'true' })]);
    expect(binaryAttributes(ad)).toEqual(expect.arrayContaining(['objectGUID', 'objectguid', 'objectSid', 'jpegPhoto', 'jpegphoto']));
    expect(binaryAttributes(provider())).toEqual([]);
  });
});

describe('connection failure kinds', () => {
  it('tells refused, unknown host, timeouts, TLS and dropped connections apart', () => {
    const coded = (code: string, message = code) => Object.assign(new Error(message), { code });
    expect(failureKind(coded('ECONNREFUSED'))).toBe('refused');
    expect(failureKind(coded('ENOTFOUND'))).toBe('unknown-host');
    expect(failureKind(coded('EHOSTUNREACH'))).toBe('unreachable');
    expect(failureKind(new Error('Connection timeout'))).toBe('connect-timeout');
    expect(failureKind(new Error('BindRequest: Operation timed out'))).toBe('read-timeout');
    expect(failureKind(coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate'))).toBe('tls');
    expect(failureKind(coded('ERR_TLS_CERT_ALTNAME_INVALID'))).toBe('tls');
    expect(failureKind(new Error('Connection closed before message response was received.'))).toBe('closed');
    expect(failureKind(new LdapConnectionError('p', 'service-bind', 'refused'))).toBe('service-bind');
    expect(new LdapConnectionError('p', 'busy', 'x')).toBeInstanceOf(LdapUnavailableError);
  });
});
