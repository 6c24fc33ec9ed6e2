import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSecrets } from '../../../src/store/sealed-config.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
const PASSWORD = 'Secret-pw-1';
const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const LDAP_MAPPER = 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper';

beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

/** A realm (imported, independent of the users API) with users holding the given realm-management roles; returns its id and their tokens. */
async function realmWith(realm: string, admins: Record<string, string[]> = {}): Promise<{ id: string; tokens: Record<string, string> }> {
  const { realmId } = await bench.server.importRealm({
    realm, enabled: true,
    groups: [{ name: 'staff', subGroups: [{ name: 'agents' }] }],
    users: Object.entries(admins).map(([username, roles]) => ({
      username, enabled: true, credentials: [{ type: 'password', value: PASSWORD }],
      ...(roles.length > 0 ? { clientRoles: { 'realm-management': roles } } : {}),
    })),
  });
  const tokens: Record<string, string> = {};
  for (const username of Object.keys(admins)) tokens[username] = await passwordToken(bench.server.url, realm, username, PASSWORD);
  return { id: realmId, tokens };
}

const ldapConfig = (extra: Record<string, string[]> = {}): Record<string, string[]> => ({
  enabled: ['true'], vendor: ['other'], connectionUrl: ['ldap://ldap.example.com:389'], usersDn: ['ou=people,dc=example,dc=com'],
  bindDn: ['cn=admin,dc=example,dc=com'], bindCredential: ['bind-secret'], authType: ['simple'], editMode: ['READ_ONLY'],
  usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'], uuidLDAPAttribute: ['entryUUID'], userObjectClasses: ['inetOrgPerson, organizationalPerson'],
  importEnabled: ['true'], ...extra,
});

async function errorOf(response: Response): Promise<[number, string]> {
  const text = await response.text();
  const body = response.headers.get('content-type')?.includes('json') ? JSON.parse(text) as { errorMessage?: string } : {};
  return [response.status, body.errorMessage ?? ''];
}

