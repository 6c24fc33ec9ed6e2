// Issue 9's "done when" in headless Chromium: a realm and a `finesse` identity provider configured
// only through the official admin client; an agent and a supervisor sign in on the hosted login
// page with their Finesse credentials (checked by the HTTPS Finesse stand-in, primary URL dead),
// and the tokens of the code exchange (PKCE) carry the mapped roles and team groups. Then the SSO
// desktop case: a desktop holding a Finesse (IdS) token exchanges it at the token endpoint
// (RFC 8693) for Cloakroom tokens with the same roles and groups, and refreshes them.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { decodeJwt } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { closeFinesseAgents, setFinesseLogger } from '../../src/federation/finesse/client.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { chromiumAvailable, launchChromium, recordPage } from '../support/browser.ts';
import { closedPort, startFinesse, type FinesseStandIn } from '../support/finesse.ts';
import { postForm } from '../support/server.ts';

const REALM = 'agents-finesse';
const CLIENT = 'agent-desktop';

describe.skipIf(!chromiumAvailable('finesse e2e'))('Cisco Finesse agents in Chromium', { timeout: 120_000 }, () => {
  let bench: AdminBench;
  let finesse: FinesseStandIn;
  let browser: Browser;
  let app: http.Server;
  let appOrigin: string;
  let issuer: string;

  beforeAll(async () => {
    setFinesseLogger({ warn: () => {} });
    app = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('app'); });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    [finesse, bench, browser] = await Promise.all([startFinesse(), startAdminBench(), launchChromium()]);
    issuer = `${bench.server.url}/realms/${REALM}`;
    finesse.addUser({
      loginId: '1001001', loginName: 'agnes', password: 'Agnes-Finesse-1', firstName: 'Agnes', lastName: 'Agent', extension: '4001',
      roles: ['Agent'], teamId: '500', teamName: 'Sales',
    });
    finesse.addUser({
      loginId: '1002002', loginName: 'sven', password: 'Sven-Finesse-1', firstName: 'Sven', lastName: 'Supervisor', extension: '4002',
      roles: ['Agent', 'Supervisor'], teamId: '501', teamName: 'Support',
      supervisedTeams: [{ id: '500', name: 'Sales' }, { id: '501', name: 'Support' }],
    });
    finesse.addUser({
      loginId: '1003003', loginName: 'dora', password: 'Dora-Finesse-1', firstName: 'Dora', lastName: 'Desktop', extension: '4003',
      roles: ['Agent'], teamId: '502', teamName: 'Billing',
    });

    const { admin } = bench;
    await admin.realms.create({ realm: REALM, enabled: true });
    await admin.clients.create({
      realm: REALM, clientId: CLIENT, publicClient: true, standardFlowEnabled: true, redirectUris: [`${appOrigin}/*`],
      protocolMappers: [{
        name: 'groups', protocol: 'openid-connect', protocolMapper: 'oidc-group-membership-mapper',
        config: { 'claim.name': 'groups', 'full.path': 'true', 'access.token.claim': 'true', 'id.token.claim': 'true', 'userinfo.token.claim': 'true' },
      }],
    });
    const dead = `https://127.0.0.1:${await closedPort()}`;
    await admin.identityProviders.create({
      realm: REALM, alias: 'finesse', providerId: 'finesse', enabled: true, displayName: 'Cisco Finesse',
      config: {
        finesseUrls: `${dead} ${finesse.url}`, caBundle: finesse.caPem, connectTimeout: '2000', readTimeout: '3000',
        agentRole: 'agent', supervisorRole: 'supervisor', teamsGroupPath: '/finesse-teams', createUsers: 'true',
        tokenExchangeClients: CLIENT,
      },
    });
  });

  afterAll(async () => {
    await browser?.close();
    await bench?.stop();
    await finesse?.stop();
    await closeFinesseAgents();
    await new Promise<void>((resolve) => { app?.closeAllConnections(); app?.close(() => resolve()); });
  });

  async function browserLogin(username: string, password: string): Promise<{ page: Page; verifier: string; done(): Promise<void>; dump(): string }> {
    const context = await browser.newContext();
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    const record = recordPage(page);
    const verifier = crypto.randomBytes(32).toString('base64url');
    const url = new URL(`${issuer}/protocol/openid-connect/auth`);
    url.search = new URLSearchParams({
      client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: `${appOrigin}/cb`,
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    }).toString();
    await page.goto(url.toString());
    await page.fill('#username', username);
    await page.click('#kc-login');
    await page.fill('#password', password);
    await page.click('#kc-login');
    return { page, verifier, done: () => context.close(), dump: () => record.dump() };
  }

  async function tokensFromCallback(login: { page: Page; verifier: string; dump(): string }): Promise<{ access: Record<string, unknown>; id: Record<string, unknown> }> {
    const { page } = login;
    await page.waitForURL((u) => u.origin === appOrigin, { timeout: 15_000 }).catch(async () => {
      throw new Error(`never reached the app:\n${login.dump()}\n${await page.textContent('body').catch(() => '')}`);
    });
    const code = new URL(page.url()).searchParams.get('code')!;
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: CLIENT, code, redirect_uri: `${appOrigin}/cb`, code_verifier: login.verifier,
    });
    expect(response.status).toBe(200);
    const body = await response.json() as { access_token: string; id_token: string };
    return { access: decodeJwt(body.access_token), id: decodeJwt(body.id_token) };
  }

  const realmRoles = (claims: Record<string, unknown>): string[] => (claims.realm_access as { roles: string[] }).roles;

  it('signs an agent in on the hosted login page with the Finesse credentials: agent role and team group in the token', async () => {
    const login = await browserLogin('agnes', 'Agnes-Finesse-1');
    const { access, id } = await tokensFromCallback(login);
    expect(access).toMatchObject({ preferred_username: 'agnes', given_name: 'Agnes', family_name: 'Agent' });
    expect(realmRoles(access)).toContain('agent');
    expect(realmRoles(access)).not.toContain('supervisor');
    expect(access.groups).toEqual(['/finesse-teams/Sales']);
    expect(id.groups).toEqual(['/finesse-teams/Sales']);
    await login.done();
    const [agnes] = await bench.admin.users.find({ realm: REALM, username: 'agnes', exact: true });
    expect(await bench.admin.users.listFederatedIdentities({ realm: REALM, id: agnes!.id! })).toEqual([{ identityProvider: 'finesse', userId: '1001001', userName: 'agnes' }]);
    expect(await bench.admin.users.getCredentials({ realm: REALM, id: agnes!.id! })).toEqual([]);
  });

  it('signs a supervisor in: supervisor role and the supervised teams in the token', async () => {
    const login = await browserLogin('sven', 'Sven-Finesse-1');
    const { access } = await tokensFromCallback(login);
    expect(access).toMatchObject({ preferred_username: 'sven' });
    expect(realmRoles(access)).toEqual(expect.arrayContaining(['agent', 'supervisor']));
    expect((access.groups as string[]).sort()).toEqual(['/finesse-teams/Sales', '/finesse-teams/Support']);
    await login.done();
  });

  it('shows a wrong Finesse password as invalid credentials on the login page', async () => {
    const login = await browserLogin('agnes', 'not-her-password');
    await login.page.waitForSelector('.kc-field-error');
    expect(await login.page.textContent('.kc-field-error')).toContain('Invalid username or password.');
    await login.done();
  });

  it('exchanges an SSO desktop\'s Finesse token for Cloakroom tokens carrying the roles and team group', async () => {
    // What /desktop/sso/token gave the desktop (Cisco IdS access token), and the agent id it knows.
    const finesseToken = finesse.issueBearer('1003003');
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: CLIENT,
      subject_token: finesseToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      subject_issuer: 'finesse', cc_username: '1003003', scope: 'openid',
    });
    expect(response.status).toBe(200);
    const body = await response.json() as { access_token: string; refresh_token: string; issued_token_type: string };
    const access = decodeJwt(body.access_token);
    expect(access).toMatchObject({ preferred_username: 'dora', azp: CLIENT, given_name: 'Dora' });
    expect(realmRoles(access)).toContain('agent');
    expect(access.groups).toEqual(['/finesse-teams/Billing']);

    const refreshed = await postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'refresh_token', client_id: CLIENT, refresh_token: body.refresh_token });
    expect(refreshed.status).toBe(200);
    const again = decodeJwt(((await refreshed.json()) as { access_token: string }).access_token);
    expect(again).toMatchObject({ preferred_username: 'dora' });
    expect(again.groups).toEqual(['/finesse-teams/Billing']);

    // The same desktop with a token IdS no longer accepts gets nothing.
    finesse.revokeBearer(finesseToken);
    const refused = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: CLIENT,
      subject_token: finesseToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', subject_issuer: 'finesse', cc_username: '1003003',
    });
    expect(refused.status).toBe(400);
  });
});
