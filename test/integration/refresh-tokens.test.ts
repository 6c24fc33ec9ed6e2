// Refresh tokens end to end against a real server and database: Keycloak's response shape,
// scope narrowing, client and realm binding, rotation with reuse detection (also under 50
// concurrent refreshes, where the database must serialize the uses), Cloakroom's grace window,
// offline tokens (surviving logout and a restart), revocation, introspection and session idle.
// Run it on PostgreSQL too (DATABASE_URL): that is where the atomicity of a use matters.
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { browserlessLogin, CookieJar, get } from '../support/browserless.ts';
import { basicAuth, createTestDatabase, postForm, postgresAdminUrl, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
const realmIds: Record<string, string> = {};

type Client = { id: string; secret?: string };
const APP: Client = { id: 'app', secret: 'app-secret-0123456789' };
const OTHER_APP: Client = { id: 'other-app', secret: 'other-app-secret-0123' };
const SPA: Client = { id: 'spa' };
const NARROW: Client = { id: 'narrow', secret: 'narrow-secret-0123456' };
const OTHER_REALM_APP: Client = { id: 'app', secret: 'app-secret-of-other-realm' };
const REDIRECT = 'http://localhost:3000/cb';
const PASSWORD = 'Secret-pass-1';

type TokenBody = {
  access_token: string;
  expires_in: number;
  refresh_expires_in: number;
  refresh_token: string;
  token_type: string;
  id_token?: string;
  'not-before-policy': number;
  session_state: string;
  scope: string;
};
type ErrorBody = { error: string; error_description?: string };

const users = [
  { username: 'alice', email: 'alice@example.com', firstName: 'Alice', lastName: 'Liddell', enabled: true, credentials: [{ type: 'password', value: PASSWORD }] },
  { username: 'bob', email: 'bob@example.com', firstName: 'Bob', lastName: 'Builder', enabled: true, credentials: [{ type: 'password', value: PASSWORD }] },
];

const clients = [
  {
    clientId: APP.id, secret: APP.secret, directAccessGrantsEnabled: true, standardFlowEnabled: true,
    redirectUris: [`${REDIRECT}*`], attributes: { 'post.logout.redirect.uris': '+' },
  },
  { clientId: OTHER_APP.id, secret: OTHER_APP.secret, directAccessGrantsEnabled: true },
  {
    clientId: SPA.id, publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: true,
    redirectUris: [`${REDIRECT}*`], attributes: { 'post.logout.redirect.uris': '+' },
  },
  {
    // profile and email optional, so that a refresh can narrow them away (default scopes are
    // always granted, in Keycloak as here).
    clientId: NARROW.id, secret: NARROW.secret, directAccessGrantsEnabled: true,
    defaultClientScopes: ['web-origins', 'acr', 'roles', 'basic'],
    optionalClientScopes: ['profile', 'email', 'address', 'phone', 'offline_access'],
  },
];

function realmRep(realm: string, settings: Record<string, unknown> = {}): Record<string, unknown> {
  return { realm, enabled: true, eventsEnabled: true, enabledEventTypes: ['LOGIN', 'REFRESH_TOKEN', 'REFRESH_TOKEN_ERROR', 'LOGOUT', 'REVOKE_GRANT'], clients, users, ...settings };
}

beforeAll(async () => {
  server = await startTestServer();
  const reps = [
    realmRep('rt-default'),
    { realm: 'rt-other', enabled: true, clients: [{ clientId: OTHER_REALM_APP.id, secret: OTHER_REALM_APP.secret, directAccessGrantsEnabled: true }], users },
    realmRep('rt-rotate', { revokeRefreshToken: true, refreshTokenMaxReuse: 0 }),
    realmRep('rt-reuse2', { revokeRefreshToken: true, refreshTokenMaxReuse: 2 }),
    realmRep('rt-reuse3', { revokeRefreshToken: true, refreshTokenMaxReuse: 3 }),
    realmRep('rt-grace', { revokeRefreshToken: true, refreshTokenMaxReuse: 0, attributes: { 'cloakroom.refreshTokenReuseGraceSeconds': '30' } }),
    realmRep('rt-grace2', { revokeRefreshToken: true, refreshTokenMaxReuse: 0, attributes: { 'cloakroom.refreshTokenReuseGraceSeconds': '2' } }),
    realmRep('rt-idle', { ssoSessionIdleTimeout: 60 }),
    {
      ...realmRep('rt-no-offline'),
      // The default role without offline_access: nobody may have offline tokens.
      defaultRole: { name: 'default-roles-rt-no-offline', composite: true, composites: { realm: ['uma_authorization'] } },
    },
    {
      ...realmRep('rt-bare-user'),
      users: [...users, { username: 'carol', enabled: true, realmRoles: [], credentials: [{ type: 'password', value: PASSWORD }] }],
    },
  ];
  for (const rep of reps) {
    const result = await server.importRealm(rep);
    realmIds[rep.realm as string] = result.realmId;
  }
});

afterAll(async () => {
  await server?.stop();
});

// ---- helpers -------------------------------------------------------------------------------

const realmUrl = (realm: string, base = server.url): string => `${base}/realms/${realm}`;
const endpoint = (realm: string, path: string, base = server.url): string => `${realmUrl(realm, base)}/protocol/openid-connect/${path}`;

/** Client authentication: HTTP Basic for confidential clients, client_id in the body for public ones. */
function clientAuth(client: Client): { form: Record<string, string>; headers: Record<string, string> } {
  return client.secret
    ? { form: {}, headers: { authorization: basicAuth(client.id, client.secret) } }
    : { form: { client_id: client.id }, headers: {} };
}

async function tokenRequest(realm: string, client: Client, form: Record<string, string>, base = server.url): Promise<Response> {
  const auth = clientAuth(client);
  return postForm(endpoint(realm, 'token', base), { ...auth.form, ...form }, auth.headers);
}

async function passwordGrant(realm: string, client: Client = APP, scope = 'openid', username = 'alice', base = server.url): Promise<TokenBody> {
  const res = await tokenRequest(realm, client, { grant_type: 'password', username, password: PASSWORD, scope }, base);
  const body = await res.json() as TokenBody;
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body;
}

function refresh(realm: string, refreshToken: string, client: Client = APP, extra: Record<string, string> = {}, base = server.url): Promise<Response> {
  return tokenRequest(realm, client, { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra }, base);
}

async function refreshOk(realm: string, refreshToken: string, client: Client = APP, extra: Record<string, string> = {}): Promise<TokenBody> {
  const res = await refresh(realm, refreshToken, client, extra);
  const body = await res.json() as TokenBody;
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body;
}

async function refreshFails(realm: string, refreshToken: string, client: Client = APP, extra: Record<string, string> = {}, base = server.url): Promise<ErrorBody> {
  const res = await refresh(realm, refreshToken, client, extra, base);
  const body = await res.json() as ErrorBody;
  expect(res.status, JSON.stringify(body)).toBe(400);
  return body;
}

async function introspect(realm: string, token: string, client: Client = APP): Promise<Record<string, unknown>> {
  const res = await postForm(endpoint(realm, 'token/introspect'), { token }, { authorization: basicAuth(client.id, client.secret!) });
  expect(res.status).toBe(200);
  return await res.json() as Record<string, unknown>;
}

async function revoke(realm: string, token: string, client: Client, extra: Record<string, string> = {}): Promise<Response> {
  const auth = clientAuth(client);
  return postForm(endpoint(realm, 'revoke'), { ...auth.form, token, ...extra }, auth.headers);
}

async function userinfoStatus(realm: string, accessToken: string): Promise<number> {
  const res = await fetch(endpoint(realm, 'userinfo'), { headers: { authorization: `Bearer ${accessToken}` } });
  await res.arrayBuffer();
  return res.status;
}

/** Browser login (hosted pages) for the public client with PKCE, then the code exchange. */
async function browserTokens(realm: string, scope: string, jar = new CookieJar(), extra: Record<string, string> = {}): Promise<{ tokens: TokenBody; jar: CookieJar }> {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const auth = new URL(endpoint(realm, 'auth'));
  auth.search = new URLSearchParams({
    client_id: SPA.id, redirect_uri: REDIRECT, response_type: 'code', scope, state: crypto.randomUUID(),
    code_challenge: challenge, code_challenge_method: 'S256', ...extra,
  }).toString();
  const outcome = await browserlessLogin(auth.href, 'alice', PASSWORD, REDIRECT, jar);
  const code = new URL(outcome.redirect).searchParams.get('code');
  expect(code, outcome.redirect).toBeTruthy();
  const res = await tokenRequest(realm, SPA, { grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT, code_verifier: verifier });
  const tokens = await res.json() as TokenBody;
  expect(res.status, JSON.stringify(tokens)).toBe(200);
  return { tokens, jar: outcome.jar };
}

/** Flips one character in the middle of the signature (the last one may only carry padding bits). */
function tamperSignature(jwt: string): string {
  const [header, payload, signature] = jwt.split('.') as [string, string, string];
  const i = Math.floor(signature.length / 2);
  const flipped = signature[i] === 'A' ? 'B' : 'A';
  return `${header}.${payload}.${signature.slice(0, i)}${flipped}${signature.slice(i + 1)}`;
}

async function pollEvents(realm: string, sessionId: string, type: string, min = 1): Promise<Array<{ type: string; error: string | null; details: unknown; client_id: string | null }>> {
  for (let i = 0; ; i++) {
    const rows = await server.store.db.selectFrom('events').select(['type', 'error', 'details', 'client_id'])
      .where('realm_id', '=', realmIds[realm]!).where('session_id', '=', sessionId).where('type', '=', type).execute();
    if (rows.length >= min || i >= 50) return rows;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function detailsOf(event: { details: unknown }): Record<string, unknown> {
  return typeof event.details === 'string' ? JSON.parse(event.details) as Record<string, unknown> : event.details as Record<string, unknown>;
}

/** n concurrent refreshes of one token: statuses and bodies. */
async function stampede(realm: string, refreshToken: string, n = 50): Promise<Array<{ status: number; body: TokenBody & ErrorBody }>> {
  return Promise.all(Array.from({ length: n }, async () => {
    const res = await refresh(realm, refreshToken);
    return { status: res.status, body: await res.json() as TokenBody & ErrorBody };
  }));
}

// ---- 1. default realm ------------------------------------------------------------------------

describe('refresh with the default realm settings (no rotation)', () => {
  it('answers with Keycloak fields, a new refresh token each time, the same session', async () => {
    const first = await passwordGrant('rt-default');
    const sid = first.session_state;
    let current = first.refresh_token;
    const seen = new Set([current]);
    for (let i = 0; i < 3; i++) {
      const body = await refreshOk('rt-default', current);
      expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'id_token', 'not-before-policy', 'refresh_expires_in', 'refresh_token', 'scope', 'session_state', 'token_type'].sort());
      expect(body.token_type).toBe('Bearer');
      expect(body.expires_in).toBe(300);
      expect(body.refresh_expires_in).toBe(1800);
      expect(body['not-before-policy']).toBe(0);
      expect(body.session_state).toBe(sid);
      expect(body.scope.split(' ')).toEqual(expect.arrayContaining(['openid', 'profile', 'email']));
      expect(seen.has(body.refresh_token)).toBe(false);
      seen.add(body.refresh_token);

      const access = decodeJwt(body.access_token);
      expect(access).toMatchObject({ typ: 'Bearer', sid, azp: 'app', iss: realmUrl('rt-default'), preferred_username: 'alice' });
      const id = decodeJwt(body.id_token!);
      expect(id).toMatchObject({ typ: 'ID', sid, aud: 'app', azp: 'app' });
      const rt = decodeJwt(body.refresh_token);
      expect(rt).toMatchObject({ typ: 'Refresh', sid, azp: 'app', iss: realmUrl('rt-default'), aud: realmUrl('rt-default') });
      expect(rt.jti).not.toBe(decodeJwt(current).jti);
      expect(await userinfoStatus('rt-default', body.access_token)).toBe(200);
      current = body.refresh_token;
    }
    // Without rotation the very first token still works after its successors did.
    const again = await refreshOk('rt-default', first.refresh_token);
    expect(again.session_state).toBe(sid);
  });

  it('records REFRESH_TOKEN events', async () => {
    const first = await passwordGrant('rt-default');
    await refreshOk('rt-default', first.refresh_token);
    const events = await pollEvents('rt-default', first.session_state, 'REFRESH_TOKEN');
    expect(events).toHaveLength(1);
    expect(events[0]!.client_id).toBe('app');
    expect(detailsOf(events[0]!)).toMatchObject({ refresh_token_id: decodeJwt(first.refresh_token).jti, refresh_token_type: 'Refresh' });
  });

  it('has no id_token when openid was not asked for', async () => {
    const first = await passwordGrant('rt-default', APP, 'profile');
    expect(first.id_token).toBeUndefined();
    const body = await refreshOk('rt-default', first.refresh_token);
    expect(body.id_token).toBeUndefined();
    expect(body.scope.split(' ')).not.toContain('openid');
    expect(decodeJwt(body.access_token).sid).toBe(first.session_state);
  });

  it('works for a public client identifying itself with client_id', async () => {
    const first = await passwordGrant('rt-default', SPA);
    const body = await refreshOk('rt-default', first.refresh_token, SPA);
    expect(decodeJwt(body.access_token)).toMatchObject({ azp: 'spa', sid: first.session_state });
  });

  it('lets the scope parameter narrow the scopes the token holds', async () => {
    const first = await passwordGrant('rt-default', NARROW, 'openid profile email');
    expect(first.scope.split(' ')).toEqual(expect.arrayContaining(['openid', 'profile', 'email']));
    expect(decodeJwt(first.access_token).given_name).toBe('Alice');

    const narrowed = await refreshOk('rt-default', first.refresh_token, NARROW, { scope: 'openid email' });
    const scopes = narrowed.scope.split(' ');
    expect(scopes).toContain('openid');
    expect(scopes).toContain('email');
    expect(scopes).not.toContain('profile');
    const access = decodeJwt(narrowed.access_token);
    expect(access.scope).toBe(narrowed.scope);
    expect(access.email).toBe('alice@example.com');
    expect(access.given_name).toBeUndefined();
    expect(access.preferred_username).toBeUndefined();
    expect(access.sid).toBe(first.session_state);
    expect(String(decodeJwt(narrowed.refresh_token).scope).split(' ')).not.toContain('profile');

    // The original token still holds profile; the narrowed one no longer does.
    expect((await refreshOk('rt-default', first.refresh_token, NARROW)).scope.split(' ')).toContain('profile');
    const widen = await refreshFails('rt-default', narrowed.refresh_token, NARROW, { scope: 'openid profile' });
    expect(widen.error).toBe('invalid_scope');
  });

  it('refuses a scope the token does not hold with invalid_scope', async () => {
    const first = await passwordGrant('rt-default', NARROW, 'openid email');
    const res = await refresh('rt-default', first.refresh_token, NARROW, { scope: 'openid email phone' });
    expect(res.status).toBe(400);
    expect((await res.json() as ErrorBody).error).toBe('invalid_scope');
    const unknown = await refreshFails('rt-default', first.refresh_token, NARROW, { scope: 'openid no-such-scope' });
    expect(unknown.error).toBe('invalid_scope');
    // The token itself is untouched.
    await refreshOk('rt-default', first.refresh_token, NARROW);
  });

  it('refuses the token when another client presents it', async () => {
    const first = await passwordGrant('rt-default', APP);
    const confidential = await refreshFails('rt-default', first.refresh_token, OTHER_APP);
    expect(confidential.error).toBe('invalid_grant');
    const pub = await refreshFails('rt-default', first.refresh_token, SPA);
    expect(pub.error).toBe('invalid_grant');
    // It still works for its own client.
    await refreshOk('rt-default', first.refresh_token, APP);
  });

  it('refuses garbage, tampered and foreign-realm refresh tokens with invalid_grant', async () => {
    const own = await passwordGrant('rt-default', APP);
    const foreign = await passwordGrant('rt-other', OTHER_REALM_APP);
    expect(decodeJwt(foreign.refresh_token).azp).toBe('app');

    for (const token of ['garbage', 'a.b.c', tamperSignature(own.refresh_token), foreign.refresh_token]) {
      const body = await refreshFails('rt-default', token);
      expect(body.error, token).toBe('invalid_grant');
    }
    // A token with a forged payload but the original signature.
    const [h, , s] = own.refresh_token.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...decodeJwt(own.refresh_token), sub: 'someone-else' })).toString('base64url');
    expect((await refreshFails('rt-default', `${h}.${forgedPayload}.${s}`)).error).toBe('invalid_grant');

    // This realm's token at the other realm's endpoint (same clientId there): refused too.
    expect((await refreshFails('rt-other', own.refresh_token, OTHER_REALM_APP)).error).toBe('invalid_grant');
    // Both tokens still work where they belong.
    await refreshOk('rt-default', own.refresh_token);
    const res = await refresh('rt-other', foreign.refresh_token, OTHER_REALM_APP);
    expect(res.status).toBe(200);
  });

  it('refuses a missing refresh_token parameter', async () => {
    const res = await tokenRequest('rt-default', APP, { grant_type: 'refresh_token' });
    expect(res.status).toBe(400);
    expect((await res.json() as ErrorBody).error).toBe('invalid_request');
  });
});