describe('components', () => {
  it('creates an LDAP provider with Keycloak\'s default mappers, masks its bind credential and keeps it on a masked PUT', async () => {
    const realm = 'cmp-ldap';
    const { id: realmId } = await realmWith(realm);
    const { admin } = bench;
    const { id } = await admin.components.create({ realm, name: 'corp-ldap', providerId: 'ldap', providerType: USER_STORAGE, config: ldapConfig() });
    const ldap = await admin.components.findOne({ realm, id });
    expect(ldap).toMatchObject({ id, name: 'corp-ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId });
    expect(ldap!.config).toMatchObject({ bindCredential: ['**********'], connectionUrl: ['ldap://ldap.example.com:389'], krbPrincipalAttribute: ['krb5PrincipalName'] });

    const mappers = await admin.components.find({ realm, parent: id, type: LDAP_MAPPER });
    const byName = Object.fromEntries(mappers.map((m) => [m.name, m]));
    expect(Object.keys(byName).sort()).toEqual(['Kerberos principal attribute mapper', 'creation date', 'email', 'first name', 'last name', 'modify date', 'username']);
    expect(byName.username).toMatchObject({ providerId: 'user-attribute-ldap-mapper', providerType: LDAP_MAPPER, parentId: id, config: {
      'user.model.attribute': ['username'], 'ldap.attribute': ['uid'], 'read.only': ['true'], 'always.read.value.from.ldap': ['false'], 'is.mandatory.in.ldap': ['true'],
    } });
    expect(byName['first name']!.config).toMatchObject({ 'ldap.attribute': ['cn'], 'always.read.value.from.ldap': ['true'] });
    expect(byName['creation date']!.config).toMatchObject({ 'user.model.attribute': ['createTimestamp'], 'ldap.attribute': ['createTimestamp'], 'read.only': ['true'] });

    const stored = async (): Promise<Record<string, string[]>> => {
      const row = await bench.server.store.db.selectFrom('components').select('secrets_sealed').where('id', '=', id).executeTakeFirstOrThrow();
      return openSecrets<string[]>(bench.server.box, row.secrets_sealed);
    };
    expect(await stored()).toEqual({ bindCredential: ['bind-secret'] });
    await admin.components.update({ realm, id }, { ...ldap, name: 'ldap-renamed', config: { ...ldap!.config, bindCredential: ['**********'], pagination: ['false'], bindDn: [] } });
    expect(await stored()).toEqual({ bindCredential: ['bind-secret'] });
    const updated = await admin.components.findOne({ realm, id });
    expect(updated).toMatchObject({ name: 'ldap-renamed', config: { pagination: ['false'], bindCredential: ['**********'] } });
    expect(updated!.config).not.toHaveProperty('bindDn'); // an empty value removes the key
    // Keys absent from a PUT keep their values (Keycloak merges component config).
    await admin.components.update({ realm, id }, { config: { bindCredential: ['new-secret'] } });
    expect(await stored()).toEqual({ bindCredential: ['new-secret'] });
    expect((await admin.components.findOne({ realm, id }))!.config).toMatchObject({ usersDn: ['ou=people,dc=example,dc=com'], pagination: ['false'] });

    // Deleting the provider deletes its mappers and the users imported from it.
    const user = await bench.server.store.db.insertInto('users').values({
      id: crypto.randomUUID(), realm_id: realmId, username: 'from-ldap', email: null, first_name: null, last_name: null, federation_link: id,
      service_account_client_id: null, attributes: '{}', required_actions: '[]',
    }).returning('id').executeTakeFirstOrThrow();
    await admin.components.del({ realm, id });
    expect(await admin.components.findOne({ realm, id })).toBeNull();
    expect(await admin.components.find({ realm, parent: id })).toEqual([]);
    expect(await bench.server.store.db.selectFrom('users').select('id').where('id', '=', user.id).execute()).toEqual([]);
  });

  it('creates the default mappers Keycloak chooses for Active Directory and writable trees', async () => {
    const realm = 'cmp-ad';
    await realmWith(realm);
    const { admin } = bench;
    const names = async (config: Record<string, string[]>): Promise<Record<string, Record<string, string[]>>> => {
      const { id } = await admin.components.create({ realm, name: `ldap-${Math.random()}`, providerId: 'ldap', providerType: USER_STORAGE, config });
      return Object.fromEntries((await admin.components.find({ realm, parent: id })).map((m) => [m.name!, m.config as Record<string, string[]>]));
    };
    const ad = await names(ldapConfig({ vendor: ['ad'], usernameLDAPAttribute: ['sAMAccountName'], rdnLDAPAttribute: ['cn'], uuidLDAPAttribute: ['objectGUID'], editMode: ['WRITABLE'] }));
    expect(Object.keys(ad).sort()).toEqual(['Kerberos principal attribute mapper', 'MSAD account controls', 'creation date', 'email', 'first name', 'last name', 'modify date', 'username', 'username-cn']);
    expect(ad['creation date']).toMatchObject({ 'ldap.attribute': ['whenCreated'] });
    expect(ad['first name']).toMatchObject({ 'ldap.attribute': ['givenName'], 'read.only': ['false'] });
    const readOnlyAd = await names(ldapConfig({ vendor: ['ad'], usernameLDAPAttribute: ['sAMAccountName'], rdnLDAPAttribute: ['cn'] }));
    expect(readOnlyAd).toHaveProperty('full name');
    expect(readOnlyAd['full name']).toMatchObject({ 'ldap.full.name.attribute': ['cn'], 'read.only': ['true'], 'write.only': ['false'] });
    const registrations = await names(ldapConfig({ editMode: ['WRITABLE'], syncRegistrations: ['true'], usePasswordModifyExtendedOp: ['true'] }));
    expect(registrations['random initial password']).toEqual({ 'ldap.attribute.name': ['userPassword'], 'ldap.attribute.value': ['${RANDOM}'] });
  });

  it('validates LDAP providers and mappers with Keycloak\'s messages', async () => {
    const realm = 'cmp-validate';
    await realmWith(realm);
    const post = async (body: unknown) => errorOf(await bench.api(`/${realm}/components`, { method: 'POST', body: JSON.stringify(body) }));
    const ldap = (config: Record<string, string[]>) => ({ name: 'l', providerId: 'ldap', providerType: USER_STORAGE, config });
    expect(await post(ldap(ldapConfig({ editMode: [] })))).toEqual([400, 'Edit Mode is mandatory']);
    expect(await post(ldap(ldapConfig({ editMode: ['SOMETIMES'] }))))
      .toEqual([400, 'Invalid value for editMode: SOMETIMES (expected READ_ONLY, WRITABLE or UNSYNCED)']);
    expect(await post(ldap(ldapConfig({ connectionTimeout: ['soon'] })))).toEqual([400, 'Connection Timeout must be a number']);
    expect(await post(ldap(ldapConfig({ readTimeout: ['1s'] })))).toEqual([400, 'Read Timeout must be a number']);
    expect(await post(ldap(ldapConfig({ customUserSearchFilter: ['objectClass=person'] })))).toEqual([400, 'Custom configured LDAP filter does not start with "(" or does not end with ")".']);
    expect(await post(ldap(ldapConfig({ validatePasswordPolicy: ['true'] })))).toEqual([400, 'Validate Password Policy is applicable only with WRITABLE edit mode']);
    expect(await post(ldap(ldapConfig({ editMode: ['UNSYNCED'], importEnabled: ['false'] })))).toEqual([400, "Can't disable Importing users when LDAP provider mode is UNSYNCED"]);
    expect((await post(ldap(ldapConfig({ connectionUrl: [] }))))[1]).toContain('connectionUrl');
    expect((await post(ldap(ldapConfig({ connectionUrl: ['http://ldap.example.com'] }))))[1]).toContain('Invalid LDAP connection URL');
    expect((await post(ldap(ldapConfig({ usersDn: ['  '] }))))[1]).toContain('usersDn');
    expect(await post({ name: 'x', providerId: 'nope', providerType: USER_STORAGE, config: {} })).toEqual([400, 'Invalid provider type or no such provider']);
    expect(await post({ name: 'x', providerId: 'ldap', providerType: 'org.example.Nope', config: {} })).toEqual([400, 'Invalid provider type or no such provider']);
    expect(await post({ name: 'x', config: {} })).toEqual([400, 'Invalid provider type or no such provider']);
    // Config values are string arrays, as Keycloak's MultivaluedHashMap requires.
    const [status, message] = await post(ldap({ ...ldapConfig(), editMode: 'READ_ONLY' as never }));
    expect(status).toBe(400);
    expect(message).toContain('config.editMode');
    expect((await post({ name: 7, providerId: 'ldap', providerType: USER_STORAGE, config: ldapConfig() }))[1]).toContain('name');

    const { id: parent } = await bench.admin.components.create({ realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, config: ldapConfig() });
    const mapper = (providerId: string, config: Record<string, string[]>, parentId = parent) => ({ name: 'm', providerId, providerType: LDAP_MAPPER, parentId, config });
    expect(await post(mapper('user-attribute-ldap-mapper', { 'ldap.attribute': ['mail'] }))).toEqual([400, "Missing configuration for 'User Model Attribute'"]);
    expect(await post(mapper('user-attribute-ldap-mapper', { 'user.model.attribute': ['email'], 'ldap.attribute': ['mail'], 'is.binary.attribute': ['true'] })))
      .toEqual([400, "With Binary attribute enabled, the 'Always read value from LDAP' must be enabled too"]);
    expect(await post(mapper('full-name-ldap-mapper', { 'ldap.full.name.attribute': ['cn'], 'write.only': ['true'] }))).toEqual([400, "Can't set write only when LDAP provider mode is not WRITABLE"]);
    expect(await post(mapper('hardcoded-ldap-role-mapper', { role: ['no-such-role'] }))).toEqual([400, 'There is no role corresponding to configured value']);
    expect(await post(mapper('hardcoded-ldap-group-mapper', { group: ['/staff/nobody'] }))).toEqual([400, 'There is no group corresponding to configured value']);
    expect(await post(mapper('hardcoded-attribute-mapper', { 'user.model.attribute': ['email'], 'attribute.value': ['x'] }))).toEqual([400, 'Attribute Name cannot be set to username or email']);
    expect((await post(mapper('user-attribute-ldap-mapper', { 'user.model.attribute': ['a'], 'ldap.attribute': ['b'] }, '00000000-0000-4000-8000-000000000000')))[0]).toBe(400);
    expect(await post({ ...mapper('user-attribute-ldap-mapper', { 'user.model.attribute': ['a'], 'ldap.attribute': ['b'] }), parentId: undefined })).toEqual([400, "can't find parent component model"]);
    // Valid mappers are created under the provider.
    for (const body of [
      mapper('hardcoded-ldap-role-mapper', { role: ['offline_access'] }),
      mapper('hardcoded-ldap-group-mapper', { group: ['/staff/agents'] }),
      mapper('user-attribute-ldap-mapper', { 'user.model.attribute': ['phone'], 'ldap.attribute': ['telephoneNumber'] }),
    ]) expect((await bench.api(`/${realm}/components`, { method: 'POST', body: JSON.stringify(body) })).status).toBe(201);

    // PUT validates the merged result too.
    const put = await bench.api(`/${realm}/components/${parent}`, { method: 'PUT', body: JSON.stringify({ config: { editMode: [] } }) });
    expect(await errorOf(put)).toEqual([400, 'Edit Mode is mandatory']);
  });

  it('lists by parent, type, name and providerId as Keycloak does; other providers are stored as given', async () => {
    const realm = 'cmp-list';
    const { id: realmId } = await realmWith(realm);
    const { admin } = bench;
    const { id: rsa } = await admin.components.create({ realm, name: 'rsa', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: { priority: ['100'], keySize: ['2048'] } });
    const { id: hmac } = await admin.components.create({ realm, name: 'hmac', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', parentId: realm, config: { secret: ['hmac-secret'] } });
    const { id: ldap } = await admin.components.create({ realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId, config: ldapConfig() });
    const response = await bench.api(`/${realm}/components`, { method: 'POST', body: JSON.stringify({ name: 'policy', providerId: 'trusted-hosts', providerType: 'org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy', subType: 'anonymous', config: { 'trusted-hosts': ['a.example.com', 'b.example.com'] } }) });
    expect(response.status).toBe(201);
    const policy = response.headers.get('location')!.split('/').pop()!;
    expect(response.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/components/${policy}`);
    expect(await admin.components.findOne({ realm, id: policy })).toEqual({
      id: policy, name: 'policy', providerId: 'trusted-hosts', providerType: 'org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy',
      parentId: realmId, subType: 'anonymous', config: { 'trusted-hosts': ['a.example.com', 'b.example.com'] },
    });
    expect((await admin.components.findOne({ realm, id: hmac }))!.config).toEqual({ secret: ['**********'] });

    const ids = async (query: Record<string, string>): Promise<string[]> => (await admin.components.find({ realm, ...query })).map((c) => c.id!).sort();
    expect(await ids({ type: 'org.keycloak.keys.KeyProvider' })).toEqual([rsa, hmac].sort());
    expect(await ids({ type: 'org.keycloak.keys.KeyProvider', name: 'rsa' })).toEqual([rsa]);
    expect(await ids({ providerId: 'hmac-generated' })).toEqual([hmac]);
    expect((await ids({ parent: ldap })).length).toBe(7);
    expect(await ids({ type: LDAP_MAPPER })).toEqual([]); // a type without a parent: top-level only
    expect((await ids({})).length).toBe(4 + 7);
    expect(await ids({ parent: realmId, type: USER_STORAGE })).toEqual([ldap]);
    expect(await ids({ parent: 'not-a-uuid' })).toEqual([]);
  });

  it('answers 404 for unknown or malformed ids and lists LDAP mapper types', async () => {
    const realm = 'cmp-404';
    await realmWith(realm);
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      expect((await bench.api(`/${realm}/components/${id}`)).status).toBe(404);
      expect((await bench.api(`/${realm}/components/${id}`, { method: 'PUT', body: JSON.stringify({ name: 'x' }) })).status).toBe(404);
      expect((await bench.api(`/${realm}/components/${id}`, { method: 'DELETE' })).status).toBe(404);
      expect((await bench.api(`/${realm}/components/${id}/sub-component-types?type=${LDAP_MAPPER}`)).status).toBe(404);
    }
    const { id } = await bench.admin.components.create({ realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, config: ldapConfig() });
    expect((await bench.api(`/${realm}/components/${id}/sub-component-types`)).status).toBe(400);
    const types = await bench.admin.components.listSubComponents({ realm, id, type: LDAP_MAPPER });
    expect(types.map((t) => t.id)).toEqual(expect.arrayContaining(['user-attribute-ldap-mapper', 'full-name-ldap-mapper', 'hardcoded-ldap-role-mapper', 'hardcoded-ldap-group-mapper']));
    const attribute = types.find((t) => t.id === 'user-attribute-ldap-mapper')!;
    expect(attribute.properties!.map((p) => p.name)).toEqual(['user.model.attribute', 'ldap.attribute', 'read.only', 'always.read.value.from.ldap', 'is.mandatory.in.ldap', 'is.binary.attribute']);
    expect(attribute.properties!.find((p) => p.name === 'read.only')!.defaultValue).toBe('true'); // READ_ONLY parent
    // A duplicate id is a conflict.
    const dup = await bench.api(`/${realm}/components`, { method: 'POST', body: JSON.stringify({ id, name: 'again', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: {} }) });
    expect(dup.status).toBe(409);
  });

  it('lets view-realm read, manage-realm write, and refuses others', async () => {
    const realm = 'cmp-perms';
    const { tokens } = await realmWith(realm, { viewer: ['view-realm'], manager: ['manage-realm'], nobody: [], idpAdmin: ['manage-identity-providers'] });
    const { tokens: other } = await realmWith('cmp-perms-other', { otherAdmin: ['realm-admin'] });
    const { id } = await bench.admin.components.create({ realm, name: 'rsa', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: {} });
    const { id: ldap } = await bench.admin.components.create({ realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, config: ldapConfig() });
    const status = async (token: string, method: string, path: string, body?: unknown): Promise<number> =>
      (await bench.api(`/${realm}${path}`, { method, token, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })).status;
    const reads = ['/components', `/components/${id}`, `/components/${ldap}/sub-component-types?type=${LDAP_MAPPER}`];
    const writes: [string, string, unknown?][] = [
      ['POST', '/components', { name: 'hmac', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', config: {} }],
      ['PUT', `/components/${id}`, { name: 'rsa2' }],
      ['DELETE', `/components/${id}`],
    ];
    for (const path of reads) {
      expect(await status(tokens.viewer!, 'GET', path), path).toBe(200);
      for (const refused of [tokens.nobody!, tokens.idpAdmin!, other.otherAdmin!]) expect(await status(refused, 'GET', path), path).toBe(403);
    }
    for (const [method, path, body] of writes) {
      for (const refused of [tokens.viewer!, tokens.nobody!, other.otherAdmin!]) expect(await status(refused, method, path, body), `${method} ${path}`).toBe(403);
    }
    expect((await bench.admin.components.findOne({ realm, id }))!.name).toBe('rsa');
    for (const [method, path, body] of writes) expect(await status(tokens.manager!, method, path, body), `${method} ${path}`).toBeLessThan(300);
  });
});
