// The token endpoint's hot path (src/oidc/token-endpoint.ts): client_credentials, password and
// refresh_token requests of secret-authenticated and public clients are answered without
// oidc-provider. Its answers must be oidc-provider's: the same requests with an Origin header
// the client allows go through oidc-provider, so each pair is compared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { basicAuth, postForm, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
let tokenUrl: string;
const ORIGIN = 'https://app.example.org';
const secret = 'app-secret-0123456789';

beforeAll(async () => {
  server = await startTestServer();
  tokenUrl = `${server.url}/realms/hot/protocol/openid-connect/token`;
  await server.importRealm({
    realm: 'hot',
    eventsEnabled: true,
    enabledEventTypes: ['LOGIN', 'LOGIN_ERROR', 'CLIENT_LOGIN', 'CLIENT_LOGIN_ERROR', 'REFRESH_TOKEN', 'REFRESH_TOKEN_ERROR'],
    clients: [
      { clientId: 'app', secret, serviceAccountsEnabled: true, directAccessGrantsEnabled: true, standardFlowEnabled: false, webOrigins: [ORIGIN] },
      { clientId: 'narrow', secret: 'narrow-secret', serviceAccountsEnabled: true, standardFlowEnabled: false, optionalClientScopes: [], webOrigins: [ORIGIN] },
      { clientId: 'cli', publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: false, webOrigins: [ORIGIN] },
      { clientId: 'browser-only', secret: 'browser-secret', standardFlowEnabled: true, redirectUris: ['https://app.example.org/*'], webOrigins: [ORIGIN] },
    ],
    users: [{ username: 'agent', enabled: true, credentials: [{ type: 'password', value: 'agent-password', temporary: false }] }],
  });
});

afterAll(async () => {
  await server?.stop();
});

type Answer = { status: number; body: Record<string, unknown>; challenge: string | null; cacheControl: string | null; allowOrigin: string | null };

async function ask(form: Record<string, string>, headers: Record<string, string>): Promise<Answer> {
  const res = await postForm(tokenUrl, form, headers);
  return {
    status: res.status, body: await res.json() as Record<string, unknown>,
    challenge: res.headers.get('www-authenticate'), cacheControl: res.headers.get('cache-control'),
    allowOrigin: res.headers.get('access-control-allow-origin'),
  };
}

/** The hot path's answer and oidc-provider's (the same request from an allowed browser origin). */
async function both(form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ hot: Answer; provider: Answer }> {
  const hot = await ask(form, headers);
  const provider = await ask(form, { ...headers, origin: ORIGIN });
  expect(provider.allowOrigin).toBe(ORIGIN);
  return { hot, provider };
}

const appBasic = { authorization: basicAuth('app', secret) };