// ---- 2. rotation -----------------------------------------------------------------------------

describe('rotation (revokeRefreshToken)', () => {
  it('maxReuse 0: reusing a rotated token fails and ends the client session', async () => {
    const first = await passwordGrant('rt-rotate');
    const sid = first.session_state;
    const r1 = await refreshOk('rt-rotate', first.refresh_token);
    expect(r1.refresh_token).not.toBe(first.refresh_token);

    const reuse = await refreshFails('rt-rotate', first.refresh_token);
    expect(reuse).toEqual({ error: 'invalid_grant', error_description: 'Maximum allowed refresh token reuse exceeded' });
    const after = await refreshFails('rt-rotate', r1.refresh_token);
    expect(after).toEqual({ error: 'invalid_grant', error_description: "Session doesn't have required client" });

    const rows = await server.store.db.selectFrom('client_sessions').select('client_id')
      .where('realm_id', '=', realmIds['rt-rotate']!).where('user_session_id', '=', sid).execute();
    expect(rows).toHaveLength(0);

    const errors = await pollEvents('rt-rotate', sid, 'REFRESH_TOKEN_ERROR', 2);
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => e.error === 'invalid_token' && e.client_id === 'app')).toBe(true);
    expect(errors.map((e) => detailsOf(e).reason).sort()).toEqual(['Maximum allowed refresh token reuse exceeded', "Session doesn't have required client"].sort());
    expect(await pollEvents('rt-rotate', sid, 'REFRESH_TOKEN')).toHaveLength(1);
  });

  it('a disabled user is refused without using the token up; re-enabled, the same token refreshes', async () => {
    const first = await passwordGrant('rt-rotate');
    const users = () => server.store.db.updateTable('users').where('realm_id', '=', realmIds['rt-rotate']!).where('username', '=', 'alice');
    await users().set({ enabled: false }).execute();
    try {
      expect(await refreshFails('rt-rotate', first.refresh_token)).toEqual({ error: 'invalid_grant', error_description: 'User disabled' });
    } finally {
      await users().set({ enabled: true }).execute();
    }
    const next = await refreshOk('rt-rotate', first.refresh_token);
    await refreshOk('rt-rotate', next.refresh_token);
  });

  it('tokens issued before the user\'s not-before (admin user logout) are refused as a dead session', async () => {
    const first = await passwordGrant('rt-rotate');
    const issuedAt = decodeJwt(first.refresh_token).iat!;
    await server.store.db.updateTable('users').set({ not_before: issuedAt + 1 })
      .where('realm_id', '=', realmIds['rt-rotate']!).where('username', '=', 'alice').execute();
    try {
      expect(await refreshFails('rt-rotate', first.refresh_token)).toEqual({ error: 'invalid_grant', error_description: 'Session not active' });
    } finally {
      await server.store.db.updateTable('users').set({ not_before: 0 }).where('realm_id', '=', realmIds['rt-rotate']!).where('username', '=', 'alice').execute();
    }
  });

  it('maxReuse 0: a chain of successors works, each used once', async () => {
    let current = (await passwordGrant('rt-rotate')).refresh_token;
    for (let i = 0; i < 4; i++) current = (await refreshOk('rt-rotate', current)).refresh_token;
    await refreshOk('rt-rotate', current);
  });

  it('maxReuse 2: the token works exactly 3 times, the 4th use fails', async () => {
    const first = await passwordGrant('rt-reuse2');
    const successors: string[] = [];
    for (let i = 0; i < 3; i++) successors.push((await refreshOk('rt-reuse2', first.refresh_token)).refresh_token);
    expect(new Set(successors).size).toBe(3);
    const fourth = await refreshFails('rt-reuse2', first.refresh_token);
    expect(fourth).toEqual({ error: 'invalid_grant', error_description: 'Maximum allowed refresh token reuse exceeded' });
    expect((await refreshFails('rt-reuse2', successors[2]!)).error_description).toBe("Session doesn't have required client");
  });

  it('maxReuse 2: a successor older than the newest issued one is stale', async () => {
    const first = await passwordGrant('rt-reuse2');
    const a = await refreshOk('rt-reuse2', first.refresh_token);
    const b = await refreshOk('rt-reuse2', first.refresh_token);
    expect(await refreshFails('rt-reuse2', a.refresh_token)).toEqual({ error: 'invalid_grant', error_description: 'Stale token' });
    // The stale use ended the client session for everybody.
    expect((await refreshFails('rt-reuse2', b.refresh_token)).error_description).toBe("Session doesn't have required client");
  });

  it('a new login of the same client starts a fresh rotation state', async () => {
    const one = await passwordGrant('rt-rotate');
    const two = await passwordGrant('rt-rotate');
    expect(two.session_state).not.toBe(one.session_state);
    await refreshOk('rt-rotate', one.refresh_token);
    await refreshOk('rt-rotate', two.refresh_token);
  });
});

