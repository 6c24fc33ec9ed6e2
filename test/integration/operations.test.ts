// Running Cloakroom in production: health, metrics, request ids, URL layout behind proxies and
// relative paths, realm isolation, login events, ES256 realms, secrets sealed at rest.
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { basicAuth, postForm, startTestServer, type TestServer } from '../support/server.ts';

const TOKEN = '/protocol/openid-connect/token';
const INTROSPECT = '/protocol/openid-connect/token/introspect';
const CERTS = '/protocol/openid-connect/certs';
const DISCOVERY = '/.well-known/openid-configuration';

let server: TestServer;
const secret = 'ops-secret-0123456789';
const otherSecret = 'iso-b-secret-9876543210';

const serviceClient = (clientId: string, clientSecret: string): Record<string, unknown> => ({
  clientId, secret: clientSecret, serviceAccountsEnabled: true, standardFlowEnabled: false,
});

beforeAll(async () => {
  server = await startTestServer();
  await server.importRealm({ realm: 'ops', clients: [serviceClient('svc', secret)] });
  await server.importRealm({ realm: 'iso-a', clients: [serviceClient('svc', 'iso-a-secret-0123456789'), { clientId: 'gateway', secret: 'gw-a', standardFlowEnabled: false }] });
  await server.importRealm({ realm: 'iso-b', clients: [serviceClient('svc', otherSecret), { clientId: 'gateway', secret: 'gw-b', standardFlowEnabled: false }] });
  await server.importRealm({ realm: 'evented', eventsEnabled: true, clients: [serviceClient('svc', secret)] });
  await server.importRealm({ realm: 'silent', clients: [serviceClient('svc', secret)] });
  await server.importRealm({
    realm: 'ec', defaultSignatureAlgorithm: 'ES256',
    clients: [serviceClient('svc', secret), { clientId: 'gateway', secret: 'gw-ec', standardFlowEnabled: false }],
  });
});

afterAll(async () => {
  await server?.stop();
});

async function clientCredentials(base: string, realm: string, clientId: string, clientSecret: string, headers: Record<string, string> = {}): Promise<Response> {
  return postForm(`${base}/realms/${realm}${TOKEN}`, { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, clientSecret), ...headers });
}

