// Client credentials, discovery, JWKS and introspection driven by real clients (openid-client,
// jose) against a real server.
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { basicAuth, postForm, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
let realmUrl: string;
const secret = 'cim-secret-0123456789';

beforeAll(async () => {
  server = await startTestServer();
  realmUrl = `${server.url}/realms/expertflow`;
  await server.importRealm({
    realm: 'expertflow',
    roles: {
      realm: [{ name: 'agent' }, { name: 'supervisor', composite: true, composites: { realm: ['agent'] } }],
      client: { cim: [{ name: 'cim-reader' }] },
    },
    clients: [
      {
        clientId: 'cim', secret, serviceAccountsEnabled: true, standardFlowEnabled: false,
        protocolMappers: [{
          name: 'fix-audience', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper',
          config: { 'included.client.audience': 'cim', 'id.token.claim': 'true', 'access.token.claim': 'true' },
        }],
      },
      { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
      { clientId: 'narrow', secret: 'narrow-secret', serviceAccountsEnabled: true, standardFlowEnabled: false, optionalClientScopes: [] },
      { clientId: 'spa', publicClient: true, redirectUris: ['http://localhost:3000/*'] },
    ],
    users: [{
      username: 'service-account-cim', serviceAccountClientId: 'cim', enabled: true,
      realmRoles: ['default-roles-expertflow', 'supervisor'], clientRoles: { cim: ['cim-reader'] },
    }],
  });
  await server.importRealm({
    realm: 'other',
    clients: [
      { clientId: 'cim', secret: 'other-secret', serviceAccountsEnabled: true },
      { clientId: 'job', secret: 'job-secret', serviceAccountsEnabled: true, fullScopeAllowed: false },
    ],
  });
});

afterAll(async () => {
  await server?.stop();
});

async function discover(clientId: string, clientSecret: string, method: 'basic' | 'post' = 'basic'): Promise<oidc.Configuration> {
  const auth = method === 'basic' ? oidc.ClientSecretBasic(clientSecret) : oidc.ClientSecretPost(clientSecret);
  return oidc.discovery(new URL(realmUrl), clientId, undefined, auth, { execute: [oidc.allowInsecureRequests] });
}

describe('discovery and JWKS', () => {
  it('serves Keycloak URL layout and issuer', async () => {
    const config = await discover('cim', secret);
    const meta = config.serverMetadata();
    expect(meta.issuer).toBe(realmUrl);
    expect(meta.token_endpoint).toBe(`${realmUrl}/protocol/openid-connect/token`);
    expect(meta.introspection_endpoint).toBe(`${realmUrl}/protocol/openid-connect/token/introspect`);
    expect(meta.jwks_uri).toBe(`${realmUrl}/protocol/openid-connect/certs`);
    expect(meta.revocation_endpoint).toBe(`${realmUrl}/protocol/openid-connect/revoke`);
    expect(meta.userinfo_endpoint).toBe(`${realmUrl}/protocol/openid-connect/userinfo`);
    expect(meta.end_session_endpoint).toBe(`${realmUrl}/protocol/openid-connect/logout`);
    expect(meta.authorization_endpoint).toBe(`${realmUrl}/protocol/openid-connect/auth`);
    expect(meta.grant_types_supported).toContain('client_credentials');
    expect(meta.scopes_supported).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'roles']));
  });

  it('publishes one RS256 signing key with kid and use', async () => {
    const res = await fetch(`${realmUrl}/protocol/openid-connect/certs`);
    expect(res.status).toBe(200);
    const { keys } = await res.json() as { keys: Array<Record<string, string>> };
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
    expect(keys[0]!.kid).toMatch(/^[\w-]{43}$/);
    expect(keys[0]).not.toHaveProperty('d');
  });

  it('serves RFC 8414 metadata at the realm', async () => {
    const res = await fetch(`${realmUrl}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    expect((await res.json() as { issuer: string }).issuer).toBe(realmUrl);
  });

  it('answers the public realm info', async () => {
    const res = await fetch(realmUrl);
    const body = await res.json() as Record<string, unknown>;
    expect(body).toMatchObject({
      realm: 'expertflow', 'token-service': `${realmUrl}/protocol/openid-connect`,
      'account-service': `${realmUrl}/account`, 'tokens-not-before': 0,
    });
    expect(body.public_key).toMatch(/^MIIBIjAN/);
  });
});

describe('client_credentials', () => {
  it('issues a Keycloak-shaped RS256 token (client_secret_basic) that verifies against certs', async () => {
    const config = await discover('cim', secret, 'basic');
    const tokens = await oidc.clientCredentialsGrant(config);
    expect(tokens.token_type).toBe('bearer');
    expect(tokens.expires_in).toBe(300);
    expect(tokens.scope?.split(' ').sort()).toEqual(['email', 'profile']);

    const header = decodeProtectedHeader(tokens.access_token);
    expect(header).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(typeof header.kid).toBe('string');

    const jwks = createRemoteJWKSet(new URL(`${realmUrl}/protocol/openid-connect/certs`));
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: realmUrl });
    const serviceAccount = await server.store.db.selectFrom('users').select('id')
      .where('username', '=', 'service-account-cim').executeTakeFirstOrThrow();
    expect(payload).toMatchObject({
      iss: realmUrl,
      sub: serviceAccount.id,
      typ: 'Bearer',
      azp: 'cim',
      preferred_username: 'service-account-cim',
      clientId: 'cim',
      client_id: 'cim',
      email_verified: false,
      acr: '1',
    });
    expect((payload.scope as string).split(' ').sort()).toEqual(['email', 'profile']);
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(typeof payload.jti).toBe('string');
    // Composite supervisor -> agent expanded; default roles inherited.
    expect((payload.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(
      ['supervisor', 'agent', 'default-roles-expertflow', 'offline_access', 'uma_authorization'],
    ));
    expect(payload.resource_access).toMatchObject({
      cim: { roles: ['cim-reader'] },
      account: { roles: expect.arrayContaining(['manage-account', 'view-profile']) },
    });
    // Audience mapper adds cim; audience resolve adds account (client roles), not the azp itself.
    expect(new Set(payload.aud as string[])).toEqual(new Set(['cim', 'account']));
  });

  it('accepts client_secret_post for the same client', async () => {
    const config = await discover('cim', secret, 'post');
    const tokens = await oidc.clientCredentialsGrant(config);
    expect(tokens.access_token.split('.')).toHaveLength(3);
  });

  it('answers with Keycloak token response fields', async () => {
    const res = await postForm(`${realmUrl}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('cim', secret) });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('no-store');
    const body = await res.json() as Record<string, unknown>;
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 300, refresh_expires_in: 0, 'not-before-policy': 0 });
    expect(String(body.scope).split(' ').sort()).toEqual(['email', 'profile']);
    expect(body).not.toHaveProperty('refresh_token');
  });

  it('adds requested optional scopes', async () => {
    const res = await postForm(`${realmUrl}/protocol/openid-connect/token`, { grant_type: 'client_credentials', scope: 'phone' }, { authorization: basicAuth('cim', secret) });
    const body = await res.json() as { scope: string };
    expect(body.scope.split(' ').sort()).toEqual(['email', 'phone', 'profile']);
  });

  it('refuses a realm scope the client does not have, and resource indicators', async () => {
    const token = `${realmUrl}/protocol/openid-connect/token`;
    const refused = await postForm(token, { grant_type: 'client_credentials', scope: 'phone' }, { authorization: basicAuth('narrow', 'narrow-secret') });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: 'invalid_scope', error_description: 'Invalid scopes: phone' });
    const granted = await postForm(token, { grant_type: 'client_credentials' }, { authorization: basicAuth('narrow', 'narrow-secret') });
    expect(granted.status).toBe(200);
    const resource = await postForm(token, { grant_type: 'client_credentials', resource: 'https://api.example.com' }, { authorization: basicAuth('cim', secret) });
    expect(resource.status).toBe(400);
    expect(await resource.json()).toMatchObject({ error: 'invalid_target' });
  });

  it('gives a token without client roles no aud, like Keycloak', async () => {
    const res = await postForm(`${server.url}/realms/other/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('cim', 'other-secret') });
    const { access_token } = await res.json() as { access_token: string };
    const claims = JSON.parse(Buffer.from(access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    // The default role gives account roles, so audience resolve adds account.
    expect(claims.aud).toBe('account');
  });

  it('issues a token with no aud at all when nothing adds one (no full scope, no audience mapper)', async () => {
    const res = await postForm(`${server.url}/realms/other/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('job', 'job-secret') });
    expect(res.status).toBe(200);
    const { access_token } = await res.json() as { access_token: string };
    const claims = JSON.parse(Buffer.from(access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).not.toHaveProperty('aud');
    expect(claims.azp).toBe('job');
  });

  it('rejects a wrong secret, an unknown client and missing credentials with invalid_client', async () => {
    for (const authorization of [basicAuth('cim', 'wrong'), basicAuth('nobody', 'x')]) {
      const res = await postForm(`${realmUrl}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: 'invalid_client' });
    }
    const res = await postForm(`${realmUrl}/protocol/openid-connect/token`, { grant_type: 'client_credentials' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('rejects client_credentials for a client without a service account', async () => {
    const res = await postForm(`${realmUrl}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'unauthorized_client' });
  });

  it('does not accept a client of one realm in another', async () => {
    const res = await postForm(`${server.url}/realms/other/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('cim', secret) });
    expect(res.status).toBe(401);
  });
});

describe('introspection', () => {
  async function token(realm = 'expertflow', clientSecret = secret): Promise<string> {
    const res = await postForm(`${server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('cim', clientSecret) });
    return (await res.json() as { access_token: string }).access_token;
  }

  it('lets any confidential client of the realm introspect, with the token claims', async () => {
    const accessToken = await token();
    const config = await discover('gateway', 'gateway-secret');
    const result = await oidc.tokenIntrospection(config, accessToken);
    expect(result).toMatchObject({
      active: true, client_id: 'cim', azp: 'cim', username: 'service-account-cim', token_type: 'Bearer', iss: realmUrl,
    });
    expect(result.aud).toEqual(expect.arrayContaining(['cim', 'account']));
    expect(typeof result.exp).toBe('number');
  });

  it('answers active:false for tokens of another realm, garbage and tampered tokens', async () => {
    const config = await discover('gateway', 'gateway-secret');
    const foreign = await token('other', 'other-secret');
    expect((await oidc.tokenIntrospection(config, foreign)).active).toBe(false);
    expect((await oidc.tokenIntrospection(config, 'not-a-token')).active).toBe(false);
    const good = await token();
    const [h, p, s] = good.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, azp: 'evil' })).toString('base64url')}.${s}`;
    expect((await oidc.tokenIntrospection(config, forged)).active).toBe(false);
  });

  it('requires an authenticated confidential client', async () => {
    const url = `${realmUrl}/protocol/openid-connect/token/introspect`;
    const accessToken = await token();
    let res = await postForm(url, { token: accessToken });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'invalid_client' });
    res = await postForm(url, { token: accessToken }, { authorization: basicAuth('gateway', 'wrong') });
    expect(res.status).toBe(401);
    res = await postForm(url, { token: accessToken, client_id: 'spa', client_secret: 'x' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'invalid_request', error_description: 'Client not allowed.' });
    res = await postForm(url, {}, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('revocation', () => {
  it('answers 200 per RFC 7009 for an access token and for an unknown token', async () => {
    const url = `${realmUrl}/protocol/openid-connect/revoke`;
    for (const value of ['unknown-token-value']) {
      const res = await postForm(url, { token: value }, { authorization: basicAuth('gateway', 'gateway-secret') });
      expect(res.status).toBe(200);
    }
    const res = await postForm(url, { token: 'x' }, { authorization: basicAuth('gateway', 'wrong') });
    expect(res.status).toBe(401);
  });
});
