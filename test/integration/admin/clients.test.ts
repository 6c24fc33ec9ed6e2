// Admin REST API: clients, driven by the official @keycloak/keycloak-admin-client and raw fetches
// against a real server; token effects checked at the real token endpoint.
import crypto from 'node:crypto';

import type KcAdminClient from '@keycloak/keycloak-admin-client';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { basicAuth, postForm } from '../../support/server.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

const PASSWORD = 'Passw0rd-for-tests';
let realmCount = 0;
/** A new realm (from a representation: roles, users, clients) with a unique name. */
async function newRealm(rep: Record<string, unknown> = {}): Promise<string> {
  const realm = `clients-${++realmCount}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.admin.realms.create({ realm, enabled: true, ...rep });
  return realm;
}

const tokenUrl = (realm: string) => `${bench.server.url}/realms/${realm}/protocol/openid-connect/token`;

async function clientCredentials(realm: string, clientId: string, secret: string): Promise<Response> {
  return postForm(tokenUrl(realm), { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) });
}

async function accessClaims(response: Response): Promise<Record<string, unknown>> {
  const body = await response.json() as { access_token?: string };
  expect(body.access_token, JSON.stringify(body)).toBeTypeOf('string');
  return decodeJwt(body.access_token!) as Record<string, unknown>;
}

/** A user holding realm-management roles in `realm`, created by realm import, logged in. */
function adminUser(username: string, roles: string[]) {
  return {
    username, enabled: true, credentials: [{ type: 'password', value: PASSWORD, temporary: false }],
    clientRoles: { 'realm-management': roles },
  };
}

const api = (path: string, init?: RequestInit & { token?: string }) => bench.api(path, init);

describe('create and read', () => {
  it('round-trips a client with every field', async () => {
    const realm = await newRealm();
    const sent = {
      clientId: 'full-app', name: 'Full App', description: 'Every field', rootUrl: 'https://app.example.com',
      adminUrl: 'https://app.example.com/admin', baseUrl: '/home', surrogateAuthRequired: true, enabled: true,
      alwaysDisplayInConsole: true, clientAuthenticatorType: 'client-secret', secret: 'full-app-secret-0123456789',
      redirectUris: ['https://app.example.com/cb', '/relative/*'], webOrigins: ['https://app.example.com'], notBefore: 0,
      bearerOnly: false, consentRequired: true, standardFlowEnabled: true, implicitFlowEnabled: true,
      directAccessGrantsEnabled: true, serviceAccountsEnabled: true, publicClient: false, frontchannelLogout: true,
      protocol: 'openid-connect',
      attributes: {
        'pkce.code.challenge.method': 'S256', 'post.logout.redirect.uris': '+',
        'backchannel.logout.session.required': 'false', 'backchannel.logout.revoke.offline.tokens': 'true',
      },
      authenticationFlowBindingOverrides: {}, fullScopeAllowed: false, nodeReRegistrationTimeout: 60,
      defaultClientScopes: ['email', 'profile'], optionalClientScopes: ['phone'],
      protocolMappers: [{
        name: 'tenant', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper',
        config: { 'claim.name': 'tenant', 'claim.value': 'acme', 'jsonType.label': 'String', 'access.token.claim': 'true' },
      }],
      // A field Cloakroom does not interpret is kept as it was sent.
      authorizationServicesEnabled: false,
    };
    const { id } = await bench.admin.clients.create({ realm, ...sent });
    const got = await bench.admin.clients.findOne({ realm, id });
    expect(got).toEqual({
      ...sent, id,
      // Server-filled: the service_account scope of a client with a service account, mapper ids, access.
      defaultClientScopes: ['email', 'profile', 'service_account'],
      protocolMappers: [{ ...sent.protocolMappers[0], id: expect.any(String) }],
      access: { view: true, configure: true, manage: true },
    });

    // What you PUT is what you GET.
    const changed = { ...got!, name: 'Renamed', redirectUris: ['https://app.example.com/other'], attributes: { ...got!.attributes, extra: 'x' }, notBefore: 7 };
    await bench.admin.clients.update({ realm, id }, changed);
    expect(await bench.admin.clients.findOne({ realm, id })).toEqual(changed);
  });

  it('applies Keycloak defaults: confidential without protocol, public OIDC with it', async () => {
    const realm = await newRealm();
    const { id: plainId } = await bench.admin.clients.create({ realm, clientId: 'plain' });
    const plain = await bench.admin.clients.findOne({ realm, id: plainId });
    expect(plain).toMatchObject({
      clientId: 'plain', enabled: true, publicClient: false, bearerOnly: false, standardFlowEnabled: true,
      directAccessGrantsEnabled: false, implicitFlowEnabled: false, serviceAccountsEnabled: false, fullScopeAllowed: true,
      frontchannelLogout: false, protocol: 'openid-connect', clientAuthenticatorType: 'client-secret', redirectUris: [], webOrigins: [],
      nodeReRegistrationTimeout: -1, notBefore: 0, surrogateAuthRequired: false, alwaysDisplayInConsole: false,
    });
    expect(plain!.secret).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(plain!.attributes!['client.secret.creation.time']).toMatch(/^\d+$/);
    // The realm's default and optional client scopes.
    expect(plain!.defaultClientScopes).toEqual(['acr', 'basic', 'email', 'profile', 'roles', 'web-origins']);
    expect(plain!.optionalClientScopes).toEqual(['address', 'microprofile-jwt', 'offline_access', 'phone']);
    expect(plain!.protocolMappers).toBeUndefined();

    const { id: spaId } = await bench.admin.clients.create({ realm, clientId: 'spa', protocol: 'openid-connect', rootUrl: 'https://spa.example.com' });
    const spa = await bench.admin.clients.findOne({ realm, id: spaId });
    expect(spa).toMatchObject({
      publicClient: true, directAccessGrantsEnabled: true, frontchannelLogout: false, adminUrl: 'https://spa.example.com',
      redirectUris: ['https://spa.example.com/*'], webOrigins: ['https://spa.example.com'],
      attributes: { 'backchannel.logout.session.required': 'true', 'backchannel.logout.revoke.offline.tokens': 'false' },
    });
    expect(spa!.secret).toBeUndefined();

    // Web origins follow the redirect URIs when none are given; only the named scopes are linked.
    const { id: webId } = await bench.admin.clients.create({
      realm, clientId: 'web', redirectUris: ['https://web.example.com:8443/cb', 'http://localhost:3000/*'], defaultClientScopes: ['profile'],
    });
    const web = await bench.admin.clients.findOne({ realm, id: webId });
    expect(web!.webOrigins!.sort()).toEqual(['http://localhost:3000', 'https://web.example.com:8443']);
    expect(web).toMatchObject({ defaultClientScopes: ['profile'], optionalClientScopes: [] });
  });

  it('finds clients by exact clientId, by search, by attribute, and pages', async () => {
    const realm = await newRealm();
    for (const clientId of ['shop-api', 'shop-web', 'billing']) {
      await bench.admin.clients.create({ realm, clientId, attributes: { team: clientId.startsWith('shop') ? 'shop' : 'finance' } });
    }
    expect((await bench.admin.clients.find({ realm, clientId: 'shop-api' })).map((c) => c.clientId)).toEqual(['shop-api']);
    expect(await bench.admin.clients.find({ realm, clientId: 'shop' })).toEqual([]);
    expect((await bench.admin.clients.find({ realm, clientId: 'SHOP', search: true })).map((c) => c.clientId)).toEqual(['shop-api', 'shop-web']);
    const byAttribute = await (await api(`/${realm}/clients?q=${encodeURIComponent('team:finance')}`)).json() as Array<{ clientId: string }>;
    expect(byAttribute.map((c) => c.clientId)).toEqual(['billing']);
    const all = await bench.admin.clients.find({ realm });
    expect(all.map((c) => c.clientId)).toEqual([...all.map((c) => c.clientId)].sort());
    expect(all.map((c) => c.clientId)).toEqual(expect.arrayContaining(['account', 'admin-cli', 'realm-management', 'billing']));
    const page = await bench.admin.clients.find({ realm, first: 1, max: 2 });
    expect(page.map((c) => c.clientId)).toEqual(all.slice(1, 3).map((c) => c.clientId));
  });

  it('answers 409, 400 and 404 like Keycloak', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'dup' });
    let response = await api(`/${realm}/clients`, { method: 'POST', body: JSON.stringify({ clientId: 'dup' }) });
    expect(response.status).toBe(409);
    expect(await response.json()).toEqual({ errorMessage: 'Client dup already exists' });

    response = await api(`/${realm}/clients`, { method: 'POST', body: JSON.stringify({ clientId: 'typed', publicClient: 'yes' }) });
    expect(response.status).toBe(400);
    expect((await response.json() as { errorMessage: string }).errorMessage).toContain('publicClient');
    response = await api(`/${realm}/clients`, { method: 'POST', body: JSON.stringify({ name: 'no client id' }) });
    expect(response.status).toBe(400);
    response = await api(`/${realm}/clients`, { method: 'POST', body: JSON.stringify({ clientId: 'frag', redirectUris: ['https://x.example.com/#a'] }) });
    expect(response.status).toBe(400);
    response = await api(`/${realm}/clients`, { method: 'POST', body: JSON.stringify({ clientId: 'root', rootUrl: 'not a url' }) });
    expect(response.status).toBe(400);
    response = await api(`/${realm}/clients/${id}`, { method: 'PUT', body: JSON.stringify({ attributes: ['x'] }) });
    expect(response.status).toBe(400);

    for (const bad of [crypto.randomUUID(), 'not-a-uuid']) {
      expect((await api(`/${realm}/clients/${bad}`)).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}`, { method: 'PUT', body: '{}' })).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}`, { method: 'DELETE' })).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}/client-secret`)).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}/protocol-mappers/models`)).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}/scope-mappings/realm`)).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}/default-client-scopes`)).status).toBe(404);
      expect((await api(`/${realm}/clients/${bad}/user-sessions`)).status).toBe(404);
    }
    expect(await bench.admin.clients.findOne({ realm, id: crypto.randomUUID() })).toBeNull();
  });
});

describe('update and delete', () => {
  it('merges a PUT, renames with 409 on conflicts, removes attributes set to null', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({
      realm, clientId: 'merge', name: 'Before', redirectUris: ['https://m.example.com/*'], attributes: { a: '1', b: '2' },
      serviceAccountsEnabled: true,
    });
    await bench.admin.clients.create({ realm, clientId: 'taken' });
    await bench.admin.clients.update({ realm, id }, { description: 'Added', attributes: { b: null as unknown as string, c: '3' } });
    const after = await bench.admin.clients.findOne({ realm, id });
    expect(after).toMatchObject({ clientId: 'merge', name: 'Before', description: 'Added', redirectUris: ['https://m.example.com/*'] });
    expect(after!.attributes).toMatchObject({ a: '1', c: '3' });
    expect(after!.attributes!.b).toBeUndefined();

    const response = await api(`/${realm}/clients/${id}`, { method: 'PUT', body: JSON.stringify({ clientId: 'taken' }) });
    expect(response.status).toBe(409);
    await bench.admin.clients.update({ realm, id }, { clientId: 'merged' });
    expect((await bench.admin.clients.getServiceAccountUser({ realm, id })).username).toBe('service-account-merged');
  });

  it('replaces protocol mappers sent in a PUT by name', async () => {
    const realm = await newRealm();
    const mapper = (name: string, value: string) => ({
      name, protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper',
      config: { 'claim.name': name, 'claim.value': value, 'access.token.claim': 'true' },
    });
    const { id } = await bench.admin.clients.create({ realm, clientId: 'mappers', protocolMappers: [mapper('one', '1'), mapper('two', '2')] });
    const before = await bench.admin.clients.listProtocolMappers({ realm, id });
    const one = before.find((m) => m.name === 'one')!;
    await bench.admin.clients.update({ realm, id }, { protocolMappers: [mapper('one', 'changed'), mapper('three', '3')] });
    const after = await bench.admin.clients.listProtocolMappers({ realm, id });
    expect(after.map((m) => m.name).sort()).toEqual(['one', 'three']);
    expect(after.find((m) => m.name === 'one')).toMatchObject({ id: one.id, config: { 'claim.value': 'changed' } });
  });

  it('deletes a client with its service account, but not the built-in ones', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'gone', serviceAccountsEnabled: true });
    const user = await bench.admin.clients.getServiceAccountUser({ realm, id });
    await bench.admin.clients.del({ realm, id });
    expect(await bench.admin.clients.findOne({ realm, id })).toBeNull();
    expect(await bench.server.store.db.selectFrom('users').select('id').where('id', '=', user.id!).executeTakeFirst()).toBeUndefined();
    const [management] = await bench.admin.clients.find({ realm, clientId: 'realm-management' });
    const response = await api(`/${realm}/clients/${management!.id}`, { method: 'DELETE' });
    expect(response.status).toBe(400);
  });
});

describe('secret and service account', () => {
  it('regenerates the secret: the new one works at the token endpoint, the old one fails', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'worker', secret: 'first-secret-0123456789', serviceAccountsEnabled: true, standardFlowEnabled: false });
    expect(await bench.admin.clients.getClientSecret({ realm, id })).toEqual({ type: 'secret', value: 'first-secret-0123456789' });
    expect((await clientCredentials(realm, 'worker', 'first-secret-0123456789')).status).toBe(200);

    const regenerated = await bench.admin.clients.generateNewClientSecret({ realm, id });
    expect(regenerated.type).toBe('secret');
    expect(regenerated.value).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(await bench.admin.clients.getClientSecret({ realm, id })).toEqual(regenerated);
    expect((await clientCredentials(realm, 'worker', regenerated.value!)).status).toBe(200);
    expect((await clientCredentials(realm, 'worker', 'first-secret-0123456789')).status).toBe(401);

    // A secret sent in a PUT replaces it.
    await bench.admin.clients.update({ realm, id }, { secret: 'put-secret-0123456789' });
    expect((await clientCredentials(realm, 'worker', 'put-secret-0123456789')).status).toBe(200);

    expect((await api(`/${realm}/clients/${id}/client-secret/rotated`)).status).toBe(404);
    expect((await api(`/${realm}/clients/${id}/client-secret/rotated`, { method: 'DELETE' })).status).toBe(204);
  });

  it('creates the service-account user when service accounts are switched on', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'later' });
    const off = await api(`/${realm}/clients/${id}/service-account-user`);
    expect(off.status).toBe(400);
    expect((await off.json() as { errorMessage: string }).errorMessage).toBe("Service account not enabled for the client 'later'");

    await bench.admin.clients.update({ realm, id }, { serviceAccountsEnabled: true });
    const user = await bench.admin.clients.getServiceAccountUser({ realm, id });
    expect(user).toMatchObject({ username: 'service-account-later', enabled: true, serviceAccountClientId: 'later' });
    expect((await bench.admin.clients.findOne({ realm, id }))!.defaultClientScopes).toContain('service_account');
    const secret = (await bench.admin.clients.getClientSecret({ realm, id })).value!;
    const claims = await accessClaims(await clientCredentials(realm, 'later', secret));
    expect(claims).toMatchObject({ sub: user.id, azp: 'later', client_id: 'later', preferred_username: 'service-account-later' });
    expect((claims.realm_access as { roles: string[] }).roles).toContain(`default-roles-${realm}`);

    await bench.admin.clients.update({ realm, id }, { serviceAccountsEnabled: false });
    expect((await api(`/${realm}/clients/${id}/service-account-user`)).status).toBe(400);
    expect((await bench.admin.clients.findOne({ realm, id }))!.defaultClientScopes).not.toContain('service_account');
  });
});

describe('protocol mappers and client scopes of a client', () => {
  it('manages mappers, and a mapper added through the API shows up in real tokens', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'claims', secret: 'claims-secret-0123456789', serviceAccountsEnabled: true });
    const hardcoded = {
      name: 'tenant', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper',
      config: { 'claim.name': 'tenant', 'claim.value': 'acme', 'jsonType.label': 'String', 'access.token.claim': 'true' },
    };
    await bench.admin.clients.addProtocolMapper({ realm, id }, hardcoded);
    let claims = await accessClaims(await clientCredentials(realm, 'claims', 'claims-secret-0123456789'));
    expect(claims.tenant).toBe('acme');

    const duplicate = await api(`/${realm}/clients/${id}/protocol-mappers/models`, { method: 'POST', body: JSON.stringify(hardcoded) });
    expect(duplicate.status).toBe(409);
    expect(await duplicate.json()).toEqual({ errorMessage: 'Protocol mapper exists with same name' });
    const noType = await api(`/${realm}/clients/${id}/protocol-mappers/models`, { method: 'POST', body: JSON.stringify({ name: 'x' }) });
    expect(noType.status).toBe(400);

    await bench.admin.clients.addMultipleProtocolMappers({ realm, id }, [
      { name: 'level', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper', config: { 'claim.name': 'level', 'claim.value': '3', 'jsonType.label': 'int', 'access.token.claim': 'true' } },
      { name: 'saml-thing', protocol: 'saml', protocolMapper: 'saml-role-list-mapper', config: {} },
    ]);
    const all = await bench.admin.clients.listProtocolMappers({ realm, id });
    expect(all.map((m) => m.name).sort()).toEqual(['level', 'saml-thing', 'tenant']);
    expect((await bench.admin.clients.findProtocolMappersByProtocol({ realm, id, protocol: 'saml' })).map((m) => m.name)).toEqual(['saml-thing']);

    const tenant = all.find((m) => m.name === 'tenant')!;
    expect(await bench.admin.clients.findProtocolMapperById({ realm, id, mapperId: tenant.id! })).toEqual({ ...hardcoded, id: tenant.id });
    await bench.admin.clients.updateProtocolMapper({ realm, id, mapperId: tenant.id! }, { ...tenant, config: { ...tenant.config, 'claim.value': 'globex' } });
    claims = await accessClaims(await clientCredentials(realm, 'claims', 'claims-secret-0123456789'));
    expect(claims).toMatchObject({ tenant: 'globex', level: 3 });

    await bench.admin.clients.delProtocolMapper({ realm, id, mapperId: tenant.id! });
    claims = await accessClaims(await clientCredentials(realm, 'claims', 'claims-secret-0123456789'));
    expect(claims.tenant).toBeUndefined();
    for (const bad of [tenant.id!, 'nope']) {
      const missing = await api(`/${realm}/clients/${id}/protocol-mappers/models/${bad}`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ errorMessage: 'Model not found' });
    }
  });

  it('links and unlinks default and optional client scopes', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clients.create({ realm, clientId: 'scoped', defaultClientScopes: ['profile'], optionalClientScopes: [] });
    const scopes = await bench.admin.clientScopes.find({ realm });
    const byName = (name: string) => scopes.find((s) => s.name === name)!;
    await bench.admin.clients.addDefaultClientScope({ realm, id, clientScopeId: byName('email').id! });
    await bench.admin.clients.addOptionalClientScope({ realm, id, clientScopeId: byName('phone').id! });
    // Already linked as optional: Keycloak leaves the link alone.
    await bench.admin.clients.addDefaultClientScope({ realm, id, clientScopeId: byName('phone').id! });
    expect(await bench.admin.clients.listDefaultClientScopes({ realm, id })).toEqual([
      { id: byName('email').id, name: 'email' }, { id: byName('profile').id, name: 'profile' },
    ]);
    expect(await bench.admin.clients.listOptionalClientScopes({ realm, id })).toEqual([{ id: byName('phone').id, name: 'phone' }]);
    await bench.admin.clients.delDefaultClientScope({ realm, id, clientScopeId: byName('profile').id! });
    await bench.admin.clients.delOptionalClientScope({ realm, id, clientScopeId: byName('phone').id! });
    expect((await bench.admin.clients.findOne({ realm, id }))).toMatchObject({ defaultClientScopes: ['email'], optionalClientScopes: [] });
    const missing = await api(`/${realm}/clients/${id}/default-client-scopes/${crypto.randomUUID()}`, { method: 'PUT' });
    expect(missing.status).toBe(404);
  });
});

describe('scope mappings of a client', () => {
  it('limits the roles of tokens when fullScopeAllowed is off', async () => {
    const realm = await newRealm({
      roles: { realm: [{ name: 'reader' }, { name: 'writer' }, { name: 'all', composite: true, composites: { realm: ['reader', 'writer'] } }], client: { api: [{ name: 'call' }, { name: 'admin' }] } },
      clients: [{ clientId: 'job', secret: 'job-secret-0123456789', serviceAccountsEnabled: true }, { clientId: 'api', bearerOnly: true }],
      users: [{ username: 'service-account-job', serviceAccountClientId: 'job', realmRoles: ['reader', 'writer'], clientRoles: { api: ['call', 'admin'] } }],
    });
    const [job] = await bench.admin.clients.find({ realm, clientId: 'job' });
    const [apiClient] = await bench.admin.clients.find({ realm, clientId: 'api' });
    const id = job!.id!;
    // Full scope: every role is in scope, none is available.
    expect(await bench.admin.clients.listAvailableRealmScopeMappings({ realm, id })).toEqual([]);

    await bench.admin.clients.update({ realm, id }, { fullScopeAllowed: false });
    const available = await bench.admin.clients.listAvailableRealmScopeMappings({ realm, id });
    const reader = available.find((r) => r.name === 'reader')!;
    const all = available.find((r) => r.name === 'all')!;
    expect(reader).toMatchObject({ composite: false, clientRole: false, containerId: expect.any(String) });
    await bench.admin.clients.addRealmScopeMappings({ realm, id }, [{ id: reader.id!, name: 'reader' }]);
    await bench.admin.clients.addClientScopeMappings({ realm, id, client: apiClient!.id! }, [{ name: 'call' }]);

    expect((await bench.admin.clients.listRealmScopeMappings({ realm, id })).map((r) => r.name)).toEqual(['reader']);
    expect((await bench.admin.clients.listClientScopeMappings({ realm, id, client: apiClient!.id! })).map((r) => r.name)).toEqual(['call']);
    expect((await bench.admin.clients.listAvailableClientScopeMappings({ realm, id, client: apiClient!.id! })).map((r) => r.name)).toEqual(['admin']);
    expect((await bench.admin.clients.listCompositeClientScopeMappings({ realm, id, client: apiClient!.id! })).map((r) => r.name)).toEqual(['call']);
    const mappings = await bench.admin.clients.listScopeMappings({ realm, id });
    expect(mappings.realmMappings!.map((r) => r.name)).toEqual(['reader']);
    expect(mappings.clientMappings!.api).toMatchObject({ id: apiClient!.id, client: 'api', mappings: [{ name: 'call' }] });

    let claims = await accessClaims(await clientCredentials(realm, 'job', 'job-secret-0123456789'));
    expect((claims.realm_access as { roles: string[] }).roles).toEqual(['reader']);
    expect(claims.resource_access).toEqual({ api: { roles: ['call'] } });

    // A composite in scope brings its children.
    await bench.admin.clients.addRealmScopeMappings({ realm, id }, [{ id: all.id!, name: 'all' }]);
    expect((await bench.admin.clients.listCompositeRealmScopeMappings({ realm, id })).map((r) => r.name).sort()).toEqual(['all', 'reader', 'writer']);
    claims = await accessClaims(await clientCredentials(realm, 'job', 'job-secret-0123456789'));
    expect((claims.realm_access as { roles: string[] }).roles.sort()).toEqual(['reader', 'writer']);

    await bench.admin.clients.delRealmScopeMappings({ realm, id }, [{ id: all.id!, name: 'all' }]);
    await bench.admin.clients.delClientScopeMappings({ realm, id, client: apiClient!.id! }, [{ name: 'call' }]);
    expect((await bench.admin.clients.listRealmScopeMappings({ realm, id })).map((r) => r.name)).toEqual(['reader']);
    // DELETE without a body removes every realm mapping.
    expect((await api(`/${realm}/clients/${id}/scope-mappings/realm`, { method: 'DELETE' })).status).toBe(204);
    expect(await bench.admin.clients.listScopeMappings({ realm, id })).toEqual({});

    const unknownRole = await api(`/${realm}/clients/${id}/scope-mappings/realm`, { method: 'POST', body: JSON.stringify([{ id: crypto.randomUUID() }]) });
    expect(unknownRole.status).toBe(404);
    const unknownClient = await api(`/${realm}/clients/${id}/scope-mappings/clients/${crypto.randomUUID()}`);
    expect(unknownClient.status).toBe(404);
  });
});

describe('sessions and evaluate-scopes', () => {
  async function realmWithUser(): Promise<{ realm: string; id: string; userId: string }> {
    const userId = crypto.randomUUID();
    const realm = await newRealm({
      roles: { realm: [{ name: 'agent' }] },
      clients: [{
        clientId: 'desk', secret: 'desk-secret-0123456789', directAccessGrantsEnabled: true,
        protocolMappers: [{
          name: 'desk-audience', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper',
          config: { 'included.custom.audience': 'desk-api', 'access.token.claim': 'true', 'id.token.claim': 'false' },
        }],
      }],
      users: [{
        id: userId, username: 'alice', email: 'alice@example.com', emailVerified: true, firstName: 'Alice', lastName: 'Agent',
        enabled: true, credentials: [{ type: 'password', value: PASSWORD }], realmRoles: ['agent', 'offline_access'],
      }, adminUser('client-viewer', ['view-clients'])],
    });
    const [desk] = await bench.admin.clients.find({ realm, clientId: 'desk' });
    return { realm, id: desk!.id!, userId };
  }

  async function passwordGrant(realm: string, scope = 'openid'): Promise<Record<string, string>> {
    const response = await postForm(tokenUrl(realm), { grant_type: 'password', username: 'alice', password: PASSWORD, scope }, { authorization: basicAuth('desk', 'desk-secret-0123456789') });
    const body = await response.json() as Record<string, string>;
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body;
  }

  it('lists the user and offline sessions of a client and counts them', async () => {
    const { realm, id, userId } = await realmWithUser();
    expect(await bench.admin.clients.getSessionCount({ realm, id })).toEqual({ count: 0 });
    await passwordGrant(realm);
    await passwordGrant(realm);
    expect(await bench.admin.clients.getSessionCount({ realm, id })).toEqual({ count: 2 });
    const sessions = await bench.admin.clients.listSessions({ realm, id });
    expect(sessions).toHaveLength(2);
    expect(sessions[0]).toMatchObject({ username: 'alice', userId, rememberMe: false, clients: { [id]: 'desk' } });
    expect(sessions[0]!.start).toBeTypeOf('number');
    expect(await bench.admin.clients.listSessions({ realm, id, first: 1, max: 5 })).toHaveLength(1);
    // Keycloak lists only sessions of users the caller may view.
    const viewer = await bench.clientFor(realm, 'client-viewer', PASSWORD);
    expect(await viewer.clients.listSessions({ realm, id })).toEqual([]);
    expect(await viewer.clients.getSessionCount({ realm, id })).toEqual({ count: 2 });

    expect(await bench.admin.clients.getOfflineSessionCount({ realm, id })).toEqual({ count: 0 });
    await passwordGrant(realm, 'openid offline_access');
    expect(await bench.admin.clients.getOfflineSessionCount({ realm, id })).toEqual({ count: 1 });
    const offline = await bench.admin.clients.listOfflineSessions({ realm, id });
    expect(offline).toHaveLength(1);
    expect(offline[0]).toMatchObject({ username: 'alice', clients: { [id]: 'desk' } });
  });

  it('generates example tokens equal to real ones', async () => {
    const { realm, id, userId } = await realmWithUser();
    const real = await passwordGrant(realm);
    const realAccess = decodeJwt(real.access_token!) as Record<string, unknown>;
    const realId = decodeJwt(real.id_token!) as Record<string, unknown>;
    const volatile = ['exp', 'iat', 'jti', 'sid', 'auth_time', 'at_hash'];
    const stable = (claims: Record<string, unknown>) => Object.fromEntries(Object.entries(claims).filter(([key]) => !volatile.includes(key)));

    const exampleAccess = await bench.admin.clients.evaluateGenerateAccessToken({ realm, id, userId, scope: 'openid' } as never);
    expect(stable(exampleAccess)).toEqual(stable(realAccess));
    expect(realAccess.aud).toBe('desk-api');
    expect((exampleAccess.exp as number) - (exampleAccess.iat as number)).toBe((realAccess.exp as number) - (realAccess.iat as number));

    const exampleId = await bench.admin.clients.evaluateGenerateIdToken({ realm, id, userId, scope: 'openid' });
    expect(stable(exampleId)).toEqual(stable(realId));

    const userinfo = await fetch(`${bench.server.url}/realms/${realm}/protocol/openid-connect/userinfo`, { headers: { authorization: `Bearer ${real.access_token}` } });
    expect(stable(await bench.admin.clients.evaluateGenerateUserInfo({ realm, id, userId, scope: 'openid' }))).toEqual(stable(await userinfo.json() as Record<string, unknown>));

    // An optional scope asked for adds its claims.
    const withUpn = await bench.admin.clients.evaluateGenerateAccessToken({ realm, id, userId, scope: 'openid microprofile-jwt' } as never);
    expect(withUpn).toMatchObject({ upn: 'alice', scope: 'openid email profile microprofile-jwt' });

    // audience narrows aud; one the token cannot have is a 404.
    const audience = await api(`/${realm}/clients/${id}/evaluate-scopes/generate-example-access-token?userId=${userId}&audience=account`);
    expect(audience.status).toBe(404);
    expect(await audience.json()).toEqual({ errorMessage: 'Requested audience not available: account' });

    expect((await api(`/${realm}/clients/${id}/evaluate-scopes/generate-example-access-token`)).status).toBe(404);
    expect((await api(`/${realm}/clients/${id}/evaluate-scopes/generate-example-access-token?userId=${crypto.randomUUID()}`)).status).toBe(404);
  });

  it('lists the protocol mappers and granted roles a token would get', async () => {
    const { realm, id } = await realmWithUser();
    const mappers = await bench.admin.clients.evaluateListProtocolMapper({ realm, id, scope: 'openid phone' }) as Array<Record<string, unknown>>;
    expect(mappers).toContainEqual(expect.objectContaining({ mapperName: 'desk-audience', containerId: id, containerName: '', containerType: 'client', protocolMapper: 'oidc-audience-mapper' }));
    expect(mappers).toContainEqual(expect.objectContaining({ mapperName: 'email', containerName: 'email', containerType: 'client-scope' }));
    expect(mappers).toContainEqual(expect.objectContaining({ mapperName: 'phone number', containerName: 'phone' }));
    expect(mappers.some((m) => m.containerName === 'address')).toBe(false);

    const granted = await bench.admin.clients.evaluatePermission({ realm, id, roleContainer: realm, type: 'granted', scope: 'openid' });
    expect(granted.map((r) => r.name)).toContain('agent');
    expect(await bench.admin.clients.evaluatePermission({ realm, id, roleContainer: realm, type: 'not-granted', scope: 'openid' })).toEqual([]);
    await bench.admin.clients.update({ realm, id }, { fullScopeAllowed: false });
    const notGranted = await bench.admin.clients.evaluatePermission({ realm, id, roleContainer: realm, type: 'not-granted', scope: 'openid' });
    expect(notGranted.map((r) => r.name)).toContain('agent');
    // offline_access is scope-mapped to the offline_access client scope.
    const withOffline = await bench.admin.clients.evaluatePermission({ realm, id, roleContainer: realm, type: 'granted', scope: 'openid offline_access' });
    expect(withOffline.map((r) => r.name)).toEqual(['offline_access']);
    expect((await api(`/${realm}/clients/${id}/evaluate-scopes/scope-mappings/${crypto.randomUUID()}/granted`)).status).toBe(404);
  });
});

describe('permissions', () => {
  let realm: string;
  let clientUuid: string;
  const clientFor = (username: string): Promise<KcAdminClient> => bench.clientFor(realm, username, PASSWORD);

  beforeAll(async () => {
    realm = await newRealm({
      users: [
        adminUser('viewer', ['view-clients']), adminUser('creator', ['create-client']), adminUser('querier', ['query-clients']),
        adminUser('manager', ['manage-clients']), adminUser('nobody', ['view-users']),
      ],
    });
    clientUuid = (await bench.admin.clients.create({ realm, clientId: 'guarded', secret: 'guarded-secret-0123456789' })).id;
  });

  it('lets view-clients read but not write, and hides the secret', async () => {
    const viewer = await clientFor('viewer');
    const got = await viewer.clients.findOne({ realm, id: clientUuid });
    expect(got).toMatchObject({ clientId: 'guarded', secret: '**********', access: { view: true, manage: false, configure: false } });
    expect((await viewer.clients.find({ realm })).length).toBeGreaterThan(0);
    await expect(viewer.clients.update({ realm, id: clientUuid }, { name: 'no' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clients.create({ realm, clientId: 'no' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clients.getClientSecret({ realm, id: clientUuid })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clients.addProtocolMapper({ realm, id: clientUuid }, { name: 'x', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper', config: {} }))
      .rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clients.del({ realm, id: clientUuid })).rejects.toMatchObject({ response: { status: 403 } });
  });

  it('lets create-client create but not update', async () => {
    const creator = await clientFor('creator');
    const { id } = await creator.clients.create({ realm, clientId: 'created-by-creator' });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await expect(creator.clients.update({ realm, id }, { name: 'no' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(creator.clients.findOne({ realm, id: clientUuid })).rejects.toMatchObject({ response: { status: 403 } });
  });

  it('gives query-clients an empty list and manage-clients everything', async () => {
    const querier = await clientFor('querier');
    expect(await querier.clients.find({ realm })).toEqual([]);
    await expect(querier.clients.findOne({ realm, id: clientUuid })).rejects.toMatchObject({ response: { status: 403 } });
    const manager = await clientFor('manager');
    await manager.clients.update({ realm, id: clientUuid }, { description: 'managed' });
    expect((await manager.clients.getClientSecret({ realm, id: clientUuid })).value).toBe('guarded-secret-0123456789');
    const nobody = await clientFor('nobody');
    await expect(nobody.clients.find({ realm })).rejects.toMatchObject({ response: { status: 403 } });
  });

  it('refuses the admin of another realm on every route', async () => {
    const other = await newRealm({ users: [adminUser('outsider', ['manage-clients', 'view-users', 'realm-admin'])] });
    const outsider = await bench.clientFor(other, 'outsider', PASSWORD);
    const token = await outsider.getAccessToken();
    const paths: Array<[string, string]> = [
      ['GET', '/clients'], ['POST', '/clients'], ['GET', `/clients/${clientUuid}`], ['PUT', `/clients/${clientUuid}`],
      ['DELETE', `/clients/${clientUuid}`], ['GET', `/clients/${clientUuid}/client-secret`], ['POST', `/clients/${clientUuid}/client-secret`],
      ['GET', `/clients/${clientUuid}/service-account-user`], ['GET', `/clients/${clientUuid}/default-client-scopes`],
      ['GET', `/clients/${clientUuid}/protocol-mappers/models`], ['GET', `/clients/${clientUuid}/scope-mappings`],
      ['GET', `/clients/${clientUuid}/user-sessions`], ['GET', `/clients/${clientUuid}/session-count`],
      ['GET', `/clients/${clientUuid}/evaluate-scopes/protocol-mappers`],
    ];
    for (const [method, path] of paths) {
      const response = await api(`/${realm}${path}`, { method, token, ...(method === 'POST' || method === 'PUT' ? { body: '{}' } : {}) });
      expect(response.status, `${method} ${path}`).toBe(403);
    }
  });
});
