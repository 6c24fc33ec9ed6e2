// Identity brokering through an upstream OpenID Connect provider (another realm of the same
// server, a real Keycloak-compatible issuer), configured with the official admin client and driven
// over HTTP with a cookie jar: login page buttons and kc_idp_hint, first broker login with mappers,
// sync modes, linking by trusted e-mail or by proving the existing account, link-only providers,
// failures (cancel, unreachable provider, replayed callbacks) with their events, and logout.
import crypto from 'node:crypto';

import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { followRedirects, pageSays, providerLink, realmRolesOf, until, type BrowsedPage } from '../support/broker.ts';
import { CookieJar, get, parseForm, post } from '../support/browserless.ts';
import { basicAuth, postForm } from '../support/server.ts';

const UPSTREAM = 'corp-idp';
const REALM = 'cx-broker';
const APP = 'cx-app';
const APP_SECRET = 'cx-app-secret';
const APP_REDIRECT = 'http://127.0.0.1:9/callback';
const BROKER_SECRET = 'broker-secret-1';
const DEAD_ORIGIN = 'http://127.0.0.1:9/';

let bench: AdminBench;
let base: string;

type Page = BrowsedPage;
type Walk = { redirect: string } | { page: Page };

/** Follows redirects (our server and the upstream realm alike) until the app's redirect URI or a page. */
function walk(start: string, jar: CookieJar, response?: Response): Promise<Walk> {
  return followRedirects<Walk>(start, jar, (url) => {
    if (url.startsWith(APP_REDIRECT)) return { redirect: url };
    // Nothing listens on port 9: a browser would show its own error page there.
    if (url.startsWith(DEAD_ORIGIN)) return { page: { status: 0, url, html: '' } };
    return undefined;
  }, response);
}

function authUrl(extra: Record<string, string> = {}): string {
  const query = new URLSearchParams({ client_id: APP, redirect_uri: APP_REDIRECT, response_type: 'code', scope: 'openid', state: crypto.randomUUID(), ...extra });
  return `${base}/realms/${REALM}/protocol/openid-connect/auth?${query}`;
}

/** Signs in on the upstream realm's pages (username first, then password). */
async function upstreamLogin(page: Page, jar: CookieJar, username: string, password: string): Promise<Walk> {
  let form = parseForm(page.html, page.url);
  let html = page.html;
  if (form.action.endsWith('/username')) {
    const answer = await post(form.action, { ...form.hidden, username }, jar);
    html = await answer.text();
    form = parseForm(html, page.url);
  }
  const submitted = await post(form.action, { ...form.hidden, username, password }, jar);
  return walk(form.action, jar, submitted);
}

/** The app's login through the `alias` button, signing in upstream as `username`. */
async function brokeredLogin(alias: string, username: string, password: string, jar = new CookieJar(), viaHint = false): Promise<{ outcome: Walk; jar: CookieJar }> {
  let step = await walk(authUrl(viaHint ? { kc_idp_hint: alias } : {}), jar);
  if ('page' in step && !viaHint) {
    const link = providerLink(step.page.html, alias);
    if (!link) throw new Error(`no ${alias} button on ${step.page.url}: ${step.page.html.slice(0, 400)}`);
    step = await walk(new URL(link, step.page.url).href, jar);
  }
  if ('redirect' in step) return { outcome: step, jar };
  if (!step.page.url.includes(`/realms/${UPSTREAM}/`)) return { outcome: step, jar };
  return { outcome: await upstreamLogin(step.page, jar, username, password), jar };
}

async function tokensFor(redirect: string): Promise<Record<string, unknown>> {
  const code = new URL(redirect).searchParams.get('code');
  expect(code, redirect).toBeTruthy();
  const response = await postForm(`${base}/realms/${REALM}/protocol/openid-connect/token`, {
    grant_type: 'authorization_code', code: code!, redirect_uri: APP_REDIRECT,
  }, { authorization: basicAuth(APP, APP_SECRET) });
  expect(response.status).toBe(200);
  return response.json() as Promise<Record<string, unknown>>;
}

async function realmRoles(redirect: string): Promise<string[]> {
  return realmRolesOf(await tokensFor(redirect));
}

async function events(type: string): Promise<Array<{ type?: string; error?: string; details?: Record<string, string>; userId?: string }>> {
  return bench.admin.realms.findEvents({ realm: REALM, type: type as never, max: 100 }) as never;
}

