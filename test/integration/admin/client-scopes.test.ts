// Admin REST API: client scopes, their protocol mappers and scope mappings, driven by the official
// @keycloak/keycloak-admin-client and raw fetches; token effects checked at the real token endpoint.
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { basicAuth, postForm } from '../../support/server.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

const PASSWORD = 'Passw0rd-for-tests';
let realmCount = 0;
async function newRealm(rep: Record<string, unknown> = {}): Promise<string> {
  const realm = `scopes-${++realmCount}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.admin.realms.create({ realm, enabled: true, ...rep });
  return realm;
}

const api = (path: string, init?: RequestInit & { token?: string }) => bench.api(path, init);

async function clientCredentialsClaims(realm: string, clientId: string, secret: string): Promise<Record<string, unknown>> {
  const response = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) });
  const body = await response.json() as { access_token?: string };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return decodeJwt(body.access_token!) as Record<string, unknown>;
}

function adminUser(username: string, roles: string[]) {
  return { username, enabled: true, credentials: [{ type: 'password', value: PASSWORD, temporary: false }], clientRoles: { 'realm-management': roles } };
}

describe('client scopes', () => {
  it('creates, reads, lists, updates and deletes a client scope', async () => {
    const realm = await newRealm();
    const sent = {
      name: 'tenant', description: 'Tenant claims', protocol: 'openid-connect',
      attributes: { 'include.in.token.scope': 'true', 'display.on.consent.screen': 'false' },
      protocolMappers: [{
        name: 'tenant id', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper',
        config: { 'claim.name': 'tenant_id', 'claim.value': 't-1', 'access.token.claim': 'true' },
      }],
    };
    const { id } = await bench.admin.clientScopes.create({ realm, ...sent });
    expect(await bench.admin.clientScopes.findOne({ realm, id })).toEqual({
      ...sent, id, protocolMappers: [{ ...sent.protocolMappers[0], id: expect.any(String) }],
    });
    const list = await bench.admin.clientScopes.find({ realm });
    expect(list.map((s) => s.name)).toEqual([...list.map((s) => s.name)].sort());
    expect(list.map((s) => s.name)).toEqual(expect.arrayContaining(['email', 'profile', 'roles', 'service_account', 'tenant']));
    // Built-in scopes carry their mappers; a scope without any has no protocolMappers field.
    expect(list.find((s) => s.name === 'email')!.protocolMappers!.map((m) => m.name)).toContain('email');
    expect(list.find((s) => s.name === 'offline_access')!.protocolMappers).toBeUndefined();

    await bench.admin.clientScopes.update({ realm, id }, { description: 'Changed', attributes: { 'gui.order': '3' } });
    expect(await bench.admin.clientScopes.findOne({ realm, id })).toMatchObject({
      name: 'tenant', description: 'Changed', protocol: 'openid-connect',
      attributes: { 'include.in.token.scope': 'true', 'display.on.consent.screen': 'false', 'gui.order': '3' },
    });
    await bench.admin.clientScopes.update({ realm, id }, { name: 'tenant-v2' });
    expect(await bench.admin.clientScopes.findOneByName({ realm, name: 'tenant-v2' })).toMatchObject({ id });

    await bench.admin.clientScopes.del({ realm, id });
    expect(await bench.admin.clientScopes.findOne({ realm, id })).toBeNull();
  });

  it('answers 409, 400 and 404 like Keycloak', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.clientScopes.create({ realm, name: 'one', protocol: 'openid-connect' });
    const post = (body: unknown) => api(`/${realm}/client-scopes`, { method: 'POST', body: JSON.stringify(body) });
    let response = await post({ name: 'one', protocol: 'openid-connect' });
    expect(response.status).toBe(409);
    expect(await response.json()).toEqual({ errorMessage: 'Client Scope one already exists' });
    response = await post({ name: 'has space', protocol: 'openid-connect' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ errorMessage: 'Unexpected name "has space" for ClientScope' });
    response = await post({ name: 'noproto' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ errorMessage: 'Unexpected protocol' });
    response = await post({ name: 'typed', protocol: 'openid-connect', attributes: ['x'] });
    expect(response.status).toBe(400);
    expect((await response.json() as { errorMessage: string }).errorMessage).toContain('attributes');
    response = await post({ name: 'dynamic', protocol: 'openid-connect', attributes: { 'is.dynamic.scope': 'true' } });
    expect(response.status).toBe(400);

    await bench.admin.clientScopes.create({ realm, name: 'two', protocol: 'openid-connect' });
    response = await api(`/${realm}/client-scopes/${id}`, { method: 'PUT', body: JSON.stringify({ name: 'two' }) });
    expect(response.status).toBe(409);
    expect(await response.json()).toEqual({ errorMessage: 'Client Scope two already exists' });
    response = await api(`/${realm}/client-scopes/${id}`, { method: 'PUT', body: JSON.stringify({ name: 'bad name' }) });
    expect(response.status).toBe(400);

    for (const bad of [crypto.randomUUID(), 'not-a-uuid']) {
      for (const [method, path] of [['GET', ''], ['PUT', ''], ['DELETE', ''], ['GET', '/protocol-mappers/models'], ['GET', '/scope-mappings']]) {
        const res = await api(`/${realm}/client-scopes/${bad}${path}`, { method, ...(method === 'PUT' ? { body: '{}' } : {}) });
        expect(res.status, `${method} ${bad}${path}`).toBe(404);
      }
    }
  });

  it('unlinks a deleted scope from clients and realm defaults, and keeps the last scope', async () => {
    const realm = await newRealm({ clients: [{ clientId: 'app', secret: 'app-secret-0123456789' }] });
    const scopes = await bench.admin.clientScopes.find({ realm });
    const email = scopes.find((s) => s.name === 'email')!;
    const [app] = await bench.admin.clients.find({ realm, clientId: 'app' });
    expect(app!.defaultClientScopes).toContain('email');
    await bench.admin.clientScopes.del({ realm, id: email.id! });
    expect((await bench.admin.clients.findOne({ realm, id: app!.id! }))!.defaultClientScopes).not.toContain('email');
    const realmDefaults = await (await api(`/${realm}/default-default-client-scopes`)).json() as Array<{ name: string }>;
    expect(realmDefaults.map((s) => s.name)).not.toContain('email');

    const rest = scopes.filter((s) => s.id !== email.id);
    for (const scope of rest.slice(1)) await bench.admin.clientScopes.del({ realm, id: scope.id! });
    const last = await api(`/${realm}/client-scopes/${rest[0]!.id}`, { method: 'DELETE' });
    expect(last.status).toBe(403);
    expect(await last.json()).toEqual({ errorMessage: 'You are not allowed to delete all the client scopes.' });
  });
});

describe('mappers and scope mappings of a client scope', () => {
  it('adds an audience mapper on a dedicated scope that shows up in real tokens', async () => {
    const realm = await newRealm({ clients: [{ clientId: 'worker', secret: 'worker-secret-0123456789', serviceAccountsEnabled: true }] });
    const { id: scopeId } = await bench.admin.clientScopes.create({ realm, name: 'billing-audience', protocol: 'openid-connect', attributes: { 'include.in.token.scope': 'false' } });
    const audience = {
      name: 'billing audience', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper',
      config: { 'included.custom.audience': 'billing-api', 'access.token.claim': 'true', 'introspection.token.claim': 'true' },
    };
    await bench.admin.clientScopes.addProtocolMapper({ realm, id: scopeId }, audience);
    const duplicate = await api(`/${realm}/client-scopes/${scopeId}/protocol-mappers/models`, { method: 'POST', body: JSON.stringify(audience) });
    expect(duplicate.status).toBe(409);
    expect(await duplicate.json()).toEqual({ errorMessage: 'Protocol mapper exists with same name' });

    const [worker] = await bench.admin.clients.find({ realm, clientId: 'worker' });
    let claims = await clientCredentialsClaims(realm, 'worker', 'worker-secret-0123456789');
    expect(claims.aud).not.toBe('billing-api');
    await bench.admin.clients.addDefaultClientScope({ realm, id: worker!.id!, clientScopeId: scopeId });
    claims = await clientCredentialsClaims(realm, 'worker', 'worker-secret-0123456789');
    expect([claims.aud].flat()).toContain('billing-api');

    const [mapper] = await bench.admin.clientScopes.listProtocolMappers({ realm, id: scopeId });
    expect(mapper).toEqual({ ...audience, id: expect.any(String) });
    expect(await bench.admin.clientScopes.findProtocolMapper({ realm, id: scopeId, mapperId: mapper!.id! })).toEqual(mapper);
    expect(await bench.admin.clientScopes.findProtocolMappersByProtocol({ realm, id: scopeId, protocol: 'openid-connect' })).toEqual([mapper]);
    await bench.admin.clientScopes.updateProtocolMapper({ realm, id: scopeId, mapperId: mapper!.id! }, { ...mapper, config: { ...mapper!.config, 'included.custom.audience': 'ledger-api' } });
    claims = await clientCredentialsClaims(realm, 'worker', 'worker-secret-0123456789');
    expect([claims.aud].flat()).toContain('ledger-api');
    await bench.admin.clientScopes.addMultipleProtocolMappers({ realm, id: scopeId }, [
      { name: 'flag', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper', config: { 'claim.name': 'flag', 'claim.value': 'true', 'jsonType.label': 'boolean', 'access.token.claim': 'true' } },
    ]);
    claims = await clientCredentialsClaims(realm, 'worker', 'worker-secret-0123456789');
    expect(claims.flag).toBe(true);
    await bench.admin.clientScopes.delProtocolMapper({ realm, id: scopeId, mapperId: mapper!.id! });
    claims = await clientCredentialsClaims(realm, 'worker', 'worker-secret-0123456789');
    expect([claims.aud].flat()).not.toContain('ledger-api');
    expect((await api(`/${realm}/client-scopes/${scopeId}/protocol-mappers/models/${mapper!.id}`)).status).toBe(404);
  });

  it('grants roles through the scope mappings of a linked scope', async () => {
    const realm = await newRealm({
      roles: { realm: [{ name: 'reports' }, { name: 'secret-stuff' }], client: { ledger: [{ name: 'read' }, { name: 'write' }] } },
      clients: [{
        clientId: 'job', secret: 'job-secret-0123456789', serviceAccountsEnabled: true, fullScopeAllowed: false,
        // An audience of its own: a client_credentials token without any aud is a 500 today (src/oidc/provider.ts setAudience).
        protocolMappers: [{ name: 'self', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper', config: { 'included.client.audience': 'job', 'access.token.claim': 'true' } }],
      }, { clientId: 'ledger', bearerOnly: true }],
      users: [{ username: 'service-account-job', serviceAccountClientId: 'job', realmRoles: ['reports', 'secret-stuff'], clientRoles: { ledger: ['read', 'write'] } }],
    });
    const { id: scopeId } = await bench.admin.clientScopes.create({ realm, name: 'reporting', protocol: 'openid-connect' });
    const [job] = await bench.admin.clients.find({ realm, clientId: 'job' });
    const [ledger] = await bench.admin.clients.find({ realm, clientId: 'ledger' });
    await bench.admin.clients.addDefaultClientScope({ realm, id: job!.id!, clientScopeId: scopeId });
    let claims = await clientCredentialsClaims(realm, 'job', 'job-secret-0123456789');
    expect(claims.realm_access).toBeUndefined();

    const available = await bench.admin.clientScopes.listAvailableRealmScopeMappings({ realm, id: scopeId });
    const reports = available.find((r) => r.name === 'reports')!;
    await bench.admin.clientScopes.addRealmScopeMappings({ realm, id: scopeId }, [{ id: reports.id!, name: 'reports' }]);
    await bench.admin.clientScopes.addClientScopeMappings({ realm, id: scopeId, client: ledger!.id! }, [{ name: 'read' }]);
    expect((await bench.admin.clientScopes.listRealmScopeMappings({ realm, id: scopeId })).map((r) => r.name)).toEqual(['reports']);
    expect((await bench.admin.clientScopes.listCompositeRealmScopeMappings({ realm, id: scopeId })).map((r) => r.name)).toEqual(['reports']);
    expect((await bench.admin.clientScopes.listAvailableClientScopeMappings({ realm, id: scopeId, client: ledger!.id! })).map((r) => r.name)).toEqual(['write']);
    expect(await bench.admin.clientScopes.listScopeMappings({ realm, id: scopeId })).toMatchObject({
      realmMappings: [{ name: 'reports', clientRole: false }],
      clientMappings: { ledger: { id: ledger!.id, client: 'ledger', mappings: [{ name: 'read', clientRole: true, containerId: ledger!.id }] } },
    });
    claims = await clientCredentialsClaims(realm, 'job', 'job-secret-0123456789');
    expect(claims.realm_access).toEqual({ roles: ['reports'] });
    expect(claims.resource_access).toEqual({ ledger: { roles: ['read'] } });

    const unknown = await api(`/${realm}/client-scopes/${scopeId}/scope-mappings/clients/${ledger!.id}`, { method: 'POST', body: JSON.stringify([{ name: 'nope' }]) });
    expect(unknown.status).toBe(404);
    await bench.admin.clientScopes.delClientScopeMappings({ realm, id: scopeId, client: ledger!.id! }, [{ name: 'read' }]);
    await bench.admin.clientScopes.delRealmScopeMappings({ realm, id: scopeId }, [{ id: reports.id!, name: 'reports' }]);
    expect(await bench.admin.clientScopes.listScopeMappings({ realm, id: scopeId })).toEqual({});
  });
});

describe('permissions', () => {
  it('lets view-clients and view-realm read, only manage-clients write, and refuses other realms', async () => {
    const realm = await newRealm({
      users: [adminUser('viewer', ['view-clients']), adminUser('realm-viewer', ['view-realm']), adminUser('querier', ['query-clients']), adminUser('manager', ['manage-clients'])],
    });
    const [scope] = await bench.admin.clientScopes.find({ realm });
    const viewer = await bench.clientFor(realm, 'viewer', PASSWORD);
    expect((await viewer.clientScopes.find({ realm })).length).toBeGreaterThan(5);
    expect(await viewer.clientScopes.findOne({ realm, id: scope!.id! })).toMatchObject({ id: scope!.id });
    await expect(viewer.clientScopes.create({ realm, name: 'no', protocol: 'openid-connect' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clientScopes.update({ realm, id: scope!.id! }, { description: 'no' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clientScopes.del({ realm, id: scope!.id! })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.clientScopes.addProtocolMapper({ realm, id: scope!.id! }, { name: 'x', protocol: 'openid-connect', protocolMapper: 'oidc-hardcoded-claim-mapper', config: {} }))
      .rejects.toMatchObject({ response: { status: 403 } });
    const realmViewer = await bench.clientFor(realm, 'realm-viewer', PASSWORD);
    expect((await realmViewer.clientScopes.listProtocolMappers({ realm, id: scope!.id! })).length).toBeGreaterThanOrEqual(0);
    const querier = await bench.clientFor(realm, 'querier', PASSWORD);
    await expect(querier.clientScopes.find({ realm })).rejects.toMatchObject({ response: { status: 403 } });
    const manager = await bench.clientFor(realm, 'manager', PASSWORD);
    const { id } = await manager.clientScopes.create({ realm, name: 'managed', protocol: 'openid-connect' });
    await manager.clientScopes.update({ realm, id }, { description: 'ok' });

    const other = await newRealm({ users: [adminUser('outsider', ['realm-admin'])] });
    const token = await (await bench.clientFor(other, 'outsider', PASSWORD)).getAccessToken();
    const paths: Array<[string, string]> = [
      ['GET', '/client-scopes'], ['POST', '/client-scopes'], ['GET', `/client-scopes/${id}`], ['PUT', `/client-scopes/${id}`],
      ['DELETE', `/client-scopes/${id}`], ['GET', `/client-scopes/${id}/protocol-mappers/models`], ['POST', `/client-scopes/${id}/protocol-mappers/add-models`],
      ['GET', `/client-scopes/${id}/scope-mappings`], ['POST', `/client-scopes/${id}/scope-mappings/realm`],
    ];
    for (const [method, path] of paths) {
      const response = await api(`/${realm}${path}`, { method, token, ...(method === 'POST' || method === 'PUT' ? { body: '[]' } : {}) });
      expect(response.status, `${method} ${path}`).toBe(403);
    }
  });
});
