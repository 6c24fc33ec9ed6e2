import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSecrets } from '../../../src/store/sealed-config.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
let metadataServer: http.Server;
let metadataUrl: string;
const PASSWORD = 'Secret-pw-1';

const SAML_METADATA = `<?xml version="1.0" encoding="UTF-8"?>
<!-- an IdP's metadata -->
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/saml">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>
        MIIBCERT
        AAAA
      </ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/slo"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso/redirect"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.com/sso/post"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>`;

beforeAll(async () => {
  bench = await startAdminBench();
  metadataServer = http.createServer((req, res) => {
    if (req.url === '/saml') {
      res.setHeader('content-type', 'application/xml');
      res.end(SAML_METADATA);
    } else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((resolve) => metadataServer.listen(0, '127.0.0.1', resolve));
  metadataUrl = `http://127.0.0.1:${(metadataServer.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await new Promise((resolve) => metadataServer?.close(resolve));
  await bench?.stop();
});

const oidcConfig = (extra: Record<string, string> = {}) => ({
  clientId: 'cloakroom', clientSecret: 's3cret', authorizationUrl: 'https://idp.example.com/auth', tokenUrl: 'https://idp.example.com/token', ...extra,
});

/** A realm (imported, so these tests do not depend on the users API) with admins holding the given realm-management roles. */
async function realmWith(realm: string, admins: Record<string, string[]> = {}): Promise<Record<string, string>> {
  await bench.server.importRealm({
    realm, enabled: true,
    users: Object.entries(admins).map(([username, roles]) => ({
      username, enabled: true, credentials: [{ type: 'password', value: PASSWORD }],
      ...(roles.length > 0 ? { clientRoles: { 'realm-management': roles } } : {}),
    })),
  });
  const tokens: Record<string, string> = {};
  for (const username of Object.keys(admins)) tokens[username] = await passwordToken(bench.server.url, realm, username, PASSWORD);
  return tokens;
}

async function json(response: Response): Promise<Record<string, unknown>> {
  const text = await response.text();
  return response.headers.get('content-type')?.includes('json') ? JSON.parse(text) as Record<string, unknown> : {};
}

describe('identity provider instances', () => {
  it('creates, reads, lists, updates and deletes an OIDC provider with its secret masked', async () => {
    await realmWith('idp-crud');
    const { admin } = bench;
    const realm = 'idp-crud';
    const createdIdp = await admin.identityProviders.create({
      realm, alias: 'corp', providerId: 'oidc', displayName: 'Corp SSO', trustEmail: true, config: oidcConfig({ syncMode: 'IMPORT' }),
      firstBrokerLoginFlowAlias: 'first broker login', updateProfileFirstLoginMode: 'on',
    } as never);
    expect(createdIdp.id).toBe('corp');
    const idp = await admin.identityProviders.findOne({ realm, alias: 'corp' });
    expect(idp).toMatchObject({
      alias: 'corp', providerId: 'oidc', displayName: 'Corp SSO', enabled: true, trustEmail: true, storeToken: false, linkOnly: false,
      hideOnLogin: false, firstBrokerLoginFlowAlias: 'first broker login', updateProfileFirstLoginMode: 'on',
      config: { clientId: 'cloakroom', clientSecret: '**********', syncMode: 'IMPORT', authorizationUrl: 'https://idp.example.com/auth' },
    });
    expect(idp!.internalId).toMatch(/^[0-9a-f-]{36}$/);
    // The internal id finds it too (Keycloak's getByIdOrAlias).
    expect((await admin.identityProviders.findOne({ realm, alias: idp!.internalId! }))?.alias).toBe('corp');

    // A PUT sending the mask back keeps the stored secret; a new value replaces it.
    await admin.identityProviders.update({ realm, alias: 'corp' }, { ...idp, displayName: 'Corp', config: { ...idp!.config, clientSecret: '**********', prompt: 'login' } });
    const stored = async (): Promise<Record<string, string>> => {
      const row = await bench.server.store.db.selectFrom('identity_providers').select('secrets_sealed').where('internal_id', '=', idp!.internalId!).executeTakeFirstOrThrow();
      return openSecrets<string>(bench.server.box, row.secrets_sealed);
    };
    expect(await stored()).toEqual({ clientSecret: 's3cret' });
    expect(await admin.identityProviders.findOne({ realm, alias: 'corp' })).toMatchObject({ displayName: 'Corp', config: { prompt: 'login', clientSecret: '**********' } });
    await admin.identityProviders.update({ realm, alias: 'corp' }, { ...idp, config: { ...idp!.config, clientSecret: 'rotated' } });
    expect(await stored()).toEqual({ clientSecret: 'rotated' });

    const list = await admin.identityProviders.find({ realm });
    expect(list.map((i) => i.alias)).toEqual(['corp']);
    expect(list[0]!.config!.clientSecret).toBe('**********');
    await admin.identityProviders.del({ realm, alias: 'corp' });
    expect(await admin.identityProviders.findOne({ realm, alias: 'corp' })).toBeNull();
  });

  it('searches by prefix, infix (*x*) and exact ("x") on alias and display name, with paging and brief representations', async () => {
    await realmWith('idp-search');
    const realm = 'idp-search';
    for (const [alias, displayName] of [['google-corp', 'Google'], ['corp-azure', 'Azure AD'], ['github', 'GitHub'], ['corp', 'Main']]) {
      await bench.admin.identityProviders.create({ realm, alias, displayName, providerId: 'oidc', config: oidcConfig() });
    }
    const aliases = async (query: Record<string, string | number | boolean>): Promise<string[]> =>
      (await bench.admin.identityProviders.find({ realm, ...query } as never)).map((i) => i.alias!);
    expect(await aliases({})).toEqual(['corp', 'corp-azure', 'github', 'google-corp']);
    expect(await aliases({ search: 'corp' })).toEqual(['corp', 'corp-azure']);
    expect(await aliases({ search: 'CORP' })).toEqual(['corp', 'corp-azure']);
    expect(await aliases({ search: '*corp*' })).toEqual(['corp', 'corp-azure', 'google-corp']);
    expect(await aliases({ search: '"corp"' })).toEqual(['corp']);
    expect(await aliases({ search: 'azure' })).toEqual(['corp-azure']); // display name "Azure AD"
    expect(await aliases({ first: 1, max: 2 })).toEqual(['corp-azure', 'github']);
    const brief = await bench.admin.identityProviders.find({ realm, search: 'github', briefRepresentation: true } as never);
    expect(brief[0]).toMatchObject({ alias: 'github', providerId: 'oidc', displayName: 'GitHub', enabled: true, config: {} });
  });

  it('answers 409 with Keycloak\'s message for a duplicate alias', async () => {
    await realmWith('idp-dup');
    await bench.admin.identityProviders.create({ realm: 'idp-dup', alias: 'corp', providerId: 'oidc', config: oidcConfig() });
    const response = await bench.api('/idp-dup/identity-provider/instances', { method: 'POST', body: JSON.stringify({ alias: 'corp', providerId: 'oidc', config: oidcConfig() }) });
    expect(response.status).toBe(409);
    expect(await json(response)).toEqual({ errorMessage: 'Identity Provider corp already exists' });
  });

  it('answers 400 for invalid aliases, provider ids, configs and field types', async () => {
    await realmWith('idp-invalid');
    const post = async (body: unknown): Promise<[number, string]> => {
      const response = await bench.api('/idp-invalid/identity-provider/instances', { method: 'POST', body: JSON.stringify(body) });
      const payload = await json(response);
      return [response.status, String(payload.errorMessage)];
    };
    expect(await post({ providerId: 'oidc', config: oidcConfig() })).toEqual([400, 'Identity Provider alias is required']);
    expect(await post({ alias: 'has space', providerId: 'oidc', config: oidcConfig() })).toEqual([400, 'Empty Space not allowed.']);
    expect(await post({ alias: 'a/b', providerId: 'oidc', config: oidcConfig() })).toEqual([400, "Character '/' not allowed."]);
    expect(await post({ alias: 'x', providerId: 'ldap', config: oidcConfig() })).toEqual([400, 'Invalid identity provider id [ldap]']);
    expect(await post({ alias: 'x', config: oidcConfig() })).toEqual([400, 'Invalid identity provider id [null]']);
    expect((await post({ alias: 'x', providerId: 'oidc', config: { authorizationUrl: 'https://a.example.com', tokenUrl: 'https://a.example.com/t' } }))[1]).toContain('clientId');
    expect((await post({ alias: 'x', providerId: 'oidc', config: { clientId: 'c' } }))[1]).toContain('authorizationUrl and tokenUrl');
    expect((await post({ alias: 'x', providerId: 'oauth2', config: { clientId: 'c', issuer: 'https://a.example.com' } }))[1]).toContain('authorizationUrl and tokenUrl');
    expect(await post({ alias: 'x', providerId: 'oidc', config: oidcConfig({ tokenUrl: 'http://idp.example.com/token' }) })).toEqual([400, 'The url [token_url] requires secure connections']);
    expect(await post({ alias: 'x', providerId: 'oidc', config: oidcConfig({ userInfoUrl: 'not a url' }) })).toEqual([400, 'The url [userinfo_url] is malformed']);
    expect(await post({ alias: 'x', providerId: 'oidc', config: oidcConfig({ pkceEnabled: 'true', pkceMethod: 'S512' }) })).toEqual([400, 'PKCE Method not supported: S512']);
    expect((await post({ alias: 'x', providerId: 'saml', config: {} }))[1]).toContain('singleSignOnServiceUrl');
    expect(await post({ alias: 'x', providerId: 'saml', config: { useMetadataDescriptorUrl: 'true', singleSignOnServiceUrl: 'https://a.example.com/sso' } }))
      .toEqual([400, 'useMetadataDescriptorUrl needs a non-empty URL for metadataDescriptorUrl']);
    expect(await post({ alias: 'x', providerId: 'oidc', firstBrokerLoginFlowAlias: 'nope', config: oidcConfig() })).toEqual([400, 'No available authentication flow with alias: nope']);
    const [status, message] = await post({ alias: 'x', providerId: 'oidc', enabled: 'yes', config: oidcConfig() });
    expect(status).toBe(400);
    expect(message).toContain('enabled');
    const [status2, message2] = await post({ alias: 'x', providerId: 'oidc', config: { ...oidcConfig(), scopes: ['openid'] } });
    expect(status2).toBe(400);
    expect(message2).toContain('config.scopes');
    // Local http URLs are fine under sslRequired=external; scalars become strings as Keycloak's Jackson does.
    expect((await post({ alias: 'local', providerId: 'keycloak-oidc', config: { clientId: 'c', issuer: 'http://localhost:8080/realms/x', validateSignature: true, allowedClockSkew: 5 } }))[0]).toBe(201);
    expect((await bench.admin.identityProviders.findOne({ realm: 'idp-invalid', alias: 'local' }))?.config).toEqual({
      clientId: 'c', issuer: 'http://localhost:8080/realms/x', validateSignature: 'true', allowedClockSkew: '5',
    });
  });

  it('answers 404 for unknown providers and mappers, also for malformed ids', async () => {
    await realmWith('idp-404');
    const path = '/idp-404/identity-provider/instances';
    expect((await bench.api(`${path}/nope`)).status).toBe(404);
    expect((await bench.api(`${path}/nope`, { method: 'PUT', body: JSON.stringify({ alias: 'nope', providerId: 'oidc', config: oidcConfig() }) })).status).toBe(404);
    expect((await bench.api(`${path}/nope`, { method: 'DELETE' })).status).toBe(404);
    expect((await bench.api(`${path}/nope/mappers`)).status).toBe(404);
    expect((await bench.api(`${path}/nope/mapper-types`)).status).toBe(404);
    await bench.admin.identityProviders.create({ realm: 'idp-404', alias: 'corp', providerId: 'oidc', config: oidcConfig() });
    expect((await bench.api(`${path}/corp/mappers/not-a-uuid`)).status).toBe(404);
    expect((await bench.api(`${path}/corp/mappers/00000000-0000-4000-8000-000000000000`)).status).toBe(404);
    expect((await bench.api(`${path}/corp/mappers/00000000-0000-4000-8000-000000000000`, { method: 'DELETE' })).status).toBe(404);
    expect((await bench.api('/no-such-realm/identity-provider/instances')).status).toBe(404);
  });

  it('renames through PUT: mappers and users\' links follow; delete removes mappers and links', async () => {
    await realmWith('idp-rename', { linked: [] });
    const realm = 'idp-rename';
    const db = bench.server.store.db;
    await bench.admin.identityProviders.create({ realm, alias: 'old', providerId: 'oidc', config: oidcConfig() });
    const { id: mapperId } = await bench.admin.identityProviders.createMapper({
      realm, alias: 'old', identityProviderMapper: { name: 'email', identityProviderMapper: 'oidc-user-attribute-idp-mapper', config: { claim: 'email', 'user.attribute': 'email' } },
    });
    const realmRow = await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow();
    const user = await db.selectFrom('users').select('id').where('realm_id', '=', realmRow.id).where('username', '=', 'linked').executeTakeFirstOrThrow();
    await db.insertInto('federated_identities').values({ realm_id: realmRow.id, user_id: user.id, identity_provider: 'old', external_user_id: 'ext-1', external_username: 'ext', token_sealed: null }).execute();
    const links = () => db.selectFrom('federated_identities').select('identity_provider').where('user_id', '=', user.id).execute();

    const current = await bench.admin.identityProviders.findOne({ realm, alias: 'old' });
    await bench.admin.identityProviders.update({ realm, alias: 'old' }, { ...current, alias: 'new' });
    expect(await bench.admin.identityProviders.findOne({ realm, alias: 'old' })).toBeNull();
    expect(await bench.admin.identityProviders.findOne({ realm, alias: 'new' })).toMatchObject({ alias: 'new', internalId: current!.internalId });
    expect(await bench.admin.identityProviders.findMappers({ realm, alias: 'new' })).toEqual([
      { id: mapperId, name: 'email', identityProviderAlias: 'new', identityProviderMapper: 'oidc-user-attribute-idp-mapper', config: { claim: 'email', 'user.attribute': 'email' } },
    ]);
    expect(await links()).toEqual([{ identity_provider: 'new' }]);

    // Renaming onto another provider's alias is a conflict; a bad alias is refused.
    await bench.admin.identityProviders.create({ realm, alias: 'other', providerId: 'oidc', config: oidcConfig() });
    const clash = await bench.api(`/${realm}/identity-provider/instances/new`, { method: 'PUT', body: JSON.stringify({ ...current, alias: 'other' }) });
    expect(clash.status).toBe(409);
    expect(await json(clash)).toEqual({ errorMessage: 'Identity Provider other already exists' });
    expect((await bench.api(`/${realm}/identity-provider/instances/new`, { method: 'PUT', body: JSON.stringify({ ...current, alias: 'a b' }) })).status).toBe(400);

    await bench.admin.identityProviders.del({ realm, alias: 'new' });
    expect(await links()).toEqual([]);
    expect(await db.selectFrom('identity_provider_mappers').select('id').where('id', '=', mapperId).execute()).toEqual([]);
  });
});

describe('identity provider mappers', () => {
  it('lists the mapper types each provider offers', async () => {
    await realmWith('idp-types');
    const realm = 'idp-types';
    await bench.admin.identityProviders.create({ realm, alias: 'oidc', providerId: 'oidc', config: oidcConfig() });
    await bench.admin.identityProviders.create({ realm, alias: 'saml', providerId: 'saml', config: { singleSignOnServiceUrl: 'https://idp.example.com/sso' } });
    const oidc = await (await bench.api(`/${realm}/identity-provider/instances/oidc/mapper-types`)).json() as Record<string, { id: string; category: string; properties: { name: string }[] }>;
    expect(Object.keys(oidc)).toEqual(expect.arrayContaining([
      'oidc-hardcoded-role-idp-mapper', 'hardcoded-attribute-idp-mapper', 'oidc-user-attribute-idp-mapper', 'oidc-role-idp-mapper',
      'oidc-username-idp-mapper', 'oidc-advanced-group-idp-mapper', 'oidc-advanced-role-idp-mapper',
    ]));
    expect(oidc).not.toHaveProperty('saml-user-attribute-idp-mapper');
    expect(oidc).not.toHaveProperty('keycloak-oidc-role-to-role-idp-mapper');
    expect(oidc['oidc-user-attribute-idp-mapper']).toMatchObject({ id: 'oidc-user-attribute-idp-mapper', name: 'Attribute Importer', category: 'Attribute Importer' });
    expect(oidc['oidc-user-attribute-idp-mapper']!.properties.map((p) => p.name)).toEqual(['claim', 'user.attribute']);
    const saml = await (await bench.api(`/${realm}/identity-provider/instances/saml/mapper-types`)).json() as Record<string, unknown>;
    expect(Object.keys(saml)).toEqual(expect.arrayContaining(['saml-user-attribute-idp-mapper', 'saml-role-idp-mapper', 'saml-username-idp-mapper', 'oidc-hardcoded-role-idp-mapper']));
    expect(saml).not.toHaveProperty('oidc-user-attribute-idp-mapper');
  });

  it('creates, reads, updates and deletes mappers; refuses duplicates and foreign types', async () => {
    await realmWith('idp-mappers');
    const realm = 'idp-mappers';
    const alias = 'corp';
    await bench.admin.identityProviders.create({ realm, alias, providerId: 'keycloak-oidc', config: oidcConfig() });
    const response = await bench.api(`/${realm}/identity-provider/instances/${alias}/mappers`, {
      method: 'POST', body: JSON.stringify({ name: 'role', identityProviderAlias: alias, identityProviderMapper: 'keycloak-oidc-role-to-role-idp-mapper', config: { 'external.role': 'admin', role: 'admin', syncMode: 'FORCE' } }),
    });
    expect(response.status).toBe(201);
    const id = response.headers.get('location')!.split('/').pop()!;
    expect(response.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/identity-provider/instances/${alias}/mappers/${id}`);
    expect(await bench.admin.identityProviders.findOneMapper({ realm, alias, id })).toEqual({
      id, name: 'role', identityProviderAlias: alias, identityProviderMapper: 'keycloak-oidc-role-to-role-idp-mapper',
      config: { 'external.role': 'admin', role: 'admin', syncMode: 'FORCE' },
    });

    const post = (body: unknown) => bench.api(`/${realm}/identity-provider/instances/${alias}/mappers`, { method: 'POST', body: JSON.stringify(body) });
    const duplicate = await post({ name: 'role', identityProviderMapper: 'oidc-role-idp-mapper', config: {} });
    expect(duplicate.status).toBe(400);
    expect(await json(duplicate)).toEqual({ errorMessage: "Failed to add mapper 'role' to identity provider [keycloak-oidc]." });
    expect((await post({ name: 'saml', identityProviderMapper: 'saml-role-idp-mapper', config: {} })).status).toBe(400);
    expect((await post({ name: 'nameless-type', config: {} })).status).toBe(400);
    expect((await post({ identityProviderMapper: 'oidc-role-idp-mapper' })).status).toBe(400);
    expect((await post({ name: 'bad', identityProviderMapper: 'oidc-role-idp-mapper', config: { role: { nested: true } } })).status).toBe(400);

    await bench.admin.identityProviders.updateMapper({ realm, alias, id }, { id, name: 'role2', identityProviderAlias: alias, identityProviderMapper: 'oidc-role-idp-mapper', config: { claim: 'groups', 'claim.value': 'admins', role: 'admin' } });
    expect(await bench.admin.identityProviders.findOneMapper({ realm, alias, id })).toMatchObject({ name: 'role2', identityProviderMapper: 'oidc-role-idp-mapper', config: { claim: 'groups', 'claim.value': 'admins', role: 'admin' } });
    const { id: second } = await bench.admin.identityProviders.createMapper({ realm, alias, identityProviderMapper: { name: 'hardcoded', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'source', 'attribute.value': 'corp' } } });
    const rename = await bench.api(`/${realm}/identity-provider/instances/${alias}/mappers/${second}`, { method: 'PUT', body: JSON.stringify({ name: 'role2', identityProviderMapper: 'hardcoded-attribute-idp-mapper' }) });
    expect(rename.status).toBe(400);
    expect((await bench.admin.identityProviders.findMappers({ realm, alias })).map((m) => m.name).sort()).toEqual(['hardcoded', 'role2']);
    await bench.admin.identityProviders.delMapper({ realm, alias, id });
    expect(await bench.admin.identityProviders.findOneMapper({ realm, alias, id })).toBeNull();
  });
});

