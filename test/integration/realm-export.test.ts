// Realm export (src/realms/export.ts) and import (src/realms/import.ts) as a round trip: a realm
// using every resource type is exported with its users, created in an empty database through
// POST /admin/realms, and exported again; the two documents are equal, and the users sign in
// there with their old passwords (Keycloak pbkdf2 / pbkdf2-sha256 / pbkdf2-sha512 / argon2 hashes).
import type { KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportRealm, KEYCLOAK_EXPORT_VERSION, RealmNotFoundError } from '../../src/realms/export.ts';
import { ImportError, importRealm } from '../../src/realms/import.ts';
import { SECRET_MASK } from '../../src/store/sealed-config.ts';
import type { Db } from '../../src/store/db.ts';
import { OTP_SECRET_BASE32, OTP_SECRET_PLAIN, PASSWORD_USERS, richRealm } from '../fixtures/rich-realm.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../support/admin.ts';
import { basicAuth, postForm } from '../support/server.ts';

let source: AdminBench;
let target: AdminBench;
beforeAll(async () => {
  [source, target] = await Promise.all([startAdminBench(), startAdminBench()]);
}, 60_000);
afterAll(async () => { await Promise.all([source?.stop(), target?.stop()]); });

type Json = Record<string, any>;
const json = (value: unknown): Json => JSON.parse(JSON.stringify(value)) as Json;
const byName = <T extends Json>(list: T[], key: string, value: string): T => list.find((item) => item[key] === value)!;

/** A db that counts the statements run through it. */
function counting(db: Db): { db: Db; count(): number } {
  let statements = 0;
  const plugin: KyselyPlugin = {
    transformQuery: (args) => { statements++; return args.node; },
    transformResult: async (args) => args.result,
  };
  return { db: db.withPlugin(plugin), count: () => statements };
}