async function localUser(username: string) {
  return (await bench.admin.users.find({ realm: REALM, username, exact: true }))[0];
}

beforeAll(async () => {
  bench = await startAdminBench();
  base = bench.server.url;
  const endpoint = (alias: string) => `${base}/realms/${REALM}/broker/${alias}/endpoint`;
  await bench.server.importRealm({
    realm: UPSTREAM, enabled: true,
    roles: { realm: [{ name: 'quality-lead' }] },
    clients: [{
      clientId: 'cx-broker', secret: BROKER_SECRET, publicClient: false, standardFlowEnabled: true,
      redirectUris: [endpoint('corp'), endpoint('corp-linkonly'), endpoint('corp-trusted'), `${endpoint('corp')}/logout_response`],
      attributes: { 'post.logout.redirect.uris': `${endpoint('corp')}/logout_response` },
      protocolMappers: [{
        name: 'department', protocol: 'openid-connect', protocolMapper: 'oidc-usermodel-attribute-mapper',
        config: { 'user.attribute': 'department', 'claim.name': 'department', 'id.token.claim': 'true', 'access.token.claim': 'true', 'userinfo.token.claim': 'true', 'jsonType.label': 'String' },
      }],
    }],
    users: [
      { username: 'alice', email: 'alice@corp.example', emailVerified: true, firstName: 'Alice', lastName: 'Agent', enabled: true, attributes: { department: ['quality'] }, realmRoles: ['quality-lead'], credentials: [{ type: 'password', value: 'Alice-Upstream-1' }] },
      { username: 'bob', email: 'bob@corp.example', firstName: 'Bob', lastName: 'Builder', enabled: true, attributes: { department: ['sales'] }, credentials: [{ type: 'password', value: 'Bob-Upstream-1' }] },
      { username: 'carol', email: 'carol@cx.example', firstName: 'Carol', enabled: true, credentials: [{ type: 'password', value: 'Carol-Upstream-1' }] },
      { username: 'dave', email: 'dave@cx.example', firstName: 'Dave', enabled: true, credentials: [{ type: 'password', value: 'Dave-Upstream-1' }] },
    ],
  });
  await bench.server.importRealm({
    realm: REALM, enabled: true, eventsEnabled: true,
    roles: { realm: [{ name: 'agent' }, { name: 'supervisor' }, { name: 'qa' }] },
    groups: [{ name: 'brokered' }],
    clients: [{ clientId: APP, secret: APP_SECRET, publicClient: false, standardFlowEnabled: true, redirectUris: [`${APP_REDIRECT}*`] }],
    users: [
      // Existing local accounts whose e-mail an upstream identity shares.
      { username: 'carol.local', email: 'carol@cx.example', enabled: true, credentials: [{ type: 'password', value: 'Carol-Local-1' }] },
      { username: 'dave.local', email: 'dave@cx.example', enabled: true, credentials: [{ type: 'password', value: 'Dave-Local-1' }] },
    ],
  });

  const { admin } = bench;
  const upstreamConfig = (extra: Record<string, string> = {}) => ({
    issuer: `${base}/realms/${UPSTREAM}`, clientId: 'cx-broker', clientSecret: BROKER_SECRET, clientAuthMethod: 'client_secret_basic',
    pkceEnabled: 'true', pkceMethod: 'S256', defaultScope: 'openid email profile', syncMode: 'FORCE', ...extra,
  });
  await admin.identityProviders.create({ realm: REALM, alias: 'corp', displayName: 'Corporate SSO', providerId: 'keycloak-oidc', enabled: true, config: upstreamConfig() });
  await admin.identityProviders.create({ realm: REALM, alias: 'corp-trusted', displayName: 'Corporate (trusted e-mail)', providerId: 'oidc', enabled: true, trustEmail: true, hideOnLogin: true, storeToken: true, config: upstreamConfig({ syncMode: 'IMPORT' }) });
  await admin.identityProviders.create({ realm: REALM, alias: 'corp-linkonly', providerId: 'oidc', enabled: true, linkOnly: true, config: upstreamConfig() });
  await admin.identityProviders.create({ realm: REALM, alias: 'corp-down', displayName: 'Unreachable', providerId: 'oidc', enabled: true, config: {
    clientId: 'x', clientSecret: 'y', authorizationUrl: 'http://127.0.0.1:9/auth', tokenUrl: 'http://127.0.0.1:9/token', issuer: 'http://127.0.0.1:9', jwksUrl: 'http://127.0.0.1:9/jwks', validateSignature: 'true', useJwksUrl: 'true',
  } });
  const mapper = (alias: string, name: string, identityProviderMapper: string, config: Record<string, string>) =>
    admin.identityProviders.createMapper({ realm: REALM, alias, identityProviderMapper: { name, identityProviderAlias: alias, identityProviderMapper, config } });
  await mapper('corp', 'everyone is an agent', 'oidc-hardcoded-role-idp-mapper', { role: 'agent', syncMode: 'INHERIT' });
  await mapper('corp', 'quality department supervises', 'oidc-role-idp-mapper', { claim: 'department', 'claim.value': 'quality', role: 'supervisor', syncMode: 'INHERIT' });
  await mapper('corp', 'upstream quality lead', 'keycloak-oidc-role-to-role-idp-mapper', { 'external.role': 'quality-lead', role: 'qa', syncMode: 'INHERIT' });
  await mapper('corp', 'department attribute', 'oidc-user-attribute-idp-mapper', { claim: 'department', 'user.attribute': 'department', syncMode: 'INHERIT' });
  await mapper('corp', 'group', 'oidc-hardcoded-group-idp-mapper', { group: '/brokered', syncMode: 'INHERIT' });
  // A mapper's own sync mode wins over the provider's FORCE: set once, at the first login.
  await mapper('corp', 'department at sign-up', 'oidc-user-attribute-idp-mapper', { claim: 'department', 'user.attribute': 'firstDepartment', syncMode: 'IMPORT' });
  await mapper('corp', 'username', 'oidc-username-idp-mapper', { template: '${ALIAS}.${CLAIM.preferred_username}', syncMode: 'INHERIT' });
}, 60_000);

