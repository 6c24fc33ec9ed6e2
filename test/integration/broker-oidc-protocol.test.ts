// The upstream side of identity brokering over OpenID Connect and OAuth 2.0 (src/broker/oidc.ts):
// a real Cloakroom server hosts the `upstream` realm, the protocol module logs alice in there
// through the hosted login pages and validates what comes back. Checks a real provider cannot be
// made to fail (a wrong audience, a foreign signature, client assertions) use a small node:http
// server standing in for a *foreign* provider with its own keys; unreachable and silent providers
// are a closed port and a server that never answers.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { calculateJwkThumbprint, decodeJwt, exportJWK, exportPKCS8, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  finishOAuthLogin, forgetOAuthProvider, isOAuthProvider, startOAuthLogin, upstreamBackchannelLogout, upstreamLogoutUrl,
} from '../../src/broker/oidc.ts';
import { BrokerError, type BrokerUrls, type IdentityProviderModel } from '../../src/broker/types.ts';
import type { IdentityProvider } from '../../src/store/schema.ts';
import { browserlessLogin, CookieJar, get } from '../support/browserless.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const SECRET = 'downstream-broker-secret-0123456789';
const ALICE = { username: 'alice', password: 'alice-Passw0rd!' };
const ALIAS = 'upstream-oidc';

let server: TestServer;
let downstreamRealmId: string;
let upstream: string;
let urls: BrokerUrls;
let logoutResponse: string;
let aliceId: string;

function upstreamRealm(): Record<string, unknown> {
  return {
    realm: 'upstream',
    enabled: true,
    roles: { realm: [{ name: 'agent' }] },
    clients: [{
      clientId: 'downstream-broker', secret: SECRET, publicClient: false, standardFlowEnabled: true, clientAuthenticatorType: 'client-secret',
      redirectUris: [urls.endpoint], attributes: { 'post.logout.redirect.uris': logoutResponse },
    }],
    users: [{
      username: ALICE.username, email: 'alice@example.com', emailVerified: true, firstName: 'Alice', lastName: 'Liddell', enabled: true,
      credentials: [{ type: 'password', value: ALICE.password }], realmRoles: ['default-roles-upstream', 'agent'],
    }],
  };
}

/** An identity provider instance as the broker hands it over (row minimal: the module reads realm_id). */
function provider(config: Record<string, string>, providerId = 'oidc', alias = ALIAS): IdentityProviderModel {
  const row = {
    internal_id: crypto.randomUUID(), realm_id: downstreamRealmId, alias, provider_id: providerId, display_name: null, enabled: true,
    trust_email: false, store_token: false, link_only: false, hide_on_login: false, config: {}, secrets_sealed: null, extra: {},
  } as unknown as IdentityProvider;
  return { row, alias, providerId, config };
}

const discoveryConfig = (extra: Record<string, string> = {}): Record<string, string> => ({
  issuer: upstream, clientId: 'downstream-broker', clientSecret: SECRET, ...extra,
});

const explicitConfig = (extra: Record<string, string> = {}): Record<string, string> => ({
  authorizationUrl: `${upstream}/protocol/openid-connect/auth`,
  tokenUrl: `${upstream}/protocol/openid-connect/token`,
  userInfoUrl: `${upstream}/protocol/openid-connect/userinfo`,
  jwksUrl: `${upstream}/protocol/openid-connect/certs`,
  logoutUrl: `${upstream}/protocol/openid-connect/logout`,
  issuer: upstream, useJwksUrl: 'true', validateSignature: 'true',
  clientId: 'downstream-broker', clientSecret: SECRET, ...extra,
});

const newState = (): string => crypto.randomBytes(16).toString('base64url');

/** startOAuthLogin, then alice signs in on the upstream's hosted pages; stops at the redirect to our endpoint. */
async function loginAtUpstream(model: IdentityProviderModel, request: { prompt?: string; loginHint?: string } = {}, jar = new CookieJar()) {
  const state = newState();
  const started = await startOAuthLogin(model, urls, { state, ...request });
  const { redirect } = await browserlessLogin(started.url, ALICE.username, ALICE.password, urls.endpoint, jar);
  return { started, callback: new URL(redirect), jar, state };
}

async function refused(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error('expected a BrokerError');
}

/** A callback the provider would never send (no login needed): for checks that fail before or at the token endpoint. */
function syntheticCallback(state: string, params: Record<string, string> = { code: 'not-a-real-code' }): URL {
  const url = new URL(urls.endpoint);
  url.search = new URLSearchParams({ ...params, state }).toString();
  return url;
}

// ---------------------------------------------------------------------------------------------
// A foreign provider: discovery, JWKS, token and user-info endpoints, with its own RSA key

type Recorded = { method: string; path: string; headers: http.IncomingHttpHeaders; body: string };

class ForeignProvider {
  readonly requests: Recorded[] = [];
  url = '';
  discoveryStatus = 200;
  tokenStatus = 200;
  tokenBody: string | undefined;
  /** Claims of the next ID token (merged over sane defaults); `sign` replaces the signing. */
  idTokenClaims: Record<string, unknown> = {};
  idTokenOverride: string | undefined;
  userInfo: Record<string, unknown> = { sub: 'foreign-user', email: 'bob@foreign.example', given_name: 'Bob', family_name: 'Builder' };
  githubError = false;
  githubProfile: Record<string, unknown> = { id: 583231, login: 'octocat', name: 'The Octo Cat', email: null };
  /** Served at /impostor-jwks: keys the real upstream never used. */
  impostorJwks: { keys: JWK[] } = { keys: [] };
  #server!: http.Server;
  #privateKey!: CryptoKey;
  #jwk!: JWK;