// ---- 3. concurrency --------------------------------------------------------------------------

describe('50 concurrent refreshes of one token', () => {
  for (const [realm, maxReuse] of [['rt-rotate', 0], ['rt-reuse3', 3]] as const) {
    for (const round of [1, 2]) {
      it(`maxReuse ${maxReuse}, round ${round}: exactly ${1 + maxReuse} succeed`, async () => {
        const first = await passwordGrant(realm);
        const results = await stampede(realm, first.refresh_token);
        const ok = results.filter((r) => r.status === 200);
        const failed = results.filter((r) => r.status !== 200);
        expect(ok).toHaveLength(1 + maxReuse);
        expect(failed.every((r) => r.status === 400 && r.body.error === 'invalid_grant')).toBe(true);
        expect(new Set(ok.map((r) => r.body.refresh_token)).size).toBe(1 + maxReuse);
        for (const r of ok) expect(decodeJwt(r.body.access_token).sid).toBe(first.session_state);
        // Reuse was detected, so the client session ended: no successor works any more.
        for (const r of ok) expect((await refreshFails(realm, r.body.refresh_token)).error).toBe('invalid_grant');
      });
    }
  }
});

// ---- 4. grace window -------------------------------------------------------------------------

describe('grace window (cloakroom.refreshTokenReuseGraceSeconds)', () => {
  it('a repeat inside the window returns the same successor, which keeps working', async () => {
    const first = await passwordGrant('rt-grace');
    const r1 = await refreshOk('rt-grace', first.refresh_token);
    const repeat = await refreshOk('rt-grace', first.refresh_token);
    expect(repeat.refresh_token).toBe(r1.refresh_token);
    expect(repeat.access_token).not.toBe(r1.access_token);
    expect(decodeJwt(repeat.access_token).sid).toBe(first.session_state);
    expect(await userinfoStatus('rt-grace', repeat.access_token)).toBe(200);

    const r2 = await refreshOk('rt-grace', r1.refresh_token);
    expect(r2.refresh_token).not.toBe(r1.refresh_token);
    await refreshOk('rt-grace', r2.refresh_token);
  });

  for (const round of [1, 2]) {
    it(`round ${round}: 50 concurrent refreshes all succeed with one successor`, async () => {
      const first = await passwordGrant('rt-grace');
      const results = await stampede('rt-grace', first.refresh_token);
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
      const successors = new Set(results.map((r) => r.body.refresh_token));
      expect(successors.size).toBe(1);
      const [successor] = [...successors] as [string];
      expect(successor).not.toBe(first.refresh_token);
      for (const r of results.slice(0, 5)) expect(await userinfoStatus('rt-grace', r.body.access_token)).toBe(200);
      await refreshOk('rt-grace', successor);
    });
  }

  it('after the window a repeat fails and ends the client session', async () => {
    const first = await passwordGrant('rt-grace2');
    const r1 = await refreshOk('rt-grace2', first.refresh_token);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await refreshFails('rt-grace2', first.refresh_token)).toEqual({ error: 'invalid_grant', error_description: 'Maximum allowed refresh token reuse exceeded' });
    expect((await refreshFails('rt-grace2', r1.refresh_token)).error_description).toBe("Session doesn't have required client");
  });
});