afterAll(async () => {
  await bench?.stop();
});

describe('login page', () => {
  it('shows a button per enabled provider that is not hidden or link-only, and kc_idp_hint skips the page', async () => {
    const jar = new CookieJar();
    const step = await walk(authUrl(), jar);
    if (!('page' in step)) throw new Error('expected the login page');
    expect(providerLink(step.page.html, 'corp')).toMatch(/\/realms\/cx-broker\/broker\/corp\/login\?session_code=/);
    expect(step.page.html).toContain('Corporate SSO');
    expect(providerLink(step.page.html, 'corp-trusted')).toBeUndefined(); // hideOnLogin
    expect(providerLink(step.page.html, 'corp-linkonly')).toBeUndefined();

    const hinted = await get(authUrl({ kc_idp_hint: 'corp' }), new CookieJar());
    const hintJar = new CookieJar();
    const walked = await walk(authUrl({ kc_idp_hint: 'corp' }), hintJar);
    expect(hinted.status).toBeGreaterThanOrEqual(300);
    if (!('page' in walked)) throw new Error('expected the upstream login page');
    expect(walked.page.url).toContain(`/realms/${UPSTREAM}/`);
  });
});

describe('first broker login', () => {
  it('creates the user with the template username, mapped roles, group and attribute, and links the identity', async () => {
    const { outcome } = await brokeredLogin('corp', 'alice', 'Alice-Upstream-1');
    if (!('redirect' in outcome)) throw new Error(pageSays(outcome.page));
    const roles = await realmRoles(outcome.redirect);
    expect(roles).toEqual(expect.arrayContaining(['agent', 'supervisor', 'qa']));

    const user = await localUser('corp.alice');
    expect(user).toMatchObject({ email: 'alice@corp.example', firstName: 'Alice', lastName: 'Agent', emailVerified: false });
    expect(user!.attributes?.department).toEqual(['quality']);
    const groups = await bench.admin.users.listGroups({ realm: REALM, id: user!.id! });
    expect(groups.map((g) => g.path)).toEqual(['/brokered']);
    const links = await bench.admin.users.listFederatedIdentities({ realm: REALM, id: user!.id! });
    expect(links).toEqual([expect.objectContaining({ identityProvider: 'corp', userName: 'alice' })]);

    const types = (await until(() => bench.admin.realms.findEvents({ realm: REALM, max: 200 }), (list) => list.some((e) => e.type === 'LOGIN' && e.userId === user!.id)))
      .filter((e) => e.userId === user!.id).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['REGISTER', 'IDENTITY_PROVIDER_FIRST_LOGIN', 'LOGIN']));
  });

  it('signs a linked identity in again, FORCE sync updating roles from the current claims', async () => {
    const first = await brokeredLogin('corp', 'bob', 'Bob-Upstream-1');
    if (!('redirect' in first.outcome)) throw new Error(pageSays(first.outcome.page));
    expect(await realmRoles(first.outcome.redirect)).not.toContain('supervisor');
    const bob = await localUser('corp.bob');

    // Upstream, bob moves to the quality department: FORCE grants supervisor at his next login.
    const upstreamBob = (await bench.admin.users.find({ realm: UPSTREAM, username: 'bob', exact: true }))[0]!;
    await bench.admin.users.update({ realm: UPSTREAM, id: upstreamBob.id! }, { ...upstreamBob, attributes: { department: ['quality'] } });
    const second = await brokeredLogin('corp', 'bob', 'Bob-Upstream-1');
    if (!('redirect' in second.outcome)) throw new Error(pageSays(second.outcome.page));
    expect(await realmRoles(second.outcome.redirect)).toContain('supervisor');
    expect((await localUser('corp.bob'))!.id).toBe(bob!.id);
    expect((await localUser('corp.bob'))!.attributes?.department).toEqual(['quality']);
    expect((await localUser('corp.bob'))!.attributes?.firstDepartment).toEqual(['sales']);

    // And back: the claim no longer matches, so FORCE takes the role away again.
    await bench.admin.users.update({ realm: UPSTREAM, id: upstreamBob.id! }, { ...upstreamBob, attributes: { department: ['sales'] } });
    const third = await brokeredLogin('corp', 'bob', 'Bob-Upstream-1');
    if (!('redirect' in third.outcome)) throw new Error(pageSays(third.outcome.page));
    const roles = await realmRoles(third.outcome.redirect);
    expect(roles).not.toContain('supervisor');
    expect(roles).toContain('agent');
  });

  it('links to the existing account of a trusted e-mail at once, and keeps its tokens (storeToken)', async () => {
    const { outcome, jar } = await brokeredLogin('corp-trusted', 'carol', 'Carol-Upstream-1', new CookieJar(), true);
    if (!('redirect' in outcome)) throw new Error(pageSays(outcome.page));
    const carol = await localUser('carol.local');
    const links = await bench.admin.users.listFederatedIdentities({ realm: REALM, id: carol!.id! });
    expect(links.map((l) => l.identityProvider)).toEqual(['corp-trusted']);
    const tokens = await tokensFor(outcome.redirect);
    expect(decodeJwt(tokens.access_token as string).sub).toBe(carol!.id);
    expect(await until(() => events('FEDERATED_IDENTITY_LINK'), (list) => list.some((e) => e.userId === carol!.id))).not.toHaveLength(0);

    // storeToken: the upstream tokens are kept; reading them needs broker's read-token role.
    const stored = (token: unknown) => get(`${base}/realms/${REALM}/broker/corp-trusted/token`, new CookieJar(), { authorization: `Bearer ${String(token)}` });
    const denied = await stored(tokens.access_token);
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ error: 'access_denied' });
    expect((await stored('not-a-token')).status).toBe(401);
    const broker = (await bench.admin.clients.find({ realm: REALM, clientId: 'broker' }))[0]!;
    const readToken = await bench.admin.clients.findRole({ realm: REALM, id: broker.id!, roleName: 'read-token' });
    await bench.admin.users.addClientRoleMappings({ realm: REALM, id: carol!.id!, clientUniqueId: broker.id!, roles: [{ id: readToken!.id!, name: 'read-token' }] });
    const again = await brokeredLogin('corp-trusted', 'carol', 'Carol-Upstream-1', jar, true);
    if (!('redirect' in again.outcome)) throw new Error(pageSays(again.outcome.page));
    const allowed = await stored((await tokensFor(again.outcome.redirect)).access_token);
    expect(allowed.status).toBe(200);
    const upstreamTokens = await allowed.json() as { access_token: string; id_token: string };
    expect(decodeJwt(upstreamTokens.access_token).iss).toBe(`${base}/realms/${UPSTREAM}`);
    // A provider without storeToken answers that it keeps nothing.
    const third = await brokeredLogin('corp-trusted', 'carol', 'Carol-Upstream-1', jar, true);
    if (!('redirect' in third.outcome)) throw new Error(pageSays(third.outcome.page));
    const withoutStore = await get(`${base}/realms/${REALM}/broker/corp/token`, new CookieJar(), { authorization: `Bearer ${String((await tokensFor(third.outcome.redirect)).access_token)}` });
    expect(withoutStore.status).toBe(400);
  });

  it('asks for the existing account\'s password before linking an untrusted e-mail, refusing a wrong one', async () => {
    const { outcome, jar } = await brokeredLogin('corp', 'dave', 'Dave-Upstream-1');
    if (!('page' in outcome)) throw new Error('expected the link page');
    expect(outcome.page.status).toBe(200);
    expect(outcome.page.html).toContain('dave.local');
    const form = parseForm(outcome.page.html, outcome.page.url);
    expect(form.action).toMatch(/\/broker-link$/);
    const dave = await localUser('dave.local');

    const wrong = await post(form.action, { ...form.hidden, password: 'not-daves' }, jar);
    expect(wrong.status).toBe(401);
    expect(await bench.admin.users.listFederatedIdentities({ realm: REALM, id: dave!.id! })).toEqual([]);
    expect(await localUser('corp.dave')).toBeUndefined();

    const again = parseForm(await wrong.text(), outcome.page.url);
    const right = await post(again.action, { ...again.hidden, password: 'Dave-Local-1' }, jar);
    const done = await walk(again.action, jar, right);
    if (!('redirect' in done)) throw new Error(pageSays(done.page));
    const tokens = await tokensFor(done.redirect);
    expect(decodeJwt(tokens.access_token as string).sub).toBe(dave!.id);
    expect((await bench.admin.users.listFederatedIdentities({ realm: REALM, id: dave!.id! })).map((l) => l.identityProvider)).toEqual(['corp']);
    // The mappers applied at the link as for a new user.
    expect(realmRolesOf(tokens)).toContain('agent');
  });
});