/** Token claims without what differs per token. */
function stableClaims(token: unknown): Record<string, unknown> {
  const claims = JSON.parse(Buffer.from(String(token).split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  const { exp, iat, jti, sid, auth_time, at_hash, ...rest } = claims;
  return rest;
}

describe('answers as oidc-provider does', () => {
  it('client_credentials: same response fields and access-token claims', async () => {
    const { hot, provider } = await both({ grant_type: 'client_credentials' }, appBasic);
    expect(hot.status).toBe(200);
    expect(provider.status).toBe(200);
    expect(hot.allowOrigin).toBeNull();
    expect(Object.keys(hot.body)).toEqual(Object.keys(provider.body));
    expect(hot.body).toMatchObject({ token_type: 'Bearer', refresh_expires_in: 0, 'not-before-policy': 0 });
    expect(stableClaims(hot.body.access_token)).toEqual(stableClaims(provider.body.access_token));
    expect(hot.cacheControl).toBe('no-store');
  });

  it('password grant of a confidential client and of a public client (client_id in the body)', async () => {
    for (const [form, headers] of [
      [{ grant_type: 'password', username: 'agent', password: 'agent-password', scope: 'openid' }, appBasic],
      [{ grant_type: 'password', username: 'agent', password: 'agent-password', client_id: 'cli' }, {}],
      [{ grant_type: 'password', username: 'agent', password: 'agent-password', client_id: 'app', client_secret: secret }, {}],
    ] as const) {
      const { hot, provider } = await both({ ...form }, { ...headers });
      expect(hot.status).toBe(200);
      expect(provider.status).toBe(200);
      // oidc-provider answers a request without Origin with Access-Control-Allow-Origin: *.
      expect(hot.allowOrigin).toBeNull();
      expect(Object.keys(hot.body)).toEqual(Object.keys(provider.body));
      expect(stableClaims(hot.body.access_token)).toEqual(stableClaims(provider.body.access_token));
      expect(stableClaims(hot.body.refresh_token)).toEqual(stableClaims(provider.body.refresh_token));
    }
  });

  it('refresh_token: both paths rotate the token they are given', async () => {
    const first = await ask({ grant_type: 'password', username: 'agent', password: 'agent-password', scope: 'openid' }, appBasic);
    const hot = await ask({ grant_type: 'refresh_token', refresh_token: String(first.body.refresh_token) }, appBasic);
    const provider = await ask({ grant_type: 'refresh_token', refresh_token: String(hot.body.refresh_token) }, { ...appBasic, origin: ORIGIN });
    expect(hot.status).toBe(200);
    expect(provider.status).toBe(200);
    expect(hot.allowOrigin).toBeNull();
    expect(provider.allowOrigin).toBe(ORIGIN);
    expect(Object.keys(hot.body)).toEqual(Object.keys(provider.body));
    expect(stableClaims(hot.body.id_token)).toEqual(stableClaims(provider.body.id_token));
  });

  it.each([
    ['a wrong user password (401 with a Basic challenge)', { grant_type: 'password', username: 'agent', password: 'wrong' }],
    ['a missing username', { grant_type: 'password', password: 'x' }],
    ['an unreadable refresh token', { grant_type: 'refresh_token', refresh_token: 'not-a-token' }],
    ['a missing refresh token', { grant_type: 'refresh_token' }],
    ['a scope the client lacks', { grant_type: 'client_credentials', scope: 'openid phone' }, { authorization: basicAuth('narrow', 'narrow-secret') }],
    ['a scope with invalid characters', { grant_type: 'client_credentials', scope: 'a"b' }],
    ['a resource indicator', { grant_type: 'client_credentials', resource: 'https://api.example.org' }],
    ['a refresh scope beyond the token', { grant_type: 'refresh_token', refresh_token: 'x.y.z', scope: 'openid' }],
  ])('the same error for %s', async (_name, form, headers = appBasic) => {
    const { hot, provider } = await both(form as Record<string, string>, headers as Record<string, string>);
    expect(hot.status).toBeGreaterThanOrEqual(400);
    expect({ ...hot, allowOrigin: null }).toEqual({ ...provider, allowOrigin: null });
  });

  it.each([
    ['a wrong client secret', { grant_type: 'client_credentials' }, { authorization: basicAuth('app', 'wrong') }],
    ['an unknown client', { grant_type: 'client_credentials' }, { authorization: basicAuth('nobody', 'x') }],
    ['two client authentication methods', { grant_type: 'client_credentials', client_secret: secret }, appBasic],
    ['a grant type the client may not use', { grant_type: 'password', username: 'agent', password: 'agent-password' }, { authorization: basicAuth('browser-only', 'browser-secret') }],
    ['a public client sending a secret', { grant_type: 'password', username: 'agent', password: 'agent-password', client_id: 'cli', client_secret: 'x' }, {}],
  ])('leaves %s to oidc-provider', async (_name, form, headers) => {
    const res = await ask(form as Record<string, string>, headers as Record<string, string>);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.body).toHaveProperty('error');
    expect(['invalid_client', 'invalid_request', 'unauthorized_client']).toContain(res.body.error);
  });

  it('refuses a parameter given twice, as oidc-provider does', async () => {
    const res = await fetch(tokenUrl, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...appBasic },
      body: 'grant_type=client_credentials&scope=openid&scope=profile',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: "'scope' parameter must not be provided twice" });
  });
});