describe('import-config', () => {
  it('derives the config from an OIDC discovery document', async () => {
    await realmWith('idp-import');
    const fromUrl = `${bench.server.url}/realms/master/.well-known/openid-configuration`;
    const response = await bench.api('/idp-import/identity-provider/import-config', { method: 'POST', body: JSON.stringify({ providerId: 'oidc', fromUrl }) });
    expect(response.status).toBe(200);
    const issuer = `${bench.server.url}/realms/master`;
    expect(await response.json()).toMatchObject({
      issuer, authorizationUrl: `${issuer}/protocol/openid-connect/auth`, tokenUrl: `${issuer}/protocol/openid-connect/token`,
      userInfoUrl: `${issuer}/protocol/openid-connect/userinfo`, logoutUrl: `${issuer}/protocol/openid-connect/logout`,
      jwksUrl: `${issuer}/protocol/openid-connect/certs`, validateSignature: 'true', useJwksUrl: 'true', metadataDescriptorUrl: fromUrl,
    });
  });

  it('derives the config from SAML metadata', async () => {
    await realmWith('idp-import-saml');
    const response = await bench.api('/idp-import-saml/identity-provider/import-config', { method: 'POST', body: JSON.stringify({ providerId: 'saml', fromUrl: `${metadataUrl}/saml` }) });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      idpEntityId: 'https://idp.example.com/saml', singleSignOnServiceUrl: 'https://idp.example.com/sso/post',
      singleLogoutServiceUrl: 'https://idp.example.com/slo', signingCertificate: 'MIIBCERTAAAA', wantAuthnRequestsSigned: 'true',
      validateSignature: 'true', postBindingAuthnRequest: 'true', postBindingResponse: 'true', postBindingLogout: 'false',
      nameIDPolicyFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress', metadataDescriptorUrl: `${metadataUrl}/saml`,
    });
  });

  it('answers 400 when the document cannot be fetched or is not a discovery document', async () => {
    await realmWith('idp-import-bad');
    const post = (body: unknown) => bench.api('/idp-import-bad/identity-provider/import-config', { method: 'POST', body: JSON.stringify(body) });
    expect((await post({ providerId: 'oidc', fromUrl: 'http://127.0.0.1:1/.well-known/openid-configuration' })).status).toBe(400);
    expect((await post({ providerId: 'oidc', fromUrl: `${metadataUrl}/missing` })).status).toBe(400);
    expect((await post({ providerId: 'oidc', fromUrl: `${bench.server.url}/realms/master` })).status).toBe(400);
    expect((await post({ providerId: 'oidc', fromUrl: `${metadataUrl}/saml` })).status).toBe(400);
    expect((await post({ providerId: 'saml', fromUrl: `${bench.server.url}/realms/master/.well-known/openid-configuration` })).status).toBe(400);
    expect((await post({ providerId: 'oidc' })).status).toBe(400);
    expect((await post({ providerId: 'oidc', fromUrl: 'file:///etc/passwd' })).status).toBe(400);
    expect((await post({ providerId: 'nope', fromUrl: `${metadataUrl}/saml` })).status).toBe(400);
  });
});