describe('refusals and failures', () => {
  it('never links an identity to an application user (access keys) that holds its username', async () => {
    await bench.admin.users.create({ realm: UPSTREAM, username: 'ivr', email: 'ivr@corp.example', enabled: true, credentials: [{ type: 'password', value: 'Ivr-Upstream-1', temporary: false }] });
    await bench.api(`/${REALM}/users`, { method: 'POST', body: JSON.stringify({ username: 'corp.ivr', enabled: true, application: true }) });
    const { outcome } = await brokeredLogin('corp', 'ivr', 'Ivr-Upstream-1', new CookieJar(), true);
    if (!('page' in outcome)) throw new Error('expected an error page');
    expect(outcome.page.status).toBe(400);
    expect(outcome.page.html).toMatch(/cannot be linked/);
    const bot = await localUser('corp.ivr');
    expect(await bench.admin.users.listFederatedIdentities({ realm: REALM, id: bot!.id! })).toEqual([]);
  });

  it('refuses a login through a link-only provider: no button, kc_idp_hint ignored, its login URL refused', async () => {
    const jar = new CookieJar();
    const hinted = await walk(authUrl({ kc_idp_hint: 'corp-linkonly' }), jar);
    if (!('page' in hinted)) throw new Error('expected the login page');
    expect(hinted.page.url).toContain(`/realms/${REALM}/login-actions/`);
    const uid = /login-actions\/([\w-]+)/.exec(hinted.page.url)![1]!;
    const refused = await walk(`${base}/realms/${REALM}/broker/corp-linkonly/login?session_code=${uid}`, jar);
    if (!('page' in refused)) throw new Error('expected an error page');
    expect(refused.page.status).toBe(400);
    expect(refused.page.html).toMatch(/only be linked/);
    expect(refused.page.html).toContain('id="backToLogin"');
  });

  it('shows an error page with a way back, records IDENTITY_PROVIDER_LOGIN_ERROR and creates nothing when the provider is unreachable', async () => {
    const before = (await bench.admin.users.find({ realm: REALM, max: 1000 })).length;
    const jar = new CookieJar();
    const step = await walk(authUrl({ kc_idp_hint: 'corp-down' }), jar);
    if (!('page' in step)) throw new Error('expected a page');
    // Either the redirect to the dead provider failed (start) or we are sent to it: the browser cannot reach it.
    expect(step.page.url).toMatch(/127\.0\.0\.1:9|broker/);
    // The provider's answer would come to the endpoint; simulate the browser arriving back with a code.
    const state = /state=([^&]+)/.exec(step.page.url)?.[1];
    if (state) {
      const back = await walk(`${base}/realms/${REALM}/broker/corp-down/endpoint?code=abc&state=${state}`, jar);
      if (!('page' in back)) throw new Error('expected the error page');
      expect(back.page.status).toBe(502);
      expect(back.page.html).toContain('id="backToLogin"');
    }
    const failures = await until(() => events('IDENTITY_PROVIDER_LOGIN_ERROR'), (list) => list.some((e) => e.details?.identity_provider === 'corp-down'));
    expect(failures.find((e) => e.details?.identity_provider === 'corp-down')).toMatchObject({ error: 'identity_provider_error' });
    expect((await bench.admin.users.find({ realm: REALM, max: 1000 })).length).toBe(before);
  });

  it('refuses a callback with an unknown state, and a replayed one', async () => {
    const unknown = await get(`${base}/realms/${REALM}/broker/corp/endpoint?code=abc&state=${'x'.repeat(32)}`, new CookieJar());
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('kc-error-message');

    // Capture the real callback URL and use it twice.
    const jar = new CookieJar();
    let step = await walk(authUrl({ kc_idp_hint: 'corp' }), jar);
    if (!('page' in step)) throw new Error('expected the upstream login');
    let form = parseForm(step.page.html, step.page.url);
    if (form.action.endsWith('/username')) form = parseForm(await (await post(form.action, { ...form.hidden, username: 'alice' }, jar)).text(), step.page.url);
    let answer = await post(form.action, { ...form.hidden, username: 'alice', password: 'Alice-Upstream-1' }, jar);
    let callback = '';
    for (let i = 0; i < 5 && answer.status >= 300 && answer.status < 400; i++) {
      const next = new URL(answer.headers.get('location')!, form.action).href;
      if (next.includes(`/realms/${REALM}/broker/corp/endpoint`)) {
        callback = next;
        break;
      }
      answer = await get(next, jar);
    }
    expect(callback).toContain('code=');
    const first = await walk(callback, jar);
    expect('redirect' in first).toBe(true);
    const replay = await get(callback, jar);
    expect(replay.status).toBe(400);
    step = await walk(callback, new CookieJar());
    expect('page' in step && step.page.status === 400).toBe(true);
  });

  it('refuses a handoff taken in another browser', async () => {
    const jar = new CookieJar();
    const step = await walk(authUrl({ kc_idp_hint: 'corp' }), jar);
    if (!('page' in step)) throw new Error('expected the upstream login');
    let form = parseForm(step.page.html, step.page.url);
    if (form.action.endsWith('/username')) form = parseForm(await (await post(form.action, { ...form.hidden, username: 'alice' }, jar)).text(), step.page.url);
    let answer = await post(form.action, { ...form.hidden, username: 'alice', password: 'Alice-Upstream-1' }, jar);
    let handoff = '';
    let url = form.action;
    for (let i = 0; i < 6 && answer.status >= 300 && answer.status < 400; i++) {
      url = new URL(answer.headers.get('location')!, url).href;
      if (url.includes('/login-actions/') && url.includes('/broker?code=')) {
        handoff = url;
        break;
      }
      answer = await get(url, jar);
    }
    expect(handoff).not.toBe('');
    // Another browser (no interaction cookie) gets nothing.
    const stolen = await get(handoff, new CookieJar());
    expect(stolen.status).toBe(400);
  });
});