async function accessToken(base: string, realm: string, clientId: string, clientSecret: string): Promise<string> {
  const res = await clientCredentials(base, realm, clientId, clientSecret);
  const body = await res.json() as { access_token?: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.access_token!;
}

const claimsOf = (jwt: string): Record<string, unknown> => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

/** The value of one Prometheus sample (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('}');
    const labelText = line.slice(name.length + 1, close);
    const found = Object.fromEntries([...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(close + 1).trim());
  }
  return 0;
}

describe('health', () => {
  it('answers /health/live with UP', async () => {
    const res = await fetch(`${server.url}/health/live`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toMatchObject({ status: 'UP' });
  });

  it('answers /health/ready with the database UP', async () => {
    const res = await fetch(`${server.url}/health/ready`);
    expect(res.status).toBe(200);
    const body = await res.json() as { status: string; checks: Array<{ name: string; status: string }> };
    expect(body.status).toBe('UP');
    expect(body.checks).toContainEqual(expect.objectContaining({ name: 'database', status: 'UP' }));
  });
});

describe('metrics', () => {
  it('exposes Prometheus text with request counts, durations and issued tokens by route template', async () => {
    const before = await (await fetch(`${server.url}/metrics`)).text();
    const issuedBefore = sample(before, 'cloakroom_tokens_issued_total', { realm: 'ops', grant_type: 'client_credentials' });
    const route = '/realms/:realm/protocol/openid-connect/token';
    const requestsBefore = sample(before, 'cloakroom_http_requests_total', { method: 'POST', route, status: '200' });

    await accessToken(server.url, 'ops', 'svc', secret);
    await accessToken(server.url, 'ops', 'svc', secret);
    const failed = await clientCredentials(server.url, 'ops', 'svc', 'wrong');
    expect(failed.status).toBe(401);

    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('# TYPE cloakroom_http_requests_total counter');
    expect(text).toContain('# TYPE cloakroom_http_request_duration_seconds histogram');
    expect(sample(text, 'cloakroom_http_requests_total', { method: 'POST', route, status: '200' })).toBe(requestsBefore + 2);
    expect(sample(text, 'cloakroom_http_requests_total', { method: 'POST', route, status: '401' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'cloakroom_http_request_duration_seconds_count', { method: 'POST', route, status: '200' })).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'cloakroom_tokens_issued_total', { realm: 'ops', grant_type: 'client_credentials' })).toBe(issuedBefore + 2);
  });

  it('keeps realm names and raw paths out of route labels', async () => {
    const name = `unknown-realm-${Date.now()}`;
    await fetch(`${server.url}/realms/${name}${DISCOVERY}`);
    await fetch(`${server.url}/some/random/path-${name}`);
    await fetch(`${server.url}/realms/ops/account/${name}`);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).not.toContain(name);
    expect(sample(text, 'cloakroom_http_requests_total', { method: 'GET', route: '/realms/:realm/.well-known/openid-configuration', status: '404' })).toBeGreaterThanOrEqual(1);
  });
});

describe('request ids', () => {
  it('sets X-Request-Id on every response, fresh per request', async () => {
    const a = await fetch(`${server.url}/health/live`);
    const b = await fetch(`${server.url}/realms/ops${DISCOVERY}`);
    const c = await clientCredentials(server.url, 'ops', 'svc', secret);
    const d = await fetch(`${server.url}/nope`);
    const ids = [a, b, c, d].map((r) => r.headers.get('x-request-id'));
    for (const id of ids) expect(id).toMatch(/^[\w.-]{1,64}$/);
    expect(new Set(ids).size).toBe(4);
  });

  it('echoes a sane incoming X-Request-Id, also from oidc-provider routes', async () => {
    for (const url of [`${server.url}/health/ready`, `${server.url}/realms/ops${DISCOVERY}`, `${server.url}/realms/ops${CERTS}`]) {
      const res = await fetch(url, { headers: { 'x-request-id': 'trace-abc.123_XYZ' } });
      expect(res.headers.get('x-request-id')).toBe('trace-abc.123_XYZ');
    }
    const token = await clientCredentials(server.url, 'ops', 'svc', secret, { 'x-request-id': 'tok-42' });
    expect(token.headers.get('x-request-id')).toBe('tok-42');
  });

  it('replaces an unsafe or oversized incoming X-Request-Id', async () => {
    for (const incoming of ['has space', 'a'.repeat(65), '<script>', 'x;y=1', '../../etc']) {
      const res = await fetch(`${server.url}/health/live`, { headers: { 'x-request-id': incoming } });
      const id = res.headers.get('x-request-id');
      expect(id).not.toBe(incoming);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});

describe('KC_HTTP_RELATIVE_PATH=/auth', () => {
  let legacy: TestServer;
  let origin: string;
  beforeAll(async () => {
    legacy = await startTestServer({ env: { KC_HTTP_RELATIVE_PATH: '/auth' } });
    origin = `http://127.0.0.1:${legacy.port}`;
    await legacy.importRealm({ realm: 'legacy', clients: [serviceClient('svc', secret)] });
  });
  afterAll(async () => {
    await legacy?.stop();
  });

  it('reports its URL with the relative path', () => {
    expect(legacy.url).toBe(`${origin}/auth`);
  });

  it('serves discovery under /auth with /auth in issuer and endpoints', async () => {
    const res = await fetch(`${origin}/auth/realms/legacy${DISCOVERY}`);
    expect(res.status).toBe(200);
    const meta = await res.json() as Record<string, string>;
    expect(meta.issuer).toBe(`${origin}/auth/realms/legacy`);
    expect(meta.token_endpoint).toBe(`${origin}/auth/realms/legacy${TOKEN}`);
    expect(meta.jwks_uri).toBe(`${origin}/auth/realms/legacy${CERTS}`);
    expect(meta.introspection_endpoint).toBe(`${origin}/auth/realms/legacy${INTROSPECT}`);
  });

  it('issues tokens there (openid-client) with /auth in iss, verifiable against certs', async () => {
    const config = await oidc.discovery(new URL(`${origin}/auth/realms/legacy`), 'svc', undefined, oidc.ClientSecretBasic(secret), { execute: [oidc.allowInsecureRequests] });
    const tokens = await oidc.clientCredentialsGrant(config);
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${origin}/auth/realms/legacy${CERTS}`)), {
      issuer: `${origin}/auth/realms/legacy`,
    });
    expect(payload.iss).toBe(`${origin}/auth/realms/legacy`);
    const introspected = await postForm(`${origin}/auth/realms/legacy${INTROSPECT}`, { token: tokens.access_token }, { authorization: basicAuth('svc', secret) });
    expect(await introspected.json()).toMatchObject({ active: true, iss: `${origin}/auth/realms/legacy` });
  });

  it('does not serve the root layout', async () => {
    for (const path of [`/realms/legacy${DISCOVERY}`, `/realms/legacy${CERTS}`, '/realms/legacy']) {
      const res = await fetch(`${origin}${path}`);
      expect(res.status).toBe(404);
      await res.arrayBuffer();
    }
    const token = await clientCredentials(origin, 'legacy', 'svc', secret);
    expect(token.status).toBe(404);
  });

  it('serves health and metrics under /auth', async () => {
    const ready = await fetch(`${origin}/auth/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'UP' });
    expect((await fetch(`${origin}/auth/health/live`)).status).toBe(200);
    expect((await fetch(`${origin}/auth/metrics`)).status).toBe(200);
  });
});

describe('KC_HOSTNAME', () => {
  let fixed: TestServer;
  beforeAll(async () => {
    fixed = await startTestServer({ env: { KC_HOSTNAME: 'https://sso.example.com' } });
    await fixed.importRealm({ realm: 'fixed', clients: [serviceClient('svc', secret)] });
  });
  afterAll(async () => {
    await fixed?.stop();
  });

  it('uses the configured origin in discovery whatever the Host header', async () => {
    const variants: Record<string, string>[] = [{}, { host: 'other.example.net:9999' }, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' }];
    for (const headers of variants) {
      const res = await fetch(`${fixed.url}/realms/fixed${DISCOVERY}`, { headers });
      expect(res.status).toBe(200);
      const meta = await res.json() as Record<string, string>;
      expect(meta.issuer).toBe('https://sso.example.com/realms/fixed');
      expect(meta.token_endpoint).toBe(`https://sso.example.com/realms/fixed${TOKEN}`);
      expect(meta.jwks_uri).toBe(`https://sso.example.com/realms/fixed${CERTS}`);
    }
  });

  it('issues tokens with the configured issuer that introspect as active', async () => {
    const token = await accessToken(fixed.url, 'fixed', 'svc', secret);
    expect(claimsOf(token).iss).toBe('https://sso.example.com/realms/fixed');
    const res = await postForm(`${fixed.url}/realms/fixed${INTROSPECT}`, { token }, { authorization: basicAuth('svc', secret), host: 'whatever.example' });
    expect(await res.json()).toMatchObject({ active: true });
  });

  it('answers realm info with the configured origin', async () => {
    const res = await fetch(`${fixed.url}/realms/fixed`);
    expect(await res.json()).toMatchObject({ 'token-service': 'https://sso.example.com/realms/fixed/protocol/openid-connect' });
  });
});

describe('KC_PROXY_HEADERS=xforwarded', () => {
  let proxied: TestServer;
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'id.example.org' };
  beforeAll(async () => {
    proxied = await startTestServer({ env: { KC_PROXY_HEADERS: 'xforwarded' } });
    await proxied.importRealm({ realm: 'edge', clients: [serviceClient('svc', secret)] });
  });
  afterAll(async () => {
    await proxied?.stop();
  });

  it('takes the issuer from X-Forwarded-Proto and X-Forwarded-Host', async () => {
    const res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: forwarded });
    const meta = await res.json() as Record<string, string>;
    expect(meta.issuer).toBe('https://id.example.org/realms/edge');
    expect(meta.token_endpoint).toBe(`https://id.example.org/realms/edge${TOKEN}`);
  });

  it('adds a non-default X-Forwarded-Port and uses the first of several values', async () => {
    let res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: { ...forwarded, 'x-forwarded-port': '8443' } });
    expect((await res.json() as { issuer: string }).issuer).toBe('https://id.example.org:8443/realms/edge');
    res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: { 'x-forwarded-proto': 'https, http', 'x-forwarded-host': 'id.example.org, internal.local' } });
    expect((await res.json() as { issuer: string }).issuer).toBe('https://id.example.org/realms/edge');
  });

  it('issues tokens with the forwarded issuer', async () => {
    const res = await clientCredentials(proxied.url, 'edge', 'svc', secret, forwarded);
    const { access_token } = await res.json() as { access_token: string };
    expect(claimsOf(access_token).iss).toBe('https://id.example.org/realms/edge');
    const introspected = await postForm(`${proxied.url}/realms/edge${INTROSPECT}`, { token: access_token }, { authorization: basicAuth('svc', secret), ...forwarded });
    expect(await introspected.json()).toMatchObject({ active: true });
  });

  it('takes the client address in token claims from X-Forwarded-For', async () => {
    const res = await clientCredentials(proxied.url, 'edge', 'svc', secret, { ...forwarded, 'x-forwarded-for': '203.0.113.7' });
    const claims = claimsOf((await res.json() as { access_token: string }).access_token);
    expect(claims).toMatchObject({ clientAddress: '203.0.113.7', clientHost: '203.0.113.7' });
  });

  it('uses the request host when no forwarded headers are sent', async () => {
    const res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`);
    expect((await res.json() as { issuer: string }).issuer).toBe(`${proxied.url}/realms/edge`);
  });

  it('refuses a forwarded protocol other than http(s) with 400', async () => {
    const res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: { 'x-forwarded-proto': 'javascript', 'x-forwarded-host': 'id.example.org' } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('ignores the same headers on a server without KC_PROXY_HEADERS', async () => {
    const res = await fetch(`${server.url}/realms/ops${DISCOVERY}`, { headers: forwarded });
    const meta = await res.json() as Record<string, string>;
    expect(meta.issuer).toBe(`${server.url}/realms/ops`);
    const token = await clientCredentials(server.url, 'ops', 'svc', secret, { ...forwarded, 'x-forwarded-for': '203.0.113.7', forwarded: 'for=203.0.113.8' });
    const claims = claimsOf((await token.json() as { access_token: string }).access_token);
    expect(claims.iss).toBe(`${server.url}/realms/ops`);
    // A client cannot claim another address either.
    expect(claims.clientAddress).toBe('127.0.0.1');
  });
});

describe('KC_PROXY_HEADERS=forwarded', () => {
  let proxied: TestServer;
  beforeAll(async () => {
    proxied = await startTestServer({ env: { KC_PROXY_HEADERS: 'forwarded' } });
    await proxied.importRealm({ realm: 'edge', clients: [serviceClient('svc', secret)] });
  });
  afterAll(async () => {
    await proxied?.stop();
  });

  it('takes the issuer from the RFC 7239 Forwarded header and ignores X-Forwarded-*', async () => {
    let res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: { forwarded: 'for=203.0.113.9;proto=https;host="id.example.org"' } });
    expect((await res.json() as { issuer: string }).issuer).toBe('https://id.example.org/realms/edge');
    res = await fetch(`${proxied.url}/realms/edge${DISCOVERY}`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' } });
    expect((await res.json() as { issuer: string }).issuer).toBe(`${proxied.url}/realms/edge`);
  });

  it('takes the client address from Forwarded for=, never from a client-sent X-Forwarded-For', async () => {
    const res = await clientCredentials(proxied.url, 'edge', 'svc', secret, {
      forwarded: 'for=203.0.113.9;proto=https;host=id.example.org', 'x-forwarded-for': '6.6.6.6',
    });
    const claims = claimsOf((await res.json() as { access_token: string }).access_token);
    expect(claims.iss).toBe('https://id.example.org/realms/edge');
    expect(claims.clientAddress).not.toBe('6.6.6.6');
    expect(claims.clientAddress).toBe('203.0.113.9');
  });
});

describe('realm isolation', () => {
  it('answers active:false for a realm A token introspected at realm B', async () => {
    const tokenA = await accessToken(server.url, 'iso-a', 'svc', 'iso-a-secret-0123456789');
    const atB = await postForm(`${server.url}/realms/iso-b${INTROSPECT}`, { token: tokenA }, { authorization: basicAuth('gateway', 'gw-b') });
    expect(atB.status).toBe(200);
    expect(await atB.json()).toEqual({ active: false });
    // Control: realm A itself says active.
    const atA = await postForm(`${server.url}/realms/iso-a${INTROSPECT}`, { token: tokenA }, { authorization: basicAuth('gateway', 'gw-a') });
    expect(await atA.json()).toMatchObject({ active: true });
  });

  it('gives the same client id in two realms separate secrets, each valid only in its realm', async () => {
    const rows = await server.store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
      .select(['realms.name', 'clients.secret_sealed']).where('clients.client_id', '=', 'svc')
      .where('realms.name', 'in', ['iso-a', 'iso-b']).execute();
    expect(rows).toHaveLength(2);
    expect(server.box.open(rows.find((r) => r.name === 'iso-a')!.secret_sealed!)).toBe('iso-a-secret-0123456789');
    expect(server.box.open(rows.find((r) => r.name === 'iso-b')!.secret_sealed!)).toBe(otherSecret);

    expect((await clientCredentials(server.url, 'iso-a', 'svc', 'iso-a-secret-0123456789')).status).toBe(200);
    expect((await clientCredentials(server.url, 'iso-b', 'svc', otherSecret)).status).toBe(200);
    const crossAB = await clientCredentials(server.url, 'iso-b', 'svc', 'iso-a-secret-0123456789');
    expect(crossAB.status).toBe(401);
    expect(await crossAB.json()).toMatchObject({ error: 'invalid_client' });
    const crossBA = await clientCredentials(server.url, 'iso-a', 'svc', otherSecret);
    expect(crossBA.status).toBe(401);
    // Introspection authenticates per realm too.
    const introspect = await postForm(`${server.url}/realms/iso-a${INTROSPECT}`, { token: 'x' }, { authorization: basicAuth('gateway', 'gw-b') });
    expect(introspect.status).toBe(401);
  });

  it('signs each realm with its own keys', async () => {
    const certsA = await (await fetch(`${server.url}/realms/iso-a${CERTS}`)).json() as { keys: Array<{ kid: string }> };
    const certsB = await (await fetch(`${server.url}/realms/iso-b${CERTS}`)).json() as { keys: Array<{ kid: string }> };
    const kidsA = new Set(certsA.keys.map((k) => k.kid));
    expect(certsB.keys.some((k) => kidsA.has(k.kid))).toBe(false);
    const tokenA = await accessToken(server.url, 'iso-a', 'svc', 'iso-a-secret-0123456789');
    await expect(jwtVerify(tokenA, createRemoteJWKSet(new URL(`${server.url}/realms/iso-b${CERTS}`)))).rejects.toThrow();
  });
});

describe('login events', () => {
  async function eventsOf(realm: string): Promise<Array<{ type: string; client_id: string | null; error: string | null; ip_address: string | null }>> {
    return server.store.db.selectFrom('events').innerJoin('realms', 'realms.id', 'events.realm_id')
      .select(['events.type', 'events.client_id', 'events.error', 'events.ip_address']).where('realms.name', '=', realm).execute();
  }

  async function poll<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 2000): Promise<T> {
    const deadline = Date.now() + ms;
    let value = await read();
    while (!done(value) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      value = await read();
    }
    return value;
  }

  it('records CLIENT_LOGIN for a client_credentials grant when the realm has events enabled', async () => {
    await accessToken(server.url, 'evented', 'svc', secret);
    const events = await poll(() => eventsOf('evented'), (rows) => rows.some((r) => r.type === 'CLIENT_LOGIN'));
    expect(events).toContainEqual(expect.objectContaining({ type: 'CLIENT_LOGIN', client_id: 'svc', error: null }));
  });

  it('records the client address on login events, as Keycloak does (ipAddress)', async () => {
    await accessToken(server.url, 'evented', 'svc', secret);
    const events = await poll(() => eventsOf('evented'), (rows) => rows.some((r) => r.type === 'CLIENT_LOGIN'));
    expect(events.filter((r) => r.type === 'CLIENT_LOGIN').map((r) => r.ip_address)).toContain('127.0.0.1');
  });

  it('records CLIENT_LOGIN_ERROR for a failed client_credentials grant', async () => {
    const res = await clientCredentials(server.url, 'evented', 'svc', 'wrong');
    expect(res.status).toBe(401);
    const events = await poll(() => eventsOf('evented'), (rows) => rows.some((r) => r.type === 'CLIENT_LOGIN_ERROR'));
    expect(events).toContainEqual(expect.objectContaining({ type: 'CLIENT_LOGIN_ERROR', client_id: 'svc' }));
  });

  it('records nothing for a realm without events', async () => {
    await accessToken(server.url, 'silent', 'svc', secret);
    await clientCredentials(server.url, 'silent', 'svc', 'wrong');
    // Give an (unwanted) asynchronous write the time the positive test allows.
    await accessToken(server.url, 'evented', 'svc', secret);
    await poll(() => eventsOf('evented'), (rows) => rows.filter((r) => r.type === 'CLIENT_LOGIN').length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await eventsOf('silent')).toEqual([]);
  });
});

describe('ES256 realm', () => {
  const realmUrl = (): string => `${server.url}/realms/ec`;

  it('publishes an EC P-256 ES256 key and the RSA key', async () => {
    const res = await fetch(`${realmUrl()}${CERTS}`);
    const { keys } = await res.json() as { keys: Array<Record<string, string>> };
    expect(keys).toHaveLength(2);
    expect(keys).toContainEqual(expect.objectContaining({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' }));
    expect(keys).toContainEqual(expect.objectContaining({ kty: 'RSA', alg: 'RS256', use: 'sig' }));
    for (const key of keys) expect(key).not.toHaveProperty('d');
  });

  it('signs client_credentials access tokens with ES256, verifiable against certs', async () => {
    const token = await accessToken(server.url, 'ec', 'svc', secret);
    const header = decodeProtectedHeader(token);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JWT' });
    const { keys } = await (await fetch(`${realmUrl()}${CERTS}`)).json() as { keys: Array<Record<string, string>> };
    expect(keys.find((k) => k.kid === header.kid)).toMatchObject({ kty: 'EC', alg: 'ES256' });
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${realmUrl()}${CERTS}`)), { issuer: realmUrl(), algorithms: ['ES256'] });
    expect(payload).toMatchObject({ azp: 'svc', typ: 'Bearer' });
  });

  it('introspects its ES256 tokens as active', async () => {
    const token = await accessToken(server.url, 'ec', 'svc', secret);
    const res = await postForm(`${realmUrl()}${INTROSPECT}`, { token }, { authorization: basicAuth('gateway', 'gw-ec') });
    expect(await res.json()).toMatchObject({ active: true, client_id: 'svc' });
  });

  it('advertises ES256 in discovery', async () => {
    const meta = await (await fetch(`${realmUrl()}${DISCOVERY}`)).json() as Record<string, string[]>;
    expect(meta.id_token_signing_alg_values_supported).toContain('ES256');
  });
});

describe('secrets at rest', () => {
  it('stores client secrets sealed, never in plain text', async () => {
    const rows = await server.store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
      .select(['realms.name', 'clients.client_id', 'clients.secret_sealed']).where('clients.client_id', '=', 'svc').execute();
    expect(rows.length).toBeGreaterThanOrEqual(5);
    for (const row of rows) {
      expect(row.secret_sealed).toMatch(/^v1\.[\w-]+$/);
      expect(row.secret_sealed).not.toContain(secret);
      expect(row.secret_sealed).not.toContain(Buffer.from(secret).toString('base64url'));
    }
    const ops = rows.find((r) => r.name === 'ops')!;
    expect(server.box.open(ops.secret_sealed!)).toBe(secret);
  });

  it('seals two equal secrets differently (random IV)', async () => {
    const rows = await server.store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
      .select('clients.secret_sealed').where('clients.client_id', '=', 'svc').where('realms.name', 'in', ['ops', 'evented']).execute();
    expect(rows).toHaveLength(2);
    expect(rows[0]!.secret_sealed).not.toBe(rows[1]!.secret_sealed);
  });

  it('stores private signing keys sealed', async () => {
    const rows = await server.store.db.selectFrom('signing_keys').selectAll().execute();
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.private_jwk_sealed).toMatch(/^v1\./);
      expect(JSON.stringify(row)).not.toMatch(/\\?"d\\?":/);
      expect(JSON.parse(server.box.open(row.private_jwk_sealed)) as Record<string, unknown>).toHaveProperty('d');
    }
  });
});