  async start(): Promise<void> {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    this.#privateKey = privateKey;
    this.#jwk = { ...(await exportJWK(publicKey)), kid: 'foreign-1', alg: 'RS256', use: 'sig' };
    this.#server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      req.on('end', () => { void this.#answer(req, body, res); });
    });
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  count(path: string): number {
    return this.requests.filter((r) => r.path === path).length;
  }

  lastToken(): Recorded {
    return this.requests.filter((r) => r.path === '/token').at(-1)!;
  }

  async signedIdToken(claims: Record<string, unknown>, key: CryptoKey | Uint8Array = this.#privateKey, alg = 'RS256', kid = 'foreign-1'): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: this.url, aud: 'foreign-client', sub: 'foreign-user', iat: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg, kid, typ: 'JWT' }).sign(key);
  }

  async #answer(req: http.IncomingMessage, body: string, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url!, this.url).pathname;
    this.requests.push({ method: req.method!, path, headers: req.headers, body });
    const json = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    switch (path) {
      case '/.well-known/openid-configuration':
        if (this.discoveryStatus !== 200) return json(this.discoveryStatus, { error: 'unavailable' });
        return json(200, {
          issuer: this.url, authorization_endpoint: `${this.url}/authorize`, token_endpoint: `${this.url}/token`,
          userinfo_endpoint: `${this.url}/userinfo`, jwks_uri: `${this.url}/jwks`, end_session_endpoint: `${this.url}/logout`,
          id_token_signing_alg_values_supported: ['RS256'], response_types_supported: ['code'], subject_types_supported: ['public'],
        });
      case '/jwks':
        return json(200, { keys: [this.#jwk] });
      case '/impostor-jwks':
        return json(200, this.impostorJwks);
      case '/token': {
        if (this.tokenBody !== undefined) {
          res.writeHead(this.tokenStatus, { 'content-type': 'text/html' });
          return void res.end(this.tokenBody);
        }
        const idToken = this.idTokenOverride ?? await this.signedIdToken(this.idTokenClaims);
        return json(this.tokenStatus, { access_token: 'foreign-opaque-access-token', token_type: 'Bearer', expires_in: 300, id_token: idToken });
      }
      case '/userinfo':
        return json(200, this.userInfo);
      // GitHub's shape: token answer without id_token (errors come as 200), numeric ids, e-mails apart.
      case '/login/oauth/access_token':
        return this.githubError
          ? json(200, { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' })
          : json(200, { access_token: 'gho_foreign', token_type: 'bearer', scope: 'user:email' });
      case '/user':
        return json(200, this.githubProfile);
      case '/user/emails':
        return json(200, [
          { email: 'old@foreign.example', primary: false, verified: true },
          { email: 'octo@foreign.example', primary: true, verified: true },
        ]);
      default:
        return json(404, { error: 'not_found' });
    }
  }
}

let foreign: ForeignProvider;
/** Accepts connections and never answers. */
let silent: http.Server;
let silentUrl: string;
/** A port nothing listens on. */
let closedUrl: string;

beforeAll(async () => {
  server = await startTestServer();
  upstream = `${server.url}/realms/upstream`;
  urls = {
    endpoint: `${server.url}/realms/downstream/broker/${ALIAS}/endpoint`,
    descriptor: `${server.url}/realms/downstream/broker/${ALIAS}/endpoint/descriptor`,
    issuer: `${server.url}/realms/downstream`,
  };
  logoutResponse = `${urls.endpoint}/logout_response`;
  downstreamRealmId = (await server.importRealm({ realm: 'downstream', enabled: true })).realmId;
  await server.importRealm(upstreamRealm());
  const users = await server.store.db.selectFrom('users').select(['id', 'username']).where('username', '=', ALICE.username).execute();
  aliceId = users[0]!.id;

  foreign = new ForeignProvider();
  await foreign.start();
  silent = http.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((resolve) => closed.close(resolve));
});

afterAll(async () => {
  await server?.stop();
  await foreign?.stop();
  silent?.closeAllConnections();
  await new Promise((resolve) => silent?.close(resolve));
});

// ---------------------------------------------------------------------------------------------
// Tests against the real upstream realm
// ---------------------------------------------------------------------------------------------

describe('OpenID Connect login at a real upstream', () => {
  it('knows its provider ids', () => {
    for (const id of ['oidc', 'keycloak-oidc', 'oauth2', 'github', 'google', 'microsoft', 'facebook']) expect(isOAuthProvider(id)).toBe(true);
    expect(isOAuthProvider('saml')).toBe(false);
    expect(isOAuthProvider('finesse')).toBe(false);
  });

  it('discovers the endpoints from the issuer and logs alice in (client_secret_post, userinfo)', async () => {
    const model = provider(discoveryConfig({ clientAuthMethod: 'client_secret_post', defaultScope: 'profile email' }));
    const { started, callback, state } = await loginAtUpstream(model);

    const auth = new URL(started.url);
    expect(`${auth.origin}${auth.pathname}`).toBe(`${upstream}/protocol/openid-connect/auth`);
    expect(Object.fromEntries(auth.searchParams)).toMatchObject({
      response_type: 'code', client_id: 'downstream-broker', redirect_uri: urls.endpoint, state, scope: 'openid profile email',
    });
    expect(auth.searchParams.get('nonce')).toBe(started.protocolState.nonce);
    expect(auth.searchParams.has('code_challenge')).toBe(false);
    expect(started.protocolState.state).toBe(state);

    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity).toMatchObject({
      alias: ALIAS, id: aliceId, username: 'alice', email: 'alice@example.com', firstName: 'Alice', lastName: 'Liddell',
    });
    expect(identity.claims).toMatchObject({ iss: upstream, sub: aliceId, aud: 'downstream-broker', email_verified: true });
    expect(identity.tokens?.id_token).toBeTypeOf('string');
    expect(identity.tokens?.access_token).toBeTypeOf('string');
    expect(identity.tokens?.refresh_token).toBeTypeOf('string');
    expect(identity.tokens?.token_type).toBe('bearer');
    expect(decodeJwt(identity.tokens!.id_token!).nonce).toBe(started.protocolState.nonce);
    expect(identity.accessTokenClaims).toBeUndefined();
  });

  it('uses explicit endpoints with client_secret_basic, and a trusted-issuer list', async () => {
    const model = provider(explicitConfig({ clientAuthMethod: 'client_secret_basic', issuer: `https://elsewhere.example/realms/x, ${upstream}` }));
    const { started, callback } = await loginAtUpstream(model);
    expect(started.url.startsWith(`${upstream}/protocol/openid-connect/auth?`)).toBe(true);
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity).toMatchObject({ id: aliceId, username: 'alice', email: 'alice@example.com' });
  });

  it('accepts explicit endpoints without an issuer (Keycloak skips the issuer check then)', async () => {
    const { issuer: _issuer, ...config } = explicitConfig();
    const model = provider(config);
    const { started, callback } = await loginAtUpstream(model);
    expect((await finishOAuthLogin(model, urls, callback, started.protocolState)).id).toBe(aliceId);
  });

  it('refuses an ID token from an issuer that is not trusted', async () => {
    const model = provider(explicitConfig({ issuer: 'https://elsewhere.example/realms/upstream' }));
    const { started, callback } = await loginAtUpstream(model);
    const error = await refused(finishOAuthLogin(model, urls, callback, started.protocolState));
    expect(error.error).toBe('identity_provider_error');
    // The upstream names itself in the authorization response (RFC 9207) or in the ID token.
    expect(error.reason).toMatch(/another issuer|ID token: wrong issuer/);
  });

  it('refuses a wrong client secret, without the secret or the code in the reason', async () => {
    const model = provider(discoveryConfig({ clientAuthMethod: 'client_secret_basic', clientSecret: 'wrong-secret-value' }));
    const { started, callback } = await loginAtUpstream(model);
    const error = await refused(finishOAuthLogin(model, urls, callback, started.protocolState));
    expect(error.reason).toBe('token endpoint: error invalid_client (HTTP 401)');
    expect(error.reason).not.toContain('wrong-secret-value');
    expect(error.reason).not.toContain(callback.searchParams.get('code')!);
  });

  it('sends PKCE S256 and a wrong verifier fails the code exchange', async () => {
    const model = provider(discoveryConfig({ pkceEnabled: 'true', pkceMethod: 'S256' }));
    const { started, callback } = await loginAtUpstream(model);
    const auth = new URL(started.url);
    const verifier = started.protocolState.codeVerifier!;
    expect(verifier).toMatch(/^[\w-]{43,128}$/);
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('code_challenge')).toBe(crypto.createHash('sha256').update(verifier).digest('base64url'));
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity.id).toBe(aliceId);

    const second = await loginAtUpstream(model);
    const wrong = { ...second.started.protocolState, codeVerifier: crypto.randomBytes(32).toString('base64url') };
    const error = await refused(finishOAuthLogin(model, urls, second.callback, wrong));
    expect(error.reason).toBe('token endpoint: error invalid_grant (HTTP 400)');
  });

  it('builds a plain PKCE challenge when configured so', async () => {
    const model = provider(explicitConfig({ pkceEnabled: 'true', pkceMethod: 'plain' }));
    const started = await startOAuthLogin(model, urls, { state: newState() });
    const auth = new URL(started.url);
    expect(auth.searchParams.get('code_challenge_method')).toBe('plain');
    expect(auth.searchParams.get('code_challenge')).toBe(started.protocolState.codeVerifier);
  });

  it('refuses an ID token whose nonce is not the one of the request', async () => {
    const model = provider(discoveryConfig());
    const { started, callback } = await loginAtUpstream(model);
    const error = await refused(finishOAuthLogin(model, urls, callback, { ...started.protocolState, nonce: 'another-nonce' }));
    expect(error.reason).toBe('ID token: nonce mismatch');
  });

  it('refuses a callback whose state is not ours, before any code exchange', async () => {
    const model = provider(discoveryConfig());
    const { started, callback } = await loginAtUpstream(model);
    const forged = new URL(callback);
    forged.searchParams.set('state', 'someone-elses-state');
    expect((await refused(finishOAuthLogin(model, urls, forged, started.protocolState))).reason).toBe('state mismatch');
    const missing = new URL(callback);
    missing.searchParams.delete('state');
    expect((await refused(finishOAuthLogin(model, urls, missing, started.protocolState))).reason).toBe('state mismatch');
    // The code was not spent: the genuine callback still works.
    expect((await finishOAuthLogin(model, urls, callback, started.protocolState)).id).toBe(aliceId);
  });

  it('refuses an ID token signed by a key the provider does not publish (foreign JWKS, same kid)', async () => {
    const certs = await (await fetch(`${upstream}/protocol/openid-connect/certs`)).json() as { keys: JWK[] };
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const { publicKey: ecKey } = await generateKeyPair('ES256', { extractable: true });
    const model = provider(explicitConfig({ jwksUrl: `${foreign.url}/impostor-jwks` }));

    // Same kid and algorithm as the upstream's keys, another RSA key: the signature check fails.
    foreign.impostorJwks = { keys: await Promise.all(certs.keys.map(async (k) => ({ ...(await exportJWK(publicKey)), kid: k.kid!, alg: k.alg ?? 'RS256', use: 'sig' }))) };
    const first = await loginAtUpstream(model);
    expect((await refused(finishOAuthLogin(model, urls, first.callback, first.started.protocolState))).reason).toBe('ID token: signature verification failed');

    // An EC key under the same kid is not of the RS256 family: no key to verify with.
    foreign.impostorJwks = { keys: await Promise.all(certs.keys.map(async (k) => ({ ...(await exportJWK(ecKey)), kid: k.kid!, use: 'sig' }))) };
    const other = provider({ ...explicitConfig({ jwksUrl: `${foreign.url}/impostor-jwks` }), guiOrder: '2' });
    const second = await loginAtUpstream(other);
    expect((await refused(finishOAuthLogin(other, urls, second.callback, second.started.protocolState))).reason).toMatch(/^ID token: no applicable key/);

    // Keycloak's validateSignature=false skips the signature check (and only that).
    const unchecked = provider(explicitConfig({ jwksUrl: `${foreign.url}/impostor-jwks`, validateSignature: 'false' }));
    const third = await loginAtUpstream(unchecked);
    expect((await finishOAuthLogin(unchecked, urls, third.callback, third.started.protocolState)).id).toBe(aliceId);
  });

  it('turns error=access_denied into a cancelled login, and prompt=none without a session into login_required', async () => {
    const model = provider(discoveryConfig());
    const state = newState();
    const started = await startOAuthLogin(model, urls, { state });
    const denied = await refused(finishOAuthLogin(model, urls, syntheticCallback(state, { error: 'access_denied', error_description: 'secret-ish <b>text</b>' }), started.protocolState));
    expect(denied).toMatchObject({ error: 'identity_provider_error', reason: 'upstream error: access_denied', cancelled: true });

    const hostile = await refused(finishOAuthLogin(model, urls, syntheticCallback(state, { error: '<script>alert(1)</script>' }), started.protocolState));
    expect(hostile).toMatchObject({ reason: 'upstream error: invalid', cancelled: false });

    // The real upstream: prompt=none and no upstream session.
    const silentLogin = await startOAuthLogin(model, urls, { state: newState(), prompt: 'none' });
    expect(new URL(silentLogin.url).searchParams.get('prompt')).toBe('none');
    const answer = await get(silentLogin.url, new CookieJar());
    const callback = new URL(answer.headers.get('location')!);
    expect(callback.href.startsWith(urls.endpoint)).toBe(true);
    const required = await refused(finishOAuthLogin(model, urls, callback, silentLogin.protocolState));
    expect(required).toMatchObject({ reason: 'upstream error: login_required', cancelled: true });
  });

  it('forwards login_hint and ui_locales only when configured, and prefers the configured prompt', async () => {
    const quiet = await startOAuthLogin(provider(discoveryConfig()), urls, { state: newState(), loginHint: 'alice', uiLocales: 'de', prompt: 'login' });
    const quietParams = new URL(quiet.url).searchParams;
    expect(quietParams.has('login_hint')).toBe(false);
    expect(quietParams.has('ui_locales')).toBe(false);
    expect(quietParams.get('prompt')).toBe('login');

    const forwarding = await startOAuthLogin(provider(discoveryConfig({ loginHint: 'true', uiLocales: 'true', prompt: 'consent' })), urls, { state: newState(), loginHint: 'alice', uiLocales: 'de', prompt: 'login' });
    const params = new URL(forwarding.url).searchParams;
    expect(params.get('login_hint')).toBe('alice');
    expect(params.get('ui_locales')).toBe('de');
    expect(params.get('prompt')).toBe('consent');
  });

  it('keycloak-oidc: verified access token claims with the realm roles', async () => {
    const model = provider(discoveryConfig(), 'keycloak-oidc');
    const { started, callback } = await loginAtUpstream(model);
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity.id).toBe(aliceId);
    expect(identity.accessTokenClaims).toMatchObject({ iss: upstream, sub: aliceId, azp: 'downstream-broker' });
    expect((identity.accessTokenClaims!.realm_access as { roles: string[] }).roles).toContain('agent');
  });

  it('oauth2: the identity comes from the user-info URL', async () => {
    const model = provider({
      authorizationUrl: `${upstream}/protocol/openid-connect/auth`, tokenUrl: `${upstream}/protocol/openid-connect/token`,
      userInfoUrl: `${upstream}/protocol/openid-connect/userinfo`, defaultScope: 'openid profile email',
      clientId: 'downstream-broker', clientSecret: SECRET, userIDClaim: 'sub', emailClaim: 'email',
    }, 'oauth2');
    const { started, callback } = await loginAtUpstream(model);
    expect(new URL(started.url).searchParams.has('nonce')).toBe(false);
    expect(started.protocolState.nonce).toBeUndefined();
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity).toMatchObject({ alias: ALIAS, id: aliceId, username: 'alice', email: 'alice@example.com', firstName: 'Alice', lastName: 'Liddell' });
    expect(identity.claims).toMatchObject({ sub: aliceId, preferred_username: 'alice' });
    expect(identity.accessTokenClaims).toBeUndefined();
  });

  it('front-channel logout URL: end_session with id_token_hint, and it ends the upstream session', async () => {
    const model = provider(discoveryConfig());
    const { started, callback, jar } = await loginAtUpstream(model);
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    const idToken = identity.tokens!.id_token!;

    const url = new URL((await upstreamLogoutUrl(model, { idToken, postLogoutRedirectUri: logoutResponse, state: 'bye-1' }))!);
    expect(`${url.origin}${url.pathname}`).toBe(`${upstream}/protocol/openid-connect/logout`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ id_token_hint: idToken, post_logout_redirect_uri: logoutResponse, state: 'bye-1' });

    const withClient = new URL((await upstreamLogoutUrl(provider(discoveryConfig({ sendClientIdOnLogout: 'true', sendIdTokenOnLogout: 'false' })), { idToken, postLogoutRedirectUri: logoutResponse }))!);
    expect(withClient.searchParams.get('client_id')).toBe('downstream-broker');
    expect(withClient.searchParams.has('id_token_hint')).toBe(false);

    const explicit = await upstreamLogoutUrl(provider(explicitConfig({ logoutUrl: 'https://idp.example/logout?x=1' })), { idToken, postLogoutRedirectUri: logoutResponse });
    expect(explicit!.startsWith('https://idp.example/logout?x=1&id_token_hint=')).toBe(true);
    expect(await upstreamLogoutUrl(provider({ clientId: 'x', clientSecret: 'y' }, 'github'), { idToken, postLogoutRedirectUri: logoutResponse })).toBeUndefined();

    // The browser follows it: the upstream logs alice out and comes back to us.
    const answer = await get(url.href, jar);
    expect(answer.status).toBe(302);
    expect(answer.headers.get('location')).toBe(`${logoutResponse}?state=bye-1`);
    const silentLogin = await startOAuthLogin(model, urls, { state: newState(), prompt: 'none' });
    const back = new URL((await get(silentLogin.url, jar)).headers.get('location')!);
    expect(back.searchParams.get('error')).toBe('login_required');
  });

  it('back-channel logout: a server-side GET with id_token_hint ends the upstream session', async () => {
    const model = provider(discoveryConfig({ backchannelSupported: 'true' }));
    const { started, callback, jar } = await loginAtUpstream(model);
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);

    // Still logged in upstream: prompt=none gives a code.
    const before = await startOAuthLogin(model, urls, { state: newState(), prompt: 'none' });
    expect(new URL((await get(before.url, jar)).headers.get('location')!).searchParams.has('code')).toBe(true);

    expect(await upstreamBackchannelLogout(provider(discoveryConfig()), { idToken: identity.tokens!.id_token! })).toBe(false);
    expect(await upstreamBackchannelLogout(model, {})).toBe(false);
    expect(await upstreamBackchannelLogout(model, { idToken: identity.tokens!.id_token! })).toBe(true);

    const after = await startOAuthLogin(model, urls, { state: newState(), prompt: 'none' });
    expect(new URL((await get(after.url, jar)).headers.get('location')!).searchParams.get('error')).toBe('login_required');
    // Unreachable provider: false, never a throw.
    expect(await upstreamBackchannelLogout(provider(explicitConfig({ backchannelSupported: 'true', logoutUrl: `${closedUrl}/logout` })), { idToken: 'x.y.z' })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Network failures
// ---------------------------------------------------------------------------------------------

describe('an unreachable or silent provider', () => {
  it('closed token endpoint port: identity_provider_error', async () => {
    const model = provider(explicitConfig({ tokenUrl: `${closedUrl}/token` }));
    const state = newState();
    const started = await startOAuthLogin(model, urls, { state });
    const error = await refused(finishOAuthLogin(model, urls, syntheticCallback(state), started.protocolState));
    expect(error).toMatchObject({ error: 'identity_provider_error', reason: 'token endpoint: cannot connect (ECONNREFUSED)', cancelled: false });
    expect(error.reason).not.toContain('not-a-real-code');
  });

  it('a token endpoint that never answers times out after readTimeout', async () => {
    const model = provider(explicitConfig({ tokenUrl: `${silentUrl}/token`, readTimeout: '300' }));
    const state = newState();
    const started = await startOAuthLogin(model, urls, { state });
    const began = Date.now();
    const error = await refused(finishOAuthLogin(model, urls, syntheticCallback(state), started.protocolState));
    expect(error.reason).toBe('token endpoint: timed out');
    expect(Date.now() - began).toBeLessThan(3000);
  });

  it('a discovery that never answers times out, a closed one fails at once', async () => {
    const model = provider({ issuer: silentUrl, clientId: 'c', clientSecret: 's', connectTimeout: '100', readTimeout: '200' });
    const began = Date.now();
    expect((await refused(startOAuthLogin(model, urls, { state: newState() }))).reason).toBe('discovery: timed out');
    expect(Date.now() - began).toBeLessThan(3000);
    const unreachable = provider({ issuer: closedUrl, clientId: 'c', clientSecret: 's' });
    expect((await refused(startOAuthLogin(unreachable, urls, { state: newState() }))).reason).toBe('discovery: cannot connect (ECONNREFUSED)');
  });
});

// ---------------------------------------------------------------------------------------------
// Against a foreign provider: what a real one cannot be made to send
// ---------------------------------------------------------------------------------------------

describe('a foreign provider', () => {
  const foreignConfig = (extra: Record<string, string> = {}): Record<string, string> => ({
    issuer: foreign.url, clientId: 'foreign-client', clientSecret: 'foreign-secret', ...extra,
  });

  /** Starts a login and returns a callback with a made-up code (the foreign token endpoint accepts any). */
  async function foreignLogin(model: IdentityProviderModel) {
    const state = newState();
    const started = await startOAuthLogin(model, urls, { state });
    foreign.idTokenClaims = { nonce: started.protocolState.nonce };
    foreign.idTokenOverride = undefined;
    return { started, callback: syntheticCallback(state) };
  }

  it('caches discovery per provider config, forgets it on request, and does not cache a failure', async () => {
    const alias = `cache-${crypto.randomBytes(3).toString('hex')}`;
    const model = provider(foreignConfig(), 'oidc', alias);
    const before = foreign.count('/.well-known/openid-configuration');
    foreign.discoveryStatus = 503;
    expect((await refused(startOAuthLogin(model, urls, { state: newState() }))).reason).toBe('discovery: unexpected HTTP status 503');
    foreign.discoveryStatus = 200;
    const first = await startOAuthLogin(model, urls, { state: newState() });
    expect(first.url.startsWith(`${foreign.url}/authorize?`)).toBe(true);
    await startOAuthLogin(model, urls, { state: newState() });
    expect(foreign.count('/.well-known/openid-configuration')).toBe(before + 2);
    // Another config of the same alias is another entry; forgetting drops them all.
    await startOAuthLogin(provider(foreignConfig({ defaultScope: 'openid email' }), 'oidc', alias), urls, { state: newState() });
    expect(foreign.count('/.well-known/openid-configuration')).toBe(before + 3);
    forgetOAuthProvider(downstreamRealmId, alias);
    await startOAuthLogin(model, urls, { state: newState() });
    expect(foreign.count('/.well-known/openid-configuration')).toBe(before + 4);
  });

  it('logs in, fetching user info whose sub must match the ID token', async () => {
    const model = provider(foreignConfig());
    const { started, callback } = await foreignLogin(model);
    const identity = await finishOAuthLogin(model, urls, callback, started.protocolState);
    expect(identity).toMatchObject({ id: 'foreign-user', email: 'bob@foreign.example', firstName: 'Bob', lastName: 'Builder', username: 'bob@foreign.example' });
    expect(identity.tokens).toMatchObject({ access_token: 'foreign-opaque-access-token', token_type: 'bearer', expires_in: 300 });

    const userInfoCalls = foreign.count('/userinfo');
    const noUserInfo = provider(foreignConfig({ disableUserInfo: 'true' }));
    const quiet = await foreignLogin(noUserInfo);
    expect((await finishOAuthLogin(noUserInfo, urls, quiet.callback, quiet.started.protocolState)).email).toBeUndefined();
    expect(foreign.count('/userinfo')).toBe(userInfoCalls);

    foreign.userInfo = { sub: 'someone-else', email: 'eve@foreign.example' };
    try {
      const mismatch = await foreignLogin(model);
      expect((await refused(finishOAuthLogin(model, urls, mismatch.callback, mismatch.started.protocolState))).reason)
        .toBe('user info endpoint: subject differs from the ID token');
    } finally {
      foreign.userInfo = { sub: 'foreign-user', email: 'bob@foreign.example', given_name: 'Bob', family_name: 'Builder' };
    }
  });

  it('refuses ID tokens for another audience, from another issuer, expired, unsigned or HMAC-signed', async () => {
    const model = provider(foreignConfig());
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ aud: 'someone-else' }, 'ID token: wrong audience'],
      [{ aud: ['foreign-client', 'someone-else'] }, 'ID token: issued for another client'],
      [{ aud: ['foreign-client', 'someone-else'], azp: 'someone-else' }, 'ID token: issued for another client'],
      [{ iss: 'https://impostor.example' }, 'ID token: wrong issuer'],
      [{ exp: Math.floor(Date.now() / 1000) - 120 }, 'ID token: expired'],
      [{ nbf: Math.floor(Date.now() / 1000) + 600 }, 'ID token: not yet valid'],
    ];
    for (const [claims, reason] of cases) {
      const { started, callback } = await foreignLogin(model);
      foreign.idTokenClaims = { nonce: started.protocolState.nonce, ...claims };
      expect((await refused(finishOAuthLogin(model, urls, callback, started.protocolState))).reason).toBe(reason);
    }

    // A multi-audience token for us (azp = us) is fine.
    const ok = await foreignLogin(model);
    foreign.idTokenClaims = { nonce: ok.started.protocolState.nonce, aud: ['foreign-client', 'api'], azp: 'foreign-client' };
    expect((await finishOAuthLogin(model, urls, ok.callback, ok.started.protocolState)).id).toBe('foreign-user');

    // alg none, and HS256 with the client secret as key: refused even though the claims are right.
    const none = await foreignLogin(model);
    const payload = Buffer.from(JSON.stringify({ iss: foreign.url, aud: 'foreign-client', sub: 'foreign-user', exp: Math.floor(Date.now() / 1000) + 300, nonce: none.started.protocolState.nonce })).toString('base64url');
    foreign.idTokenOverride = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
    expect((await refused(finishOAuthLogin(model, urls, none.callback, none.started.protocolState))).reason).toBe('ID token: signature algorithm not allowed');

    const hmac = await foreignLogin(model);
    foreign.idTokenOverride = await foreign.signedIdToken({ aud: 'foreign-client', nonce: hmac.started.protocolState.nonce }, new TextEncoder().encode('foreign-secret'), 'HS256');
    expect((await refused(finishOAuthLogin(model, urls, hmac.callback, hmac.started.protocolState))).reason).toBe('ID token: signature algorithm not allowed');
    foreign.idTokenOverride = undefined;
  });

  it('honours allowedClockSkew for a token that just expired', async () => {
    const lenient = provider(foreignConfig({ allowedClockSkew: '300' }));
    const { started, callback } = await foreignLogin(lenient);
    foreign.idTokenClaims = { nonce: started.protocolState.nonce, aud: 'foreign-client', exp: Math.floor(Date.now() / 1000) - 120 };
    expect((await finishOAuthLogin(lenient, urls, callback, started.protocolState)).id).toBe('foreign-user');
  });

  it('reports a 5xx or non-JSON token endpoint without its body', async () => {
    const model = provider(foreignConfig());
    try {
      foreign.tokenStatus = 502;
      foreign.tokenBody = '<html>Bad gateway, code=abc</html>';
      const { started, callback } = await foreignLogin(model);
      expect((await refused(finishOAuthLogin(model, urls, callback, started.protocolState))).reason).toBe('token endpoint: unexpected HTTP status 502');
      foreign.tokenStatus = 200;
      const again = await foreignLogin(model);
      const error = await refused(finishOAuthLogin(model, urls, again.callback, again.started.protocolState));
      expect(error.reason).toMatch(/^token endpoint: .*JSON/);
      expect(error.reason).not.toContain('Bad gateway');
    } finally {
      foreign.tokenStatus = 200;
      foreign.tokenBody = undefined;
    }
  });

  it('authenticates with client_secret_basic, client_secret_post, client_secret_jwt and private_key_jwt', async () => {
    const tokenUrl = `${foreign.url}/token`;
    const login = async (config: Record<string, string>) => {
      const model = provider(foreignConfig(config));
      const { started, callback } = await foreignLogin(model);
      await finishOAuthLogin(model, urls, callback, started.protocolState);
      const request = foreign.lastToken();
      return { headers: request.headers, form: new URLSearchParams(request.body) };
    };

    const basic = await login({ clientAuthMethod: 'client_secret_basic' });
    // RFC 6749 2.3.1: both halves form-urlencoded before base64.
    const [id, secret] = Buffer.from(basic.headers.authorization!.replace(/^Basic /, ''), 'base64').toString().split(':').map(decodeURIComponent);
    expect([id, secret]).toEqual(['foreign-client', 'foreign-secret']);
    expect(basic.form.has('client_secret')).toBe(false);
    expect(basic.form.get('redirect_uri')).toBe(urls.endpoint);

    const post = await login({ clientAuthMethod: 'client_secret_post' });
    expect(post.headers.authorization).toBeUndefined();
    expect(post.form.get('client_id')).toBe('foreign-client');
    expect(post.form.get('client_secret')).toBe('foreign-secret');

    const secretJwt = await login({ clientAuthMethod: 'client_secret_jwt', clientAssertionSigningAlg: 'HS512' });
    expect(secretJwt.form.has('client_secret')).toBe(false);
    expect(secretJwt.form.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    const hs = await jwtVerify(secretJwt.form.get('client_assertion')!, new TextEncoder().encode('foreign-secret'), {
      algorithms: ['HS512'], issuer: 'foreign-client', subject: 'foreign-client', audience: tokenUrl,
    });
    expect(hs.payload.jti).toBeTypeOf('string');

    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const pem = await exportPKCS8(privateKey);
    const keyJwt = await login({ clientAuthMethod: 'private_key_jwt', clientAssertionSigningKey: pem, clientSecret: '' });
    const rs = await jwtVerify(keyJwt.form.get('client_assertion')!, publicKey, { algorithms: ['RS256'], issuer: 'foreign-client', audience: tokenUrl });
    expect(rs.protectedHeader.kid).toBe(await calculateJwkThumbprint(await exportJWK(publicKey)));

    const { privateKey: ecPrivate, publicKey: ecPublic } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(ecPrivate)), kid: 'broker-key-1' };
    const ecJwt = await login({ clientAuthMethod: 'private_key_jwt', clientAssertionSigningKey: JSON.stringify(jwk), clientAssertionAudience: 'https://audience.example' });
    const es = await jwtVerify(ecJwt.form.get('client_assertion')!, ecPublic, { algorithms: ['ES256'], audience: 'https://audience.example' });
    expect(es.protectedHeader.kid).toBe('broker-key-1');

    const broken = provider(foreignConfig({ clientAuthMethod: 'private_key_jwt', clientAssertionSigningKey: 'not a key' }));
    expect((await refused(startOAuthLogin(broken, urls, { state: newState() }))).reason).toBe('clientAssertionSigningKey is not a usable private key');
  });

  it('checks the ID token against a configured public key (publicKeySignatureVerifier)', async () => {
    const jwks = await (await fetch(`${foreign.url}/jwks`)).json() as { keys: JWK[] };
    const pem = crypto.createPublicKey({ key: jwks.keys[0] as crypto.JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
    const bare = pem.replace(/-----[A-Z ]+-----|\s/g, '');
    for (const key of [pem, bare]) {
      const model = provider(foreignConfig({
        authorizationUrl: `${foreign.url}/authorize`, tokenUrl: `${foreign.url}/token`, useJwksUrl: 'false', publicKeySignatureVerifier: key,
      }));
      const { started, callback } = await foreignLogin(model);
      expect((await finishOAuthLogin(model, urls, callback, started.protocolState)).id).toBe('foreign-user');
    }
    const pinned = provider(foreignConfig({
      authorizationUrl: `${foreign.url}/authorize`, tokenUrl: `${foreign.url}/token`, useJwksUrl: 'false', publicKeySignatureVerifier: pem, publicKeySignatureVerifierKeyId: 'other-kid',
    }));
    const { started, callback } = await foreignLogin(pinned);
    expect((await refused(finishOAuthLogin(pinned, urls, callback, started.protocolState))).reason).toMatch(/^ID token: no applicable key/);
  });
});