describe('identity provider permissions', () => {
  it('lets view-identity-providers read, manage-identity-providers write, and refuses others', async () => {
    const realm = 'idp-perms';
    const tokens = await realmWith(realm, { viewer: ['view-identity-providers'], manager: ['manage-identity-providers'], nobody: [], realmViewer: ['view-realm'] });
    const other = await realmWith('idp-perms-other', { otherAdmin: ['realm-admin'] });
    await bench.admin.identityProviders.create({ realm, alias: 'corp', providerId: 'oidc', config: oidcConfig() });
    const { id: mapperId } = await bench.admin.identityProviders.createMapper({ realm, alias: 'corp', identityProviderMapper: { name: 'm', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: {} } });
    const base = `/${realm}/identity-provider`;
    const reads = [`${base}/instances`, `${base}/instances/corp`, `${base}/instances/corp/mappers`, `${base}/instances/corp/mappers/${mapperId}`, `${base}/instances/corp/mapper-types`];
    const writes: [string, string, unknown?][] = [
      ['POST', `${base}/instances`, { alias: 'new', providerId: 'oidc', config: oidcConfig() }],
      ['PUT', `${base}/instances/corp`, { alias: 'corp', providerId: 'oidc', config: oidcConfig() }],
      ['POST', `${base}/instances/corp/mappers`, { name: 'n', identityProviderMapper: 'hardcoded-attribute-idp-mapper' }],
      ['PUT', `${base}/instances/corp/mappers/${mapperId}`, { name: 'm', identityProviderMapper: 'hardcoded-attribute-idp-mapper' }],
      ['POST', `${base}/import-config`, { providerId: 'oidc', fromUrl: `${bench.server.url}/realms/master/.well-known/openid-configuration` }],
      ['DELETE', `${base}/instances/corp/mappers/${mapperId}`],
      ['DELETE', `${base}/instances/corp`],
    ];
    const status = async (token: string, method: string, path: string, body?: unknown): Promise<number> =>
      (await bench.api(path, { method, token, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })).status;

    for (const path of reads) {
      expect(await status(tokens.viewer!, 'GET', path), path).toBe(200);
      expect(await status(tokens.manager!, 'GET', path), path).toBe(200);
      for (const refused of [tokens.nobody!, tokens.realmViewer!, other.otherAdmin!]) expect(await status(refused, 'GET', path), path).toBe(403);
    }
    for (const [method, path, body] of writes) {
      for (const refused of [tokens.viewer!, tokens.nobody!, other.otherAdmin!]) expect(await status(refused, method, path, body), `${method} ${path}`).toBe(403);
    }
    // Nothing changed; then the manager can do all of it.
    expect((await bench.admin.identityProviders.find({ realm })).map((i) => i.alias)).toEqual(['corp']);
    for (const [method, path, body] of writes) expect(await status(tokens.manager!, method, path, body), `${method} ${path}`).toBeLessThan(300);
  });
});