describe('logout', () => {
  it('ends the upstream session too (front-channel through end_session, then back to the app)', async () => {
    const { outcome, jar } = await brokeredLogin('corp', 'alice', 'Alice-Upstream-1');
    if (!('redirect' in outcome)) throw new Error(pageSays(outcome.page));
    const tokens = await tokensFor(outcome.redirect);
    const logout = `${base}/realms/${REALM}/protocol/openid-connect/logout?${new URLSearchParams({ id_token_hint: tokens.id_token as string, post_logout_redirect_uri: APP_REDIRECT })}`;
    await bench.admin.clients.update({ realm: REALM, id: (await bench.admin.clients.find({ realm: REALM, clientId: APP }))[0]!.id! }, {
      attributes: { 'post.logout.redirect.uris': '+' },
    });
    const first = await get(logout, jar);
    expect(first.status).toBe(302);
    const upstream = new URL(first.headers.get('location')!);
    expect(upstream.pathname).toBe(`/realms/${UPSTREAM}/protocol/openid-connect/logout`);
    expect(upstream.searchParams.get('id_token_hint')).toBeTruthy();
    const done = await walk(upstream.href, jar);
    expect('redirect' in done && done.redirect.startsWith(APP_REDIRECT)).toBe(true);
    // The upstream SSO session is gone: the next brokered login asks for the password again.
    const again = await walk(authUrl({ kc_idp_hint: 'corp' }), jar);
    expect('page' in again && again.page.url.includes(`/realms/${UPSTREAM}/`)).toBe(true);
  });
});