describe('HTTP Basic client credentials (src/http/basic-auth.ts)', () => {
  const protocol = () => tokenUrl.replace(/\/token$/, '');
  const encoded = (raw: string) => `Basic ${Buffer.from(raw).toString('base64')}`;
  const MALFORMED = { error: 'invalid_request', error_description: 'invalid authorization header value format' };
  const BADLY_ENCODED = { error: 'invalid_request', error_description: 'client_id and client_secret in the authorization header are not properly encoded' };

  it.each([
    ['another scheme', `Bearer ${Buffer.from(`app:${secret}`).toString('base64')}`, MALFORMED],
    ['an extra part', `${basicAuth('app', secret)} more`, MALFORMED],
    ['base64 with wrong padding', 'Basic YXBwOnNlY3JldA=', MALFORMED],
    ['no colon', encoded('app'), MALFORMED],
    ['broken percent-encoding', encoded('app:%E0%A4%A'), BADLY_ENCODED],
    ['a character outside printable ASCII', encoded('app:caf%C3%A9'), BADLY_ENCODED],
  ])('the token endpoint (both paths), introspection and revocation refuse %s alike', async (_name, authorization, expected) => {
    const { hot, provider } = await both({ grant_type: 'client_credentials' }, { authorization });
    for (const answer of [hot, provider]) {
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual(expected);
    }
    for (const endpoint of ['token/introspect', 'revoke']) {
      const res = await postForm(`${protocol()}/${endpoint}`, { token: 'x' }, { authorization });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual(expected);
    }
  });

  it('reads a form-encoded client id and secret', async () => {
    const { hot } = await both({ grant_type: 'client_credentials' }, { authorization: encoded(`app:${encodeURIComponent(secret)}`) });
    expect(hot.status).toBe(200);
    const introspected = await postForm(`${protocol()}/token/introspect`, { token: String(hot.body.access_token) }, { authorization: encoded(`app:${secret}`) });
    expect(await introspected.json()).toMatchObject({ active: true, client_id: 'app' });
  });
});

describe('events and metrics of the hot path', () => {
  it('records CLIENT_LOGIN, LOGIN, REFRESH_TOKEN and their errors, and counts tokens issued', async () => {
    await server.store.db.deleteFrom('events').execute();
    const metricsBefore = await (await fetch(`${server.url}/metrics`)).text();
    const issued = (text: string, grant: string): number => Number(new RegExp(`cloakroom_tokens_issued_total\\{realm="hot",grant_type="${grant}"\\} (\\d+)`).exec(text)?.[1] ?? 0);

    expect((await ask({ grant_type: 'client_credentials' }, appBasic)).status).toBe(200);
    const login = await ask({ grant_type: 'password', username: 'agent', password: 'agent-password' }, appBasic);
    expect((await ask({ grant_type: 'refresh_token', refresh_token: String(login.body.refresh_token) }, appBasic)).status).toBe(200);
    expect((await ask({ grant_type: 'password', username: 'agent', password: 'nope' }, appBasic)).status).toBe(401);
    expect((await ask({ grant_type: 'client_credentials', resource: 'https://x' }, appBasic)).status).toBe(400);

    const metricsAfter = await (await fetch(`${server.url}/metrics`)).text();
    expect(issued(metricsAfter, 'client_credentials') - issued(metricsBefore, 'client_credentials')).toBe(1);
    expect(issued(metricsAfter, 'password') - issued(metricsBefore, 'password')).toBe(1);
    expect(issued(metricsAfter, 'refresh_token') - issued(metricsBefore, 'refresh_token')).toBe(1);

    // Events are written after the answer; wait for the last one.
    let types: string[] = [];
    for (let i = 0; i < 50 && types.length < 5; i++) {
      types = (await server.store.db.selectFrom('events').select('type').orderBy('time').execute()).map((r) => r.type);
      if (types.length < 5) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(types.sort()).toEqual(['CLIENT_LOGIN', 'CLIENT_LOGIN_ERROR', 'LOGIN', 'LOGIN_ERROR', 'REFRESH_TOKEN']);
  });
});