describe('OAuth 2 providers against a foreign stand-in', () => {
  it('github preset (baseUrl/apiUrl): numeric id, login as username, name split, primary e-mail from /user/emails', async () => {
    const model = provider({ clientId: 'gh-client', clientSecret: 'gh-secret', baseUrl: foreign.url, apiUrl: foreign.url }, 'github', 'github-foreign');
    const state = newState();
    const started = await startOAuthLogin(model, urls, { state });
    expect(started.url.startsWith(`${foreign.url}/login/oauth/authorize?`)).toBe(true);
    const identity = await finishOAuthLogin(model, urls, syntheticCallback(state), started.protocolState);
    expect(identity).toMatchObject({ alias: 'github-foreign', id: '583231', username: 'octocat', email: 'octo@foreign.example', firstName: 'The Octo', lastName: 'Cat' });
    expect(identity.tokens).toEqual({ access_token: 'gho_foreign', token_type: 'bearer', scope: 'user:email' });
    expect(foreign.requests.filter((r) => r.path === '/user').at(-1)!.headers.authorization).toBe('Bearer gho_foreign');

    foreign.githubError = true;
    try {
      const again = await startOAuthLogin(model, urls, { state });
      expect((await refused(finishOAuthLogin(model, urls, syntheticCallback(state), again.protocolState))).reason)
        .toBe('token endpoint: error bad_verification_code (HTTP 400)');
    } finally {
      foreign.githubError = false;
    }
  });

  it('oauth2: claim paths into the user-info JSON, and a missing id is refused', async () => {
    foreign.githubProfile = { account: { uid: 'u-42', handle: 'bobby' }, emails: [{ value: 'bob@foreign.example' }], 'display.name': 'Robert Paulson' };
    try {
      const config = {
        authorizationUrl: `${foreign.url}/authorize`, tokenUrl: `${foreign.url}/login/oauth/access_token`, userInfoUrl: `${foreign.url}/user`,
        clientId: 'c', clientSecret: 's', userIDClaim: 'account.uid', userNameClaim: 'account.handle', emailClaim: 'emails[0].value', fullNameClaim: 'display\\.name',
      };
      const model = provider(config, 'oauth2', 'generic');
      const state = newState();
      const started = await startOAuthLogin(model, urls, { state });
      const identity = await finishOAuthLogin(model, urls, syntheticCallback(state), started.protocolState);
      expect(identity).toMatchObject({ id: 'u-42', username: 'bobby', email: 'bob@foreign.example', firstName: 'Robert', lastName: 'Paulson' });
      expect(identity.claims).toEqual(foreign.githubProfile);

      const wrongId = provider({ ...config, userIDClaim: 'account.missing' }, 'oauth2', 'generic');
      const again = await startOAuthLogin(wrongId, urls, { state });
      expect((await refused(finishOAuthLogin(wrongId, urls, syntheticCallback(state), again.protocolState))).reason)
        .toBe("no user id (account.missing) in the provider's answer");
    } finally {
      foreign.githubProfile = { id: 583231, login: 'octocat', name: 'The Octo Cat', email: null };
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Social presets (no network: the URLs only)
// ---------------------------------------------------------------------------------------------

describe('social presets', () => {
  it('github: authorize endpoint, scope user:email, no nonce', async () => {
    const state = newState();
    const started = await startOAuthLogin(provider({ clientId: 'gh-client', clientSecret: 'gh-secret' }, 'github', 'github'), urls, { state });
    const url = new URL(started.url);
    expect(`${url.origin}${url.pathname}`).toBe('https://github.com/login/oauth/authorize');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code', client_id: 'gh-client', redirect_uri: urls.endpoint, state, scope: 'user:email',
    });
    expect(started.protocolState).toEqual({ state });

    const enterprise = await startOAuthLogin(provider({ clientId: 'gh', clientSecret: 's', baseUrl: 'https://ghe.example', defaultScope: 'read:user' }, 'github', 'ghe'), urls, { state });
    expect(enterprise.url.startsWith('https://ghe.example/login/oauth/authorize?')).toBe(true);
    expect(new URL(enterprise.url).searchParams.get('scope')).toBe('read:user');
  });

  it('google, microsoft and facebook', async () => {
    const state = newState();
    const google = new URL((await startOAuthLogin(provider({ clientId: 'g', clientSecret: 's', hostedDomain: 'example.com', offlineAccess: 'true' }, 'google', 'google'), urls, { state })).url);
    expect(`${google.origin}${google.pathname}`).toBe('https://accounts.google.com/o/oauth2/v2/auth');
    expect(Object.fromEntries(google.searchParams)).toMatchObject({ scope: 'openid profile email', hd: 'example.com', access_type: 'offline', client_id: 'g' });
    expect(google.searchParams.get('nonce')).toBeTruthy();

    const tenant = '11111111-2222-3333-4444-555555555555';
    const microsoft = new URL((await startOAuthLogin(provider({ clientId: 'm', clientSecret: 's', tenantId: tenant }, 'microsoft', 'microsoft'), urls, { state })).url);
    expect(`${microsoft.origin}${microsoft.pathname}`).toBe(`https://login.microsoftonline.com/${tenant}/oauth2/v2.0/authorize`);
    expect(microsoft.searchParams.get('scope')).toBe('openid profile email');
    const common = new URL((await startOAuthLogin(provider({ clientId: 'm', clientSecret: 's' }, 'microsoft', 'microsoft-common'), urls, { state })).url);
    expect(common.pathname).toBe('/common/oauth2/v2.0/authorize');

    const facebook = new URL((await startOAuthLogin(provider({ clientId: 'f', clientSecret: 's' }, 'facebook', 'facebook'), urls, { state })).url);
    expect(`${facebook.origin}${facebook.pathname}`).toBe('https://www.facebook.com/v18.0/dialog/oauth');
    expect(facebook.searchParams.get('scope')).toBe('email');
    expect(facebook.searchParams.has('nonce')).toBe(false);

    // Explicit config wins over the preset.
    const custom = await startOAuthLogin(provider({ clientId: 'f', clientSecret: 's', authorizationUrl: 'https://fb-proxy.example/auth' }, 'facebook', 'facebook-proxy'), urls, { state });
    expect(custom.url.startsWith('https://fb-proxy.example/auth?')).toBe(true);
  });
});