// ---- 5. offline tokens -----------------------------------------------------------------------

describe('offline tokens', () => {
  it('are typ Offline without exp and refresh_expires_in 0, and refresh as Offline', async () => {
    const first = await passwordGrant('rt-default', APP, 'openid offline_access');
    expect(first.refresh_expires_in).toBe(0);
    const rt = decodeJwt(first.refresh_token);
    expect(rt.typ).toBe('Offline');
    expect(rt.exp).toBeUndefined();
    expect(String(rt.scope).split(' ')).toContain('offline_access');
    expect(first.scope.split(' ')).toContain('offline_access');

    const refreshed = await refreshOk('rt-default', first.refresh_token);
    expect(refreshed.refresh_expires_in).toBe(0);
    expect(decodeJwt(refreshed.refresh_token)).toMatchObject({ typ: 'Offline', sid: first.session_state });
    expect(decodeJwt(refreshed.refresh_token).exp).toBeUndefined();
    expect(decodeJwt(refreshed.access_token).sid).toBe(first.session_state);
  });

  // BUG: the server adds prompt=consent to such a request (keepOfflineAccess in
  // src/oidc/provider.ts) by rewriting ctx.querystring, after which oidc-provider can no longer
  // derive the realm mount path from req.originalUrl: the interaction's returnTo loses
  // /realms/{realm} and the login ends on a 404 at {origin}/protocol/openid-connect/auth/{uid}.
  it('browser login asking for offline_access (no prompt parameter) returns to the client with a code', async () => {
    const offline = await browserTokens('rt-default', 'openid offline_access');
    expect(decodeJwt(offline.tokens.refresh_token).typ).toBe('Offline');
  });

  it('keep working after the online session is logged out (browser flow, id_token_hint)', async () => {
    // prompt=consent explicitly sidesteps the bug above (consent approves itself: no consentRequired).
    const offline = await browserTokens('rt-default', 'openid offline_access', new CookieJar(), { prompt: 'consent' });
    expect(decodeJwt(offline.tokens.refresh_token).typ).toBe('Offline');
    // Same browser, SSO: an online token of the same session.
    const online = await browserTokens('rt-default', 'openid', offline.jar);
    expect(decodeJwt(online.tokens.refresh_token).typ).toBe('Refresh');
    const sid = online.tokens.session_state;
    expect(offline.tokens.session_state).toBe(sid);

    const logout = new URL(endpoint('rt-default', 'logout'));
    logout.search = new URLSearchParams({ id_token_hint: online.tokens.id_token!, post_logout_redirect_uri: REDIRECT, state: 'bye' }).toString();
    const res = await get(logout.href, offline.jar);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${REDIRECT}?state=bye`);

    expect((await refreshFails('rt-default', online.tokens.refresh_token, SPA)).error).toBe('invalid_grant');
    const refreshed = await refreshOk('rt-default', offline.tokens.refresh_token, SPA);
    expect(decodeJwt(refreshed.refresh_token).typ).toBe('Offline');
    expect(await userinfoStatus('rt-default', refreshed.access_token)).toBe(200);
    const rows = await server.store.db.selectFrom('user_sessions').select('offline')
      .where('realm_id', '=', realmIds['rt-default']!).where('id', '=', sid).execute();
    expect(rows.map((r) => r.offline)).toEqual([true]);
  });

  it('keep working after their online session is logged out (password grant, id_token_hint)', async () => {
    const offline = await passwordGrant('rt-default', APP, 'openid offline_access');
    const sid = offline.session_state;
    const sessions = () => server.store.db.selectFrom('user_sessions').select('offline')
      .where('realm_id', '=', realmIds['rt-default']!).where('id', '=', sid).orderBy('offline').execute();
    expect((await sessions()).map((r) => r.offline)).toEqual([false, true]);

    const logout = new URL(endpoint('rt-default', 'logout'));
    logout.search = new URLSearchParams({ id_token_hint: offline.id_token!, post_logout_redirect_uri: REDIRECT }).toString();
    const res = await get(logout.href, new CookieJar());
    expect(res.status).toBe(302);
    expect((await pollEvents('rt-default', sid, 'LOGOUT')).length).toBe(1);
    expect((await sessions()).map((r) => r.offline)).toEqual([true]);

    const refreshed = await refreshOk('rt-default', offline.refresh_token);
    expect(decodeJwt(refreshed.refresh_token)).toMatchObject({ typ: 'Offline', sid });
    expect(await userinfoStatus('rt-default', refreshed.access_token)).toBe(200);
    expect(await introspect('rt-default', refreshed.refresh_token)).toMatchObject({ active: true, typ: 'Offline' });
  });

  it('are refused to a user without the offline_access role', async () => {
    for (const [realm, username] of [['rt-no-offline', 'alice'], ['rt-bare-user', 'carol']] as const) {
      const res = await tokenRequest(realm, APP, { grant_type: 'password', username, password: PASSWORD, scope: 'openid offline_access' });
      const body = await res.json() as ErrorBody;
      expect(res.status, `${realm}: ${JSON.stringify(body)}`).toBe(400);
      expect(body.error).toBe('not_allowed');
      expect(body.error_description).toBe('Offline tokens not allowed for the user or client');
      // Online tokens are fine for the same user.
      await passwordGrant(realm, APP, 'openid', username);
    }
    // In the same realm, a user with the default roles may.
    const ok = await passwordGrant('rt-bare-user', APP, 'openid offline_access', 'alice');
    expect(decodeJwt(ok.refresh_token).typ).toBe('Offline');
  });

  it('survive a server restart on the same PostgreSQL database', async (ctx) => {
    if (!postgresAdminUrl()) {
      console.log('skipped: restart on the same database needs PostgreSQL (DATABASE_URL); PGlite here is in memory and per server');
      ctx.skip();
      return;
    }
    const database = await createTestDatabase();
    // Same master key (the refresh-token HMAC key derives from it) and a fixed public hostname
    // (the issuer, which refresh tokens are checked against, must not depend on the random port).
    const env = { CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64'), CLOAKROOM_HOSTNAME: 'https://sso.restart.test' };
    try {
      const one = await startTestServer({ database, keepDatabase: true, env });
      let offlineToken: string;
      let onlineToken: string;
      try {
        await one.importRealm(realmRep('rt-restart'));
        offlineToken = (await passwordGrant('rt-restart', APP, 'openid offline_access', 'alice', one.url)).refresh_token;
        onlineToken = (await passwordGrant('rt-restart', APP, 'openid', 'alice', one.url)).refresh_token;
      } finally {
        await one.stop();
      }
      const two = await startTestServer({ database, keepDatabase: true, env });
      try {
        expect(decodeJwt(offlineToken).iss).toBe('https://sso.restart.test/realms/rt-restart');
        const res = await refresh('rt-restart', offlineToken, APP, {}, two.url);
        const body = await res.json() as TokenBody;
        expect(res.status, JSON.stringify(body)).toBe(200);
        expect(decodeJwt(body.refresh_token)).toMatchObject({ typ: 'Offline', sid: decodeJwt(offlineToken).sid });
        // The online session is in the database too, so it survives as well.
        expect((await refresh('rt-restart', onlineToken, APP, {}, two.url)).status).toBe(200);
      } finally {
        await two.stop();
      }
    } finally {
      await database.drop();
    }
  });
});

// ---- 6. revocation ---------------------------------------------------------------------------

describe('revocation endpoint', () => {
  it('confidential client (basic auth): ends the client session, every refresh token of it dies', async () => {
    const first = await passwordGrant('rt-default', APP);
    const second = await refreshOk('rt-default', first.refresh_token);
    const res = await revoke('rt-default', second.refresh_token, APP);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect((await refreshFails('rt-default', second.refresh_token)).error).toBe('invalid_grant');
    expect((await refreshFails('rt-default', first.refresh_token)).error).toBe('invalid_grant');
    const events = await pollEvents('rt-default', first.session_state, 'REVOKE_GRANT');
    expect(events).toHaveLength(1);
  });

  it('public client with client_id in the body', async () => {
    const first = await passwordGrant('rt-default', SPA);
    const res = await revoke('rt-default', first.refresh_token, SPA);
    expect(res.status).toBe(200);
    expect((await refreshFails('rt-default', first.refresh_token, SPA)).error).toBe('invalid_grant');
  });

  it('a token of another client: 400, and the token keeps working', async () => {
    const first = await passwordGrant('rt-default', APP);
    const res = await revoke('rt-default', first.refresh_token, OTHER_APP);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    const pub = await revoke('rt-default', first.refresh_token, SPA);
    expect(pub.status).toBe(400);
    await refreshOk('rt-default', first.refresh_token);
  });

  it('an access token: 400 unsupported_token_type', async () => {
    const first = await passwordGrant('rt-default', APP);
    const res = await revoke('rt-default', first.access_token, APP);
    expect(res.status).toBe(400);
    expect((await res.json() as ErrorBody).error).toBe('unsupported_token_type');
    await refreshOk('rt-default', first.refresh_token);
  });

  it('an unknown token: 200', async () => {
    const garbage = await revoke('rt-default', 'not-a-token', APP);
    expect(garbage.status).toBe(200);
    const tampered = await revoke('rt-default', tamperSignature((await passwordGrant('rt-default', APP)).refresh_token), APP);
    expect(tampered.status).toBe(200);
  });

  it('a revoked offline token stops working', async () => {
    const offline = await passwordGrant('rt-default', APP, 'openid offline_access');
    expect((await revoke('rt-default', offline.refresh_token, APP)).status).toBe(200);
    expect((await refreshFails('rt-default', offline.refresh_token)).error).toBe('invalid_grant');
  });
});

// ---- 7. introspection ------------------------------------------------------------------------

describe('introspection of refresh tokens', () => {
  it('a refresh token is active with typ Refresh', async () => {
    const first = await passwordGrant('rt-default', APP);
    const result = await introspect('rt-default', first.refresh_token);
    expect(result).toMatchObject({ active: true, typ: 'Refresh', token_type: 'Refresh', client_id: 'app', sid: first.session_state });
  });

  it('after rotation the used-up token is inactive and the successor active', async () => {
    const first = await passwordGrant('rt-rotate', APP);
    expect((await introspect('rt-rotate', first.refresh_token)).active).toBe(true);
    const r1 = await refreshOk('rt-rotate', first.refresh_token);
    expect(await introspect('rt-rotate', first.refresh_token)).toEqual({ active: false });
    expect(await introspect('rt-rotate', r1.refresh_token)).toMatchObject({ active: true, typ: 'Refresh' });
  });

  it('after revocation the refresh token is inactive', async () => {
    const first = await passwordGrant('rt-default', APP);
    expect((await revoke('rt-default', first.refresh_token, APP)).status).toBe(200);
    expect(await introspect('rt-default', first.refresh_token)).toEqual({ active: false });
  });

  it('after logout the refresh and access tokens are inactive', async () => {
    const first = await passwordGrant('rt-default', APP);
    expect((await introspect('rt-default', first.access_token)).active).toBe(true);
    const logout = new URL(endpoint('rt-default', 'logout'));
    logout.search = new URLSearchParams({ id_token_hint: first.id_token! }).toString();
    const res = await get(logout.href, new CookieJar());
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(await introspect('rt-default', first.refresh_token)).toEqual({ active: false });
    expect(await introspect('rt-default', first.access_token)).toEqual({ active: false });
    expect((await refreshFails('rt-default', first.refresh_token)).error).toBe('invalid_grant');
    expect(await userinfoStatus('rt-default', first.access_token)).toBe(401);
  });

  it('an offline token is active with typ Offline', async () => {
    const offline = await passwordGrant('rt-default', APP, 'openid offline_access');
    expect(await introspect('rt-default', offline.refresh_token)).toMatchObject({ active: true, typ: 'Offline' });
  });
});

// ---- 8. session idle -------------------------------------------------------------------------

describe('session idle timeout', () => {
  it('a refresh pushes expires_at to idle + 120 s grace; refresh_expires_in is the idle timeout', async () => {
    const first = await passwordGrant('rt-idle', APP);
    expect(first.refresh_expires_in).toBe(60);
    const refreshed = await refreshOk('rt-idle', first.refresh_token);
    expect(refreshed.refresh_expires_in).toBe(60);
    const rt = decodeJwt(refreshed.refresh_token);
    expect(rt.exp! - rt.iat!).toBe(60);

    const row = await server.store.db.selectFrom('user_sessions')
      .select(sql<number>`extract(epoch from (expires_at - now()))`.as('remaining'))
      .where('realm_id', '=', realmIds['rt-idle']!).where('id', '=', first.session_state).where('offline', '=', false)
      .executeTakeFirstOrThrow();
    const remaining = Number(row.remaining);
    expect(remaining).toBeGreaterThan(170);
    expect(remaining).toBeLessThanOrEqual(180);
  });
});