describe('back-channel logout from the provider', () => {
  const endpoint = (): string => `${base}/realms/${REALM}/protocol/openid-connect/logout/backchannel-logout`;
  const refresh = (token: unknown): Promise<Response> => postForm(`${base}/realms/${REALM}/protocol/openid-connect/token`, {
    grant_type: 'refresh_token', refresh_token: String(token),
  }, { authorization: basicAuth(APP, APP_SECRET) });

  it('ends the session the provider logs out (its logout token names the upstream sid), and only that one', async () => {
    // The upstream realm tells its client cx-broker (our broker) about logouts, as Keycloak does.
    const [upstreamClient] = await bench.admin.clients.find({ realm: UPSTREAM, clientId: 'cx-broker' });
    await bench.admin.clients.update({ realm: UPSTREAM, id: upstreamClient!.id! }, {
      attributes: { ...upstreamClient!.attributes, 'backchannel.logout.url': endpoint(), 'backchannel.logout.session.required': 'true' },
    });
    const first = await brokeredLogin('corp', 'bob', 'Bob-Upstream-1');
    if (!('redirect' in first.outcome)) throw new Error(pageSays(first.outcome.page));
    const ended = await tokensFor(first.outcome.redirect);
    const other = await brokeredLogin('corp', 'bob', 'Bob-Upstream-1');
    if (!('redirect' in other.outcome)) throw new Error(pageSays(other.outcome.page));
    const kept = await tokensFor(other.outcome.redirect);
    expect((await refresh(ended.refresh_token)).status).toBe(200);

    // An upstream admin ends the first browser's upstream session: the upstream realm posts a
    // logout token naming that session (sid) to our back-channel logout endpoint.
    const upstreamSession = await bench.server.store.db.selectFrom('broker_sessions').select('external_session')
      .where('session_id', '=', String(decodeJwt(ended.access_token as string).sid)).executeTakeFirstOrThrow();
    expect(upstreamSession.external_session).toBeTruthy();
    await bench.admin.realms.deleteSession({ realm: UPSTREAM, session: upstreamSession.external_session!, isOffline: false });
    const refused = await until(async () => (await refresh(ended.refresh_token)).status, (status) => status === 400);
    expect(refused).toBe(400);
    expect((await refresh(kept.refresh_token)).status).toBe(200);
    const logouts = await until(() => events('LOGOUT'), (list) => list.some((e) => e.details?.reason === 'back-channel logout from the identity provider'));
    expect(logouts.find((e) => e.details?.reason === 'back-channel logout from the identity provider')).toMatchObject({ details: { identity_provider: 'corp' } });
  });

  it('refuses a request without a logout token, a malformed one, and one the provider did not sign', async () => {
    const post = (form: Record<string, string>) => postForm(endpoint(), form);
    const missing = await post({});
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ error: 'invalid_request', error_description: 'No logout token' });
    expect(await (await post({ logout_token: 'not-a-jwt' })).json()).toEqual({ error: 'invalid_request', error_description: 'The logout token is invalid' });

    // A provider of the same issuer that does not check ID token signatures still checks logout tokens.
    await bench.admin.identityProviders.create({ realm: REALM, alias: 'corp-unsigned', providerId: 'oidc', enabled: true, hideOnLogin: true, config: {
      issuer: `${base}/realms/${UPSTREAM}`, clientId: 'cx-broker', clientSecret: BROKER_SECRET, clientAuthMethod: 'client_secret_basic', validateSignature: 'false', syncMode: 'IMPORT',
    } });
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sub: 'anyone', sid: 'any-session' })
      .setProtectedHeader({ alg: 'RS256', kid: 'forged' }).setIssuer(`${base}/realms/${UPSTREAM}`).setAudience('cx-broker')
      .setIssuedAt().setExpirationTime('2m').setJti(crypto.randomUUID()).sign(privateKey);
    const refused = await post({ logout_token: forged });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: 'invalid_request', error_description: 'There was no valid identity provider for the logout token' });
  });
});
