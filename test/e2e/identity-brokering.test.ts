// Issue 8's "done when" in headless Chromium: a realm configured only through the official admin
// client signs its users in through a SAML 2.0 IdP (a real SimpleSAMLphp, SP-initiated and
// IdP-initiated) and through an upstream OpenID Connect provider (another realm of the same
// server), with roles from identity provider mappers in their tokens.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { chromiumAvailable, launchChromium, recordPage } from '../support/browser.ts';
import { postForm } from '../support/server.ts';
import { startSimpleSamlPhp, type SimpleSamlPhp } from '../support/simplesamlphp.ts';

const REALM = 'cx-tenant';
const UPSTREAM = 'corp-upstream';
const CLIENT = 'agent-desktop';

describe.skipIf(!chromiumAvailable('identity brokering e2e'))('identity brokering in Chromium', { timeout: 180_000 }, () => {
  let bench: AdminBench;
  let idp: SimpleSamlPhp;
  let browser: Browser;
  let app: http.Server;
  let appOrigin: string;
  let issuer: string;

  const samlEndpoint = () => `${issuer}/broker/corp-saml/endpoint`;

  beforeAll(async () => {
    app = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('agent desktop'); });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    [bench, browser] = await Promise.all([startAdminBench(), launchChromium()]);
    issuer = `${bench.server.url}/realms/${REALM}`;
    idp = await startSimpleSamlPhp({
      serviceProviders: [{ entityId: issuer, acsUrl: samlEndpoint(), moreAcsUrls: [`${samlEndpoint()}/clients/${CLIENT}`], sloUrl: samlEndpoint() }],
      users: [
        { username: 'sam', password: 'Sam-Saml-1', attributes: { mail: ['sam@corp.example'], givenName: ['Sam'], sn: ['Supervisor'], memberOf: ['CX Supervisors'] } },
        { username: 'ivy', password: 'Ivy-Saml-1', attributes: { mail: ['ivy@corp.example'], givenName: ['Ivy'], sn: ['Agent'], memberOf: ['CX Agents'] } },
      ],
    });

    const { admin } = bench;
    // --- the upstream OIDC provider: another realm, set up with the same admin client ---------
    await admin.realms.create({ realm: UPSTREAM, enabled: true });
    await admin.roles.create({ realm: UPSTREAM, name: 'wfm-planner' });
    const { id: upstreamClient } = await admin.clients.create({
      realm: UPSTREAM, clientId: 'cx-tenant-broker', publicClient: false, secret: 'upstream-broker-secret', standardFlowEnabled: true,
      redirectUris: [`${issuer}/broker/corp-oidc/endpoint`],
    });
    expect(upstreamClient).toBeTruthy();
    const { id: olga } = await admin.users.create({
      realm: UPSTREAM, username: 'olga', email: 'olga@corp.example', firstName: 'Olga', lastName: 'Planner', enabled: true, emailVerified: true,
      credentials: [{ type: 'password', value: 'Olga-Upstream-1', temporary: false }],
    });
    const planner = await admin.roles.findOneByName({ realm: UPSTREAM, name: 'wfm-planner' });
    await admin.users.addRealmRoleMappings({ realm: UPSTREAM, id: olga, roles: [{ id: planner!.id!, name: 'wfm-planner' }] });

    // --- the tenant realm ----------------------------------------------------------------------
    await admin.realms.create({ realm: REALM, enabled: true, eventsEnabled: true });
    for (const name of ['agent', 'supervisor', 'planner']) await admin.roles.create({ realm: REALM, name });
    await admin.clients.create({ realm: REALM, clientId: CLIENT, publicClient: true, standardFlowEnabled: true, redirectUris: [`${appOrigin}/*`], baseUrl: `${appOrigin}/home` });

    // SAML: the IdP's metadata through import-config, as the admin console does it.
    const imported = await admin.identityProviders.importFromUrl({ realm: REALM, fromUrl: idp.metadataUrl, providerId: 'saml' });
    expect(imported).toMatchObject({ idpEntityId: idp.entityId, signingCertificate: idp.certificateBase64, validateSignature: 'true', metadataDescriptorUrl: idp.metadataUrl });
    // No certificate stored: with useMetadataDescriptorUrl the IdP's current metadata supplies it at login.
    const { signingCertificate: _fromMetadata, ...withoutCertificate } = imported;
    await admin.identityProviders.create({
      realm: REALM, alias: 'corp-saml', displayName: 'Corporate SAML', providerId: 'saml', enabled: true, trustEmail: true,
      config: { ...withoutCertificate, useMetadataDescriptorUrl: 'true', postBindingResponse: 'true', wantAssertionsSigned: 'true', principalType: 'SUBJECT', syncMode: 'FORCE' },
    });
    const samlMapper = (name: string, identityProviderMapper: string, config: Record<string, string>) =>
      admin.identityProviders.createMapper({ realm: REALM, alias: 'corp-saml', identityProviderMapper: { name, identityProviderAlias: 'corp-saml', identityProviderMapper, config } });
    await samlMapper('agents', 'oidc-hardcoded-role-idp-mapper', { role: 'agent' });
    await samlMapper('supervisors', 'saml-role-idp-mapper', { 'attribute.name': 'memberOf', 'attribute.value': 'CX Supervisors', role: 'supervisor' });
    await samlMapper('email', 'saml-user-attribute-idp-mapper', { 'attribute.name': 'mail', 'user.attribute': 'email' });
    await samlMapper('first name', 'saml-user-attribute-idp-mapper', { 'attribute.name': 'givenName', 'user.attribute': 'firstName' });

    // OIDC: discovery from the upstream issuer, client_secret_post, PKCE.
    await admin.identityProviders.create({
      realm: REALM, alias: 'corp-oidc', displayName: 'Corporate OIDC', providerId: 'keycloak-oidc', enabled: true,
      config: {
        issuer: `${bench.server.url}/realms/${UPSTREAM}`, clientId: 'cx-tenant-broker', clientSecret: 'upstream-broker-secret',
        clientAuthMethod: 'client_secret_post', pkceEnabled: 'true', pkceMethod: 'S256', defaultScope: 'openid profile email', syncMode: 'IMPORT',
      },
    });
    await admin.identityProviders.createMapper({ realm: REALM, alias: 'corp-oidc', identityProviderMapper: {
      name: 'planner', identityProviderAlias: 'corp-oidc', identityProviderMapper: 'keycloak-oidc-role-to-role-idp-mapper', config: { 'external.role': 'wfm-planner', role: 'planner' },
    } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await idp?.stop();
    await bench?.stop();
    await new Promise<void>((resolve) => { app?.closeAllConnections(); app?.close(() => resolve()); });
  });

  /** The app's authorization request (public client, PKCE) in a fresh browser context. */
  async function openApp(extra: Record<string, string> = {}): Promise<{ page: Page; verifier: string; done(): Promise<void>; dump(): string }> {
    const context = await browser.newContext();
    context.setDefaultTimeout(20_000);
    const page = await context.newPage();
    const record = recordPage(page);
    const verifier = crypto.randomBytes(32).toString('base64url');
    const url = new URL(`${issuer}/protocol/openid-connect/auth`);
    url.search = new URLSearchParams({
      client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: `${appOrigin}/cb`, state: crypto.randomUUID(),
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', ...extra,
    }).toString();
    await page.goto(url.toString());
    return { page, verifier, done: () => context.close(), dump: () => record.dump() };
  }

  async function accessClaims(page: Page, verifier: string, dump: () => string): Promise<Record<string, unknown>> {
    await page.waitForURL((u) => u.origin === appOrigin, { timeout: 20_000 }).catch(async () => {
      throw new Error(`never reached the app:\n${dump()}\n${await page.textContent('body').catch(() => '')}`);
    });
    const code = new URL(page.url()).searchParams.get('code')!;
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: CLIENT, code, redirect_uri: `${appOrigin}/cb`, code_verifier: verifier,
    });
    expect(response.status).toBe(200);
    const { access_token: token } = await response.json() as { access_token: string };
    return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  }

  async function samlSignIn(page: Page, username: string, password: string): Promise<void> {
    await page.waitForURL((u) => u.origin === idp.baseUrl);
    await page.fill('input[name="username"]', username);
    await page.fill('input[name="password"]', password);
    await page.press('input[name="password"]', 'Enter');
  }

  it('SP-initiated SAML: the login page button, SimpleSAMLphp, and roles from the attribute mappers', async () => {
    const login = await openApp();
    await login.page.click('#social-corp-saml');
    await samlSignIn(login.page, 'sam', 'Sam-Saml-1');
    const claims = await accessClaims(login.page, login.verifier, login.dump);
    expect((claims.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(['agent', 'supervisor']));
    expect(claims).toMatchObject({ preferred_username: 'sam', email: 'sam@corp.example' });
    await login.done();
    const [sam] = await bench.admin.users.find({ realm: REALM, username: 'sam', exact: true });
    expect(sam).toMatchObject({ firstName: 'Sam', email: 'sam@corp.example', emailVerified: true });
    expect(await bench.admin.users.listFederatedIdentities({ realm: REALM, id: sam!.id! })).toEqual([expect.objectContaining({ identityProvider: 'corp-saml', userName: 'sam' })]);
  });

  it('logout ends the session at SimpleSAMLphp too (SAML single logout) and returns to the app', async () => {
    const { admin } = bench;
    const [client] = await admin.clients.find({ realm: REALM, clientId: CLIENT });
    await admin.clients.update({ realm: REALM, id: client!.id! }, { ...client, attributes: { ...client!.attributes, 'post.logout.redirect.uris': '+' } });
    const login = await openApp({ kc_idp_hint: 'corp-saml' });
    await samlSignIn(login.page, 'sam', 'Sam-Saml-1');
    await login.page.waitForURL((u) => u.origin === appOrigin);
    const code = new URL(login.page.url()).searchParams.get('code')!;
    const tokenResponse = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: CLIENT, code, redirect_uri: `${appOrigin}/cb`, code_verifier: login.verifier,
    });
    const { id_token: idToken } = await tokenResponse.json() as { id_token: string };
    // RP-initiated logout: through SimpleSAMLphp's SingleLogoutService and back to the app.
    const logout = new URL(`${issuer}/protocol/openid-connect/logout`);
    logout.search = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: `${appOrigin}/bye`, state: 'after-logout' }).toString();
    await login.page.goto(logout.toString());
    await login.page.waitForURL((u) => u.origin === appOrigin && u.pathname === '/bye').catch(async () => {
      throw new Error(`logout did not come back to the app:\n${login.dump()}\n${await login.page.textContent('body').catch(() => '')}`);
    });
    expect(new URL(login.page.url()).searchParams.get('state')).toBe('after-logout');
    // Both sessions are gone: the next login shows SimpleSAMLphp's form again.
    const verifier = crypto.randomBytes(32).toString('base64url');
    const again = new URL(`${issuer}/protocol/openid-connect/auth`);
    again.search = new URLSearchParams({
      client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: `${appOrigin}/cb`, kc_idp_hint: 'corp-saml',
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    }).toString();
    await login.page.goto(again.toString());
    await login.page.waitForSelector('input[name="password"]');
    expect(new URL(login.page.url()).origin).toBe(idp.baseUrl);
    await login.done();
  });

  it('kc_idp_hint goes straight to the SAML IdP; an agent gets only the agent role', async () => {
    const login = await openApp({ kc_idp_hint: 'corp-saml' });
    await samlSignIn(login.page, 'ivy', 'Ivy-Saml-1');
    const roles = ((await accessClaims(login.page, login.verifier, login.dump)).realm_access as { roles: string[] }).roles;
    expect(roles).toContain('agent');
    expect(roles).not.toContain('supervisor');
    await login.done();
  });

  it('IdP-initiated SAML lands in the client with an SSO session', async () => {
    const context = await browser.newContext();
    context.setDefaultTimeout(20_000);
    const page = await context.newPage();
    const record = recordPage(page);
    await page.goto(idp.idpInitiatedUrl(issuer, undefined, `${samlEndpoint()}/clients/${CLIENT}`));
    await samlSignIn(page, 'sam', 'Sam-Saml-1');
    await page.waitForURL((u) => u.origin === appOrigin).catch(async () => {
      throw new Error(`IdP-initiated login did not land in the app:\n${record.dump()}\n${await page.textContent('body').catch(() => '')}`);
    });
    const landed = new URL(page.url());
    expect(landed.pathname).toBe('/home');
    expect(landed.searchParams.get('code')).toBeTruthy();
    // The app now starts its own login: the SSO session answers without any page.
    const verifier = crypto.randomBytes(32).toString('base64url');
    const url = new URL(`${issuer}/protocol/openid-connect/auth`);
    url.search = new URLSearchParams({
      client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: `${appOrigin}/cb`, prompt: 'none',
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    }).toString();
    await page.goto(url.toString());
    const claims = await accessClaims(page, verifier, () => record.dump());
    expect(claims.preferred_username).toBe('sam');
    await context.close();
  });

  it('upstream OpenID Connect: the button, the upstream realm\'s pages, and the upstream role mapped', async () => {
    const login = await openApp();
    await login.page.click('#social-corp-oidc');
    await login.page.waitForURL((u) => u.pathname.includes(`/realms/${UPSTREAM}/`));
    await login.page.fill('#username', 'olga');
    await login.page.click('#kc-login');
    await login.page.fill('#password', 'Olga-Upstream-1');
    await login.page.click('#kc-login');
    const claims = await accessClaims(login.page, login.verifier, login.dump);
    expect((claims.realm_access as { roles: string[] }).roles).toContain('planner');
    expect(claims).toMatchObject({ preferred_username: 'olga', email: 'olga@corp.example', given_name: 'Olga' });
    await login.done();
  });

  it('a provider that answers garbage shows an error page with the way back, and the event says why', async () => {
    const login = await openApp({ kc_idp_hint: 'corp-saml' });
    await login.page.waitForURL((u) => u.origin === idp.baseUrl);
    // The browser posts something that is no SAML response to the ACS (as a broken IdP would).
    await login.page.evaluate((action) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = action;
      for (const [name, value] of [['SAMLResponse', btoa('<garbage/>')], ['RelayState', 'x'.repeat(32)]]) {
        const input = document.createElement('input');
        input.type = 'hidden';
        input.name = name!;
        input.value = value!;
        form.appendChild(input);
      }
      document.body.appendChild(form);
      form.submit();
    }, samlEndpoint());
    await login.page.waitForSelector('#kc-error-message');
    await login.done();
    const events = await bench.admin.realms.findEvents({ realm: REALM, type: 'IDENTITY_PROVIDER_LOGIN_ERROR' as never });
    expect(events.some((e) => e.details?.identity_provider === 'corp-saml')).toBe(true);
  });
});