describe('realm export and import round trip', () => {
  let first: Json;

  it('exports every resource of a realm, then the same document again after importing it into an empty database', async () => {
    await source.server.importRealm(richRealm());
    first = json(await exportRealm(source.server.store.db, source.server.box, 'rich', { users: true, secrets: 'open' }));

    // The export carries what the realm was made from.
    expect(first).toMatchObject({
      id: '00000000-0000-4000-8000-000000000001', realm: 'rich', displayName: 'Rich Realm', enabled: true, notBefore: 0,
      accessTokenLifespan: 600, passwordPolicy: 'length(8) and notUsername', bruteForceProtected: true,
      smtpServer: { host: 'smtp.example.com', password: 'smtp-pass' }, someFutureSetting: { nested: [1, 2, 3] },
      attributes: { customAttribute: 'kept' }, defaultGroups: ['/customers'], keycloakVersion: KEYCLOAK_EXPORT_VERSION,
      defaultRole: { id: '00000000-0000-4000-8000-00000000000c', name: 'default-roles-rich', composite: true, clientRole: false },
    });
    expect(byName(first.roles.realm, 'name', 'app-admin')).toEqual({
      id: '00000000-0000-4000-8000-00000000000b', name: 'app-admin', composite: true,
      composites: { realm: ['app-user'], client: { portal: ['manage'] } }, clientRole: false, containerId: first.id, attributes: {},
    });
    expect(byName(first.roles.realm, 'name', 'app-user')).toMatchObject({ description: 'Application user', attributes: { tier: ['gold', 'silver'] } });
    expect(first.roles.client.portal.map((r: Json) => r.name)).toEqual(['manage', 'view']);
    expect(first.roles.client['admin-cli']).toEqual([]);
    expect(first.groups.map((g: Json) => g.path)).toEqual(['/customers', '/staff']);
    expect(byName(first.groups, 'name', 'staff')).toMatchObject({
      attributes: { location: ['berlin'] }, realmRoles: ['app-user'], clientRoles: { portal: ['view'] },
      subGroups: [{ name: 'admins', path: '/staff/admins', description: 'Administrators', parentId: '00000000-0000-4000-8000-00000000001e', realmRoles: ['app-admin'] }],
    });

    const portal = byName(first.clients, 'clientId', 'portal');
    expect(portal).toMatchObject({
      id: '00000000-0000-4000-8000-000000000028', secret: 'portal-secret-value', name: 'Portal', description: 'The customer portal',
      rootUrl: 'https://portal.example.com', baseUrl: '/home', adminUrl: 'https://portal.example.com/admin',
      serviceAccountsEnabled: true, directAccessGrantsEnabled: true, fullScopeAllowed: false, frontchannelLogout: true,
      alwaysDisplayInConsole: true, nodeReRegistrationTimeout: -1, surrogateAuthRequired: false,
      attributes: { 'post.logout.redirect.uris': 'https://portal.example.com/bye', 'access.token.lifespan': '120' },
      protocolMappers: [{ id: '00000000-0000-4000-8000-000000000029', name: 'audience backend', protocolMapper: 'oidc-audience-mapper', config: { 'included.client.audience': 'backend' } }],
    });
    expect(portal.defaultClientScopes).toEqual(['acr', 'basic', 'custom-scope', 'email', 'profile', 'roles', 'service_account', 'web-origins']);
    expect(byName(first.clients, 'clientId', 'spa')).not.toHaveProperty('secret');
    expect(byName(first.clients, 'clientId', 'backend')).toMatchObject({ bearerOnly: true, secret: 'backend-secret' });
    expect(byName(first.clientScopes, 'name', 'custom-scope')).toMatchObject({
      description: 'Tenant claims', protocolMappers: [{ name: 'tenant', config: { 'claim.value': 'acme' } }],
    });
    expect(first.defaultOptionalClientScopes).toContain('custom-scope');
    expect(first.scopeMappings).toEqual([{ client: 'spa', roles: ['app-user'] }, { clientScope: 'offline_access', roles: ['offline_access'] }]);
    expect(first.clientScopeMappings).toEqual({
      account: [{ client: 'account-console', roles: ['manage-account', 'view-groups'] }],
      portal: [{ client: 'spa', roles: ['view'] }, { clientScope: 'custom-scope', roles: ['view'] }],
    });

    expect(first.identityProviders).toEqual([
      {
        alias: 'corp', internalId: '00000000-0000-4000-8000-000000000033', providerId: 'oidc', enabled: false, trustEmail: false,
        storeToken: true, linkOnly: true, hideOnLogin: true, addReadTokenRoleOnCreate: false, authenticateByDefault: false,
        postBrokerLoginFlowAlias: 'post login',
        config: {
          clientId: 'corp', clientSecret: 'corp-secret', authorizationUrl: 'https://idp.corp.example/auth',
          tokenUrl: 'https://idp.corp.example/token', clientAuthMethod: 'client_secret_post', validateSignature: 'false',
        },
      },
      expect.objectContaining({
        alias: 'google', displayName: 'Google', updateProfileFirstLoginMode: 'on', firstBrokerLoginFlowAlias: 'first broker login',
        addReadTokenRoleOnCreate: false, authenticateByDefault: false, config: expect.objectContaining({ clientSecret: 'google-secret' }),
      }),
    ]);
    expect(first.identityProviderMappers).toEqual([
      { id: '00000000-0000-4000-8000-000000000034', name: 'employees', identityProviderAlias: 'corp', identityProviderMapper: 'oidc-hardcoded-role-idp-mapper', config: { role: 'app-user', syncMode: 'INHERIT' } },
      { id: '00000000-0000-4000-8000-000000000035', name: 'email', identityProviderAlias: 'google', identityProviderMapper: 'oidc-user-attribute-idp-mapper', config: { claim: 'email', 'user.attribute': 'email' } },
    ]);
    const [ldap] = first.components['org.keycloak.storage.UserStorageProvider'];
    expect(ldap).toMatchObject({
      id: '00000000-0000-4000-8000-0000000001f4', name: 'corp-ldap', providerId: 'ldap',
      config: { bindCredential: ['ldap-bind-secret'], connectionUrl: ['ldap://ldap.example.com'] },
      subComponents: { 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper': [{ name: 'username', config: { 'ldap.attribute': ['uid'] }, subComponents: {} }] },
    });
    expect(ldap).not.toHaveProperty('parentId');
    expect(first.components['org.keycloak.keys.KeyProvider']).toEqual([expect.objectContaining({ name: 'hmac-generated', config: expect.objectContaining({ secret: ['hmac-key-material'] }) })]);

    // Users: credentials as JSON strings, exactly the OTP data given; IdP links, roles, groups.
    expect(first.users.map((u: Json) => u.username)).toEqual(['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'service-account-portal']);
    const alice = byName(first.users, 'username', 'alice');
    expect(alice).toMatchObject({
      id: '00000000-0000-4000-8000-00000000003c', email: 'alice@example.com', emailVerified: true, firstName: 'Alice', lastName: 'Liddell',
      createdTimestamp: 1_690_000_000_123, totp: false, attributes: { locale: ['de'], department: ['sales', 'support'] },
      realmRoles: ['app-admin', 'default-roles-rich'], clientRoles: { portal: ['view'] }, groups: ['/staff/admins'], requiredActions: [],
      federatedIdentities: [{ identityProvider: 'google', userId: 'g-1234', userName: 'alice@gmail.example' }],
    });
    const [aliceCredential] = alice.credentials;
    expect(aliceCredential).toMatchObject({ type: 'password', createdDate: 1_700_000_000_000, priority: 10 });
    expect(JSON.parse(aliceCredential.secretData)).toEqual({ value: expect.stringMatching(/^GbcXn5JE/), salt: 'YaIEcNqTNMS4fZ2iUKd/wg==', additionalParameters: {} });
    expect(JSON.parse(aliceCredential.credentialData)).toEqual({ algorithm: 'pbkdf2-sha256', hashIterations: 27500, additionalParameters: {} });
    expect(JSON.parse(byName(first.users, 'username', 'dave').credentials[0].credentialData)).toMatchObject({
      algorithm: 'argon2', hashIterations: 5, additionalParameters: { memory: ['7168'], type: ['id'] },
    });
    const frank = byName(first.users, 'username', 'frank');
    expect(frank).toMatchObject({
      enabled: false, totp: true, notBefore: 1_700_000_000, federationLink: ldap.id, requiredActions: ['CONFIGURE_TOTP'],
      realmRoles: [], clientRoles: { backend: ['read'] }, disableableCredentialTypes: ['otp'],
    });
    expect(frank.credentials).toEqual([
      { id: '00000000-0000-4000-8000-000000000046', type: 'otp', userLabel: 'Phone', createdDate: 1_700_000_100_000, secretData: OTP_SECRET_PLAIN,
        credentialData: expect.any(String), priority: 20 },
      { id: '00000000-0000-4000-8000-000000000047', type: 'otp', userLabel: 'Token', createdDate: 1_700_000_200_000, secretData: OTP_SECRET_BASE32,
        credentialData: expect.any(String), priority: 30 },
    ]);
    expect(JSON.parse(frank.credentials[1].credentialData)).toEqual({ subType: 'hotp', digits: 8, counter: 5, period: 30, algorithm: 'HmacSHA256', secretEncoding: 'BASE32' });
    expect(byName(first.users, 'username', 'service-account-portal')).toMatchObject({ serviceAccountClientId: 'portal', clientRoles: { backend: ['read'] } });

    // The full export through the Admin API creates the realm, users included, in an empty database.
    await target.admin.realms.create(first);
    const second = json(await exportRealm(target.server.store.db, target.server.box, 'rich', { users: true, secrets: 'open' }));
    expect(second).toEqual(first);
  });

  it('keeps secrets sealed in the database it imported into', async () => {
    const db = target.server.store.db;
    const idp = await db.selectFrom('identity_providers').select(['config', 'secrets_sealed']).where('alias', '=', 'google').executeTakeFirstOrThrow();
    expect(idp.config).not.toHaveProperty('clientSecret');
    expect(idp.secrets_sealed).toMatch(/^v1\./);
    const ldap = await db.selectFrom('components').select(['config', 'secrets_sealed']).where('name', '=', 'corp-ldap').executeTakeFirstOrThrow();
    expect(ldap.config).not.toHaveProperty('bindCredential');
    expect(ldap.secrets_sealed).toMatch(/^v1\./);
    const otp = await db.selectFrom('credentials').select('secret_data').where('type', '=', 'otp').execute();
    expect(otp).toHaveLength(2);
    for (const row of otp) {
      expect(row.secret_data).toMatch(/^v1\./);
      expect(row.secret_data).not.toContain('JBSWY3DPEHPK3PXP');
    }
    const links = await db.selectFrom('federated_identities').selectAll().execute();
    expect(links).toEqual([expect.objectContaining({ identity_provider: 'google', external_user_id: 'g-1234', external_username: 'alice@gmail.example' })]);
    const defaults = await db.selectFrom('realm_default_groups').innerJoin('groups', 'groups.id', 'realm_default_groups.group_id').select('groups.name').execute();
    expect(defaults).toEqual([{ name: 'customers' }]);
  });

  it('lets the imported users sign in with their old passwords', async () => {
    const url = target.server.url;
    for (const { username, password, format } of PASSWORD_USERS) {
      const token = await passwordToken(url, 'rich', username, password).catch((error: Error) => `${format}: ${error.message}`);
      expect(token, format).toMatch(/^ey/);
    }
    const wrong = await postForm(`${url}/realms/rich/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'admin-cli', username: 'bob', password: 'nope' });
    expect(wrong.status).toBe(401);
    // The confidential client from the file signs in too, and so does its service account.
    const portal = await postForm(`${url}/realms/rich/protocol/openid-connect/token`, { grant_type: 'password', username: 'carol', password: 'password' }, { authorization: basicAuth('portal', 'portal-secret-value') });
    expect(portal.status).toBe(200);
    const service = await postForm(`${url}/realms/rich/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('portal', 'portal-secret-value') });
    const { access_token: accessToken } = await service.json() as { access_token: string };
    const claims = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString('utf8')) as Json;
    expect(claims).toMatchObject({ preferred_username: 'service-account-portal', azp: 'portal', tenant: 'acme' });
  });

  it('leaves users out unless asked, and masks secrets in a masked export', async () => {
    const db = source.server.store.db;
    const withoutUsers = json(await exportRealm(db, source.server.box, 'rich', { users: false, secrets: 'open' }));
    expect(withoutUsers).not.toHaveProperty('users');
    expect(withoutUsers.clients).toHaveLength(first.clients.length);
    const masked = json(await exportRealm(db, source.server.box, 'rich', { users: true, secrets: 'masked' }));
    expect(byName(masked.clients, 'clientId', 'portal').secret).toBe(SECRET_MASK);
    expect(masked.smtpServer.password).toBe(SECRET_MASK);
    expect(byName(masked.identityProviders, 'alias', 'google').config).toMatchObject({ clientSecret: SECRET_MASK, clientId: 'google-client' });
    expect(masked.components['org.keycloak.storage.UserStorageProvider'][0].config.bindCredential).toEqual([SECRET_MASK]);
    expect(masked.components['org.keycloak.keys.KeyProvider'][0].config.secret).toEqual([SECRET_MASK]);
    for (const user of masked.users) expect(user).not.toHaveProperty('credentials');
    expect(JSON.stringify(masked)).not.toMatch(/portal-secret-value|google-secret|ldap-bind-secret|hmac-key-material|smtp-pass|JBSWY3DPEHPK3PXP/);
    await expect(exportRealm(db, source.server.box, 'no-such-realm', { users: false, secrets: 'open' })).rejects.toBeInstanceOf(RealmNotFoundError);
  });

  it('reads users with a fixed number of statements, however many there are', async () => {
    const { db } = source.server.store;
    const small = await importRealm(db, source.server.box, { realm: 'bulk-small', groups: [{ name: 'g' }], users: [{ username: 'one', groups: ['/g'] }] });
    const big = await importRealm(db, source.server.box, { realm: 'bulk', groups: [{ name: 'g' }] });
    const group = await db.selectFrom('groups').select('id').where('realm_id', '=', big.realmId).executeTakeFirstOrThrow();
    const role = await db.selectFrom('roles').select('id').where('realm_id', '=', big.realmId).where('name', '=', 'default-roles-bulk').executeTakeFirstOrThrow();
    const count = 20_000;
    const { sql } = await import('kysely');
    await sql`INSERT INTO users (id, realm_id, username, email, first_name, attributes)
      SELECT gen_random_uuid(), ${big.realmId}::uuid, 'user' || i, 'user' || i || '@example.com', 'F', '{"a": ["b"]}'::jsonb
      FROM generate_series(1, ${count}) AS i`.execute(db);
    await sql`INSERT INTO user_roles (user_id, role_id) SELECT id, ${role.id}::uuid FROM users WHERE realm_id = ${big.realmId}::uuid`.execute(db);
    await sql`INSERT INTO user_groups (user_id, group_id) SELECT id, ${group.id}::uuid FROM users WHERE realm_id = ${big.realmId}::uuid`.execute(db);
    await sql`INSERT INTO credentials (id, realm_id, user_id, type, secret_data, credential_data)
      SELECT gen_random_uuid(), ${big.realmId}::uuid, id, 'password', '{"value":"x","salt":"y"}', '{"algorithm":"argon2","hashIterations":2}'::jsonb
      FROM users WHERE realm_id = ${big.realmId}::uuid`.execute(db);

    const few = counting(db);
    await exportRealm(few.db, source.server.box, 'bulk-small', { users: true, secrets: 'open' });
    const many = counting(db);
    const started = Date.now();
    const rep = json(await exportRealm(many.db, source.server.box, 'bulk', { users: true, secrets: 'open' }));
    const elapsed = Date.now() - started;
    expect(rep.users).toHaveLength(count);
    expect(rep.users[0]).toMatchObject({ realmRoles: ['default-roles-bulk'], groups: ['/g'], credentials: [expect.objectContaining({ type: 'password' })] });
    expect(many.count()).toBe(few.count());
    expect(many.count()).toBeLessThan(30);
    expect(elapsed).toBeLessThan(20_000);
    expect(small.realm).toBe('bulk-small');
  }, 60_000);
});

describe('realm import', () => {
  const post = (body: unknown): Promise<Response> => source.api('', { method: 'POST', body: JSON.stringify(body) });
  const refused = async (body: unknown, message: RegExp): Promise<void> => {
    const response = await post(body);
    const text = await response.text();
    expect(response.status, text).toBe(400);
    expect((JSON.parse(text) as { errorMessage: string }).errorMessage).toMatch(message);
  };

  it('refuses references to things that do not exist, and unusable credentials, creating nothing', async () => {
    await refused({ realm: 'bad1', defaultGroups: ['/nope'] }, /default group "\/nope" does not exist/);
    await refused({ realm: 'bad2', identityProviderMappers: [{ name: 'm', identityProviderAlias: 'ghost', identityProviderMapper: 'x' }] }, /identity provider "ghost" does not exist/);
    await refused({ realm: 'bad3', users: [{ username: 'u', credentials: [{ type: 'password', secretData: '{"salt":"x"}', credentialData: '{"algorithm":"pbkdf2"}' }] }] }, /user "u": password credential: .*value/);
    await refused({ realm: 'bad4', users: [{ username: 'u', credentials: [{ type: 'otp', secretData: 'not json', credentialData: '{"subType":"totp"}' }] }] }, /user "u": otp credential: secretData is not valid JSON/);
    await refused({ realm: 'bad5', users: [{ username: 'u', credentials: [{ type: 'otp', secretData: '{"value":"abc"}', credentialData: '{"subType":"sms"}' }] }] }, /subType/);
    await refused({ realm: 'bad6', components: { 'org.keycloak.keys.KeyProvider': [{ name: 'no provider id' }] } }, /components/);
    await refused({ realm: 'bad7', users: [{ username: 'twin' }, { username: 'TWIN' }] }, /"TWIN" is listed twice/);
    for (const realm of ['bad1', 'bad2', 'bad3', 'bad4', 'bad5', 'bad6', 'bad7']) {
      expect(await source.server.store.db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirst()).toBeUndefined();
    }
    await expect(importRealm(source.server.store.db, source.server.box, { realm: 'bad8', identityProviders: [{ alias: 'x' }] })).rejects.toBeInstanceOf(ImportError);
  });

  it('turns a plain value into a password (whatever the type) and a temporary one into UPDATE_PASSWORD', async () => {
    await source.server.importRealm({
      realm: 'plain', users: [
        { username: 'tmp', credentials: [{ type: 'password', value: 'Temp-Pass-1', temporary: true }] },
        { username: 'kept', credentials: [{ type: 'otp', value: 'Otp-Typed-1' }] },
      ],
    });
    const rep = json(await exportRealm(source.server.store.db, source.server.box, 'plain', { users: true, secrets: 'open' }));
    expect(byName(rep.users, 'username', 'tmp')).toMatchObject({ requiredActions: ['UPDATE_PASSWORD'], realmRoles: ['default-roles-plain'] });
    expect(byName(rep.users, 'username', 'kept').credentials).toEqual([expect.objectContaining({ type: 'password' })]);
    expect(await passwordToken(source.server.url, 'plain', 'kept', 'Otp-Typed-1')).toMatch(/^ey/);
  });
});
