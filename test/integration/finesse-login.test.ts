// Login through Cisco Finesse end to end against the HTTPS stand-in: a realm and a `finesse`
// identity provider configured with the official admin client (primary URL dead, so every call
// fails over to the stand-in), then password grants, the hosted login page and token exchange.
// Covers user creation and refresh (attributes, link, roles, team groups), tokens carrying roles
// and groups, brute-force counting without Finesse calls while locked, no stored password, a local
// user's name not taken over, Finesse down / slow / broken, and RFC 8693 token exchange of a
// Finesse (IdS) bearer token.
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { closeFinesseAgents, setFinesseLogger } from '../../src/federation/finesse/client.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { CookieJar, follow, get, parseForm, post } from '../support/browserless.ts';
import { closedPort, startFinesse, type FinesseStandIn, type FinesseStandInUser } from '../support/finesse.ts';
import { basicAuth, postForm } from '../support/server.ts';

const CLIENT = 'app';
const BACKEND = 'backend';
const BACKEND_SECRET = 'backend-secret-1';
const OTHER = 'other-app';
const REDIRECT = 'http://localhost:8080/callback';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REFRESH_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:refresh_token';

const AGENT: FinesseStandInUser = {
  loginId: '1001001', loginName: 'CSmith', password: 'Agent-Pass-1', firstName: 'Chris', lastName: 'Smith', extension: '5001',
  roles: ['Agent'], teamId: '500', teamName: 'Sales',
};
const SUPERVISOR: FinesseStandInUser = {
  loginId: '1002002', loginName: 'sjones', password: 'Super-Pass-1', firstName: 'Sam', lastName: 'Jones', extension: '5002',
  roles: ['Agent', 'Supervisor'], teamId: '501', teamName: 'Support',
  supervisedTeams: [{ id: '501', name: 'Support' }, { id: '502', name: 'Billing' }],
};
const LOCKY: FinesseStandInUser = { loginId: '1003003', loginName: 'locky', password: 'Locky-Pass-1', roles: ['Agent'], teamId: '500', teamName: 'Sales' };
const TAKEN: FinesseStandInUser = { loginId: '1004004', loginName: 'taken', password: 'Finesse-Taken-1', roles: ['Agent'], teamId: '500', teamName: 'Sales' };
const XAGENT: FinesseStandInUser = {
  loginId: '1005005', loginName: 'xagent', password: 'Xagent-Pass-1', firstName: 'Xena', lastName: 'Agent', extension: '5005',
  roles: ['Agent'], teamId: '502', teamName: 'Billing',
};
const NEWBIE: FinesseStandInUser = { loginId: '1006006', loginName: 'newbie', password: 'Newbie-Pass-1', roles: ['Agent'], teamId: '500', teamName: 'Sales' };

type Grant = { status: number; body: Record<string, unknown> & { access_token?: string; refresh_token?: string; error?: string; error_description?: string } };

describe('login through Cisco Finesse', () => {
  let bench: AdminBench;
  let finesse: FinesseStandIn;
  const realm = `finesse-${crypto.randomBytes(4).toString('hex')}`;
  let realmId: string;
  let dead: string;

  const tokenUrl = (realmName = realm) => `${bench.server.url}/realms/${realmName}/protocol/openid-connect/token`;

  const grant = async (username: string, password: string, realmName = realm): Promise<Grant> => {
    const res = await postForm(tokenUrl(realmName), { grant_type: 'password', client_id: CLIENT, username, password, scope: 'openid' });
    return { status: res.status, body: await res.json() as Grant['body'] };
  };

  const exchange = async (form: Record<string, string>, headers: Record<string, string> = {}): Promise<Grant> => {
    const res = await postForm(tokenUrl(), { grant_type: EXCHANGE, subject_token_type: ACCESS_TOKEN_TYPE, ...form }, headers);
    return { status: res.status, body: await res.json() as Grant['body'] };
  };

  const findUser = async (username: string, realmName = realm) => (await bench.admin.users.find({ realm: realmName, username, exact: true }))[0];

  const requestsFor = (id: string) => finesse.requests.filter((r) => r.path === `/finesse/api/User/${id}`).length;

  /** Events of a realm, polled (they are written off the request path). */
  async function waitForEvent(match: (e: { type: string; error: string | null; user_id: string | null; details: Record<string, unknown> }) => boolean, id = realmId) {
    for (let i = 0; i < 40; i++) {
      const rows = await bench.server.store.db.selectFrom('events').select(['type', 'error', 'user_id', 'details']).where('realm_id', '=', id).execute();
      const found = rows.map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> })).find(match);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  async function createRealm(realmName: string): Promise<string> {
    await bench.admin.realms.create({
      realm: realmName, enabled: true, eventsEnabled: true, bruteForceProtected: true, failureFactor: 3, waitIncrementSeconds: 600,
      quickLoginCheckMilliSeconds: 0,
    });
    await bench.admin.clients.create({
      realm: realmName, clientId: CLIENT, publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: true, redirectUris: [REDIRECT],
      protocolMappers: [{
        name: 'groups', protocol: 'openid-connect', protocolMapper: 'oidc-group-membership-mapper',
        config: { 'claim.name': 'groups', 'full.path': 'true', 'access.token.claim': 'true', 'id.token.claim': 'true', 'userinfo.token.claim': 'true' },
      }],
    });
    return (await bench.admin.realms.findOne({ realm: realmName }))!.id!;
  }

  beforeAll(async () => {
    setFinesseLogger({ warn: () => {} });
    [finesse, bench] = await Promise.all([startFinesse(), startAdminBench()]);
    for (const user of [AGENT, SUPERVISOR, LOCKY, TAKEN, XAGENT, NEWBIE]) finesse.addUser(user);
    dead = `https://127.0.0.1:${await closedPort()}`;

    realmId = await createRealm(realm);
    await bench.admin.clients.create({
      realm, clientId: BACKEND, publicClient: false, secret: BACKEND_SECRET, standardFlowEnabled: false, directAccessGrantsEnabled: true,
    });
    await bench.admin.clients.create({ realm, clientId: OTHER, publicClient: true, standardFlowEnabled: true, redirectUris: [REDIRECT] });
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse', providerId: 'finesse', enabled: true,
      config: {
        finesseUrls: `${dead} ${finesse.url}`, caBundle: finesse.caPem, connectTimeout: '2000', readTimeout: '3000',
        tokenExchangeClients: `${CLIENT}, ${BACKEND}`,
      },
    });
    // A local user holding the name of a Finesse agent, and a plain local user.
    await bench.admin.users.create({ realm, username: 'taken', enabled: true, credentials: [{ type: 'password', value: 'Local-Taken-1', temporary: false }] });
    await bench.admin.users.create({ realm, username: 'localuser', enabled: true, credentials: [{ type: 'password', value: 'Local-Password-1', temporary: false }] });
  });

  afterAll(async () => {
    await bench?.stop();
    await finesse?.stop();
    await closeFinesseAgents();
  });

  it('creates an agent at the first password grant: attributes, link, role and team group, no password', async () => {
    expect(await findUser('csmith')).toBeUndefined();
    const answer = await grant('CSmith', 'Agent-Pass-1');
    expect(answer.status).toBe(200);
    // The dead primary was skipped; the stand-in answered a Basic GET of the typed login.
    expect(finesse.requests).toContainEqual(expect.objectContaining({ path: '/finesse/api/User/CSmith', auth: 'basic', username: 'CSmith', status: 200 }));

    const user = (await findUser('csmith'))!;
    expect(user).toMatchObject({ username: 'csmith', firstName: 'Chris', lastName: 'Smith', enabled: true });
    expect(user.attributes).toMatchObject({
      'finesse.loginId': ['1001001'], 'finesse.loginName': ['CSmith'], 'finesse.extension': ['5001'], 'finesse.teamId': ['500'],
    });
    expect(await bench.admin.users.listFederatedIdentities({ realm, id: user.id! })).toEqual([
      { identityProvider: 'finesse', userId: '1001001', userName: 'CSmith' },
    ]);
    const roles = (await bench.admin.users.listRealmRoleMappings({ realm, id: user.id! })).map((r) => r.name);
    expect(roles).toEqual(expect.arrayContaining(['agent', `default-roles-${realm}`]));
    expect(roles).not.toContain('supervisor');
    const groups = await bench.admin.users.listGroups({ realm, id: user.id! });
    expect(groups.map((g) => g.path)).toEqual(['/finesse-teams/Sales']);
    expect((await bench.admin.groups.findOne({ realm, id: groups[0]!.id! }))!.attributes).toMatchObject({ 'finesse.teamId': ['500'] });
    // No Finesse password is stored.
    expect(await bench.admin.users.getCredentials({ realm, id: user.id! })).toEqual([]);

    const claims = decodeJwt(answer.body.access_token!);
    expect(claims).toMatchObject({ preferred_username: 'csmith', given_name: 'Chris', family_name: 'Smith' });
    expect((claims.realm_access as { roles: string[] }).roles).toContain('agent');
    expect(claims.groups).toEqual(['/finesse-teams/Sales']);
    const event = await waitForEvent((e) => e.type === 'LOGIN' && e.user_id === user.id);
    expect(event?.details).toMatchObject({ username: 'CSmith', grant_type: 'password' });
  });

  it('refuses to set a local password for a Finesse user: it would never be read', async () => {
    const user = (await findUser('csmith'))!;
    const reset = await bench.api(`/${realm}/users/${user.id}/reset-password`, {
      method: 'PUT', body: JSON.stringify({ type: 'password', value: 'Some-Local-Password-1', temporary: false }),
    });
    expect(reset.status).toBe(400);
    expect(await reset.json()).toMatchObject({ error: 'finessePasswordManagedMessage', error_description: 'The password of this account is managed in Cisco Finesse.' });
    expect(await bench.admin.users.getCredentials({ realm, id: user.id! })).toEqual([]);
  });

  it('signs a linked agent in again through Finesse (by username or loginId) and refreshes it', async () => {
    finesse.addUser({ ...AGENT, extension: '5101', lastName: 'Smith-Jones' });
    const before = requestsFor('1001001');
    expect((await grant('csmith', 'Agent-Pass-1')).status).toBe(200);
    expect((await grant('1001001', 'Agent-Pass-1')).status).toBe(200);
    // Linked users are asked by loginId.
    expect(requestsFor('1001001')).toBe(before + 2);
    const user = (await findUser('csmith'))!;
    expect(user).toMatchObject({ lastName: 'Smith-Jones', attributes: expect.objectContaining({ 'finesse.extension': ['5101'] }) });
    expect(await bench.admin.users.getCredentials({ realm, id: user.id! })).toEqual([]);
    finesse.addUser(AGENT);
  });

  it('gives a supervisor the supervisor role and the supervised teams', async () => {
    const answer = await grant('sjones', 'Super-Pass-1');
    expect(answer.status).toBe(200);
    const user = (await findUser('sjones'))!;
    const roles = (await bench.admin.users.listRealmRoleMappings({ realm, id: user.id! })).map((r) => r.name);
    expect(roles).toEqual(expect.arrayContaining(['agent', 'supervisor']));
    const paths = (await bench.admin.users.listGroups({ realm, id: user.id! })).map((g) => g.path).sort();
    expect(paths).toEqual(['/finesse-teams/Billing', '/finesse-teams/Support']);
    const claims = decodeJwt(answer.body.access_token!);
    expect((claims.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(['agent', 'supervisor']));
    expect((claims.groups as string[]).sort()).toEqual(['/finesse-teams/Billing', '/finesse-teams/Support']);
  });

  it('replaces only the mapped roles and the team memberships when Finesse changes them', async () => {
    const user = (await findUser('sjones'))!;
    // Local grants outside Finesse's scope stay.
    await bench.admin.roles.create({ realm, name: 'wallboard' });
    const wallboard = (await bench.admin.roles.findOneByName({ realm, name: 'wallboard' }))!;
    await bench.admin.users.addRealmRoleMappings({ realm, id: user.id!, roles: [{ id: wallboard.id!, name: 'wallboard' }] });
    const { id: localGroup } = await bench.admin.groups.create({ realm, name: 'night-shift' });
    await bench.admin.users.addToGroup({ realm, id: user.id!, groupId: localGroup });

    // Demoted to agent, moved to Sales.
    finesse.addUser({ ...SUPERVISOR, roles: ['Agent'], teamId: '500', teamName: 'Sales', supervisedTeams: [] });
    expect((await grant('sjones', 'Super-Pass-1')).status).toBe(200);
    const roles = (await bench.admin.users.listRealmRoleMappings({ realm, id: user.id! })).map((r) => r.name);
    expect(roles).toEqual(expect.arrayContaining(['agent', 'wallboard']));
    expect(roles).not.toContain('supervisor');
    expect((await bench.admin.users.listGroups({ realm, id: user.id! })).map((g) => g.path).sort()).toEqual(['/finesse-teams/Sales', '/night-shift']);
    // Promoted again; team 502 renamed in Finesse: its group (found by finesse.teamId) follows.
    finesse.addUser({ ...SUPERVISOR, supervisedTeams: [{ id: '501', name: 'Support' }, { id: '502', name: 'Collections' }] });
    expect((await grant('sjones', 'Super-Pass-1')).status).toBe(200);
    const groups = await bench.admin.users.listGroups({ realm, id: user.id! });
    expect(groups.map((g) => g.path).sort()).toEqual(['/finesse-teams/Collections', '/finesse-teams/Support', '/night-shift']);
    expect((await bench.admin.groups.findOne({ realm, id: groups.find((g) => g.name === 'Collections')!.id! }))!.attributes).toMatchObject({ 'finesse.teamId': ['502'] });
    finesse.addUser(SUPERVISOR);
    expect((await grant('sjones', 'Super-Pass-1')).status).toBe(200);
    expect((await bench.admin.users.listGroups({ realm, id: user.id! })).map((g) => g.path).sort()).toEqual(['/finesse-teams/Billing', '/finesse-teams/Support', '/night-shift']);
  });

  it('answers a wrong password with 401 and counts it; a locked account makes no Finesse call', async () => {
    expect((await grant('locky', 'Locky-Pass-1')).status).toBe(200);
    const user = (await findUser('locky'))!;
    for (let i = 0; i < 3; i++) {
      expect(await grant('locky', 'wrong-password')).toMatchObject({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    }
    const event = await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.error === 'invalid_user_credentials' && e.user_id === user.id);
    expect(event).toBeDefined();
    expect(await bench.admin.attackDetection.findOne({ realm, id: user.id! })).toMatchObject({ numFailures: 3, disabled: true });
    const before = requestsFor('1003003');
    // Locked: even the right password gets the wrong-password answer, and Finesse is not asked.
    expect(await grant('locky', 'Locky-Pass-1')).toMatchObject({ status: 401, body: { error: 'invalid_grant' } });
    expect(requestsFor('1003003')).toBe(before);
    await bench.admin.attackDetection.del({ realm, id: user.id! });
    expect((await grant('locky', 'Locky-Pass-1')).status).toBe(200);
  });

  it('answers an unknown Finesse user (404) and a wrong first-login password like an unknown user, creating nothing', async () => {
    expect(await grant('nobody', 'whatever-1')).toMatchObject({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    expect(finesse.requests).toContainEqual(expect.objectContaining({ path: '/finesse/api/User/nobody', status: 404 }));
    expect(await grant('newbie', 'not-the-password')).toMatchObject({ status: 401, body: { error: 'invalid_grant' } });
    expect(await findUser('newbie')).toBeUndefined();
    expect(await findUser('nobody')).toBeUndefined();
    const event = await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.error === 'user_not_found' && e.details.username === 'newbie');
    expect(event).toBeDefined();
  });

  it('creates one user when two first logins of an agent race', async () => {
    const answers = await Promise.all([grant('newbie', 'Newbie-Pass-1'), grant('newbie', 'Newbie-Pass-1'), grant('1006006', 'Newbie-Pass-1')]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const users = await bench.admin.users.find({ realm, username: 'newbie', exact: true });
    expect(users).toHaveLength(1);
    expect(await bench.admin.users.listFederatedIdentities({ realm, id: users[0]!.id! })).toEqual([{ identityProvider: 'finesse', userId: '1006006', userName: 'newbie' }]);
  });

  it('never takes over a local user holding the same username', async () => {
    const local = (await findUser('taken'))!;
    // The name is local: its own password decides, Finesse is not asked.
    expect(await grant('taken', 'Finesse-Taken-1')).toMatchObject({ status: 401 });
    expect((await grant('taken', 'Local-Taken-1')).status).toBe(200);
    // By loginId: Finesse accepts it, but the user is not created over the local one.
    expect((await grant('1004004', 'Finesse-Taken-1')).status).toBe(401);
    expect(await bench.admin.users.listFederatedIdentities({ realm, id: local.id! })).toEqual([]);
    expect((await bench.admin.users.find({ realm, search: 'taken' })).map((u) => u.id)).toEqual([local.id]);
    // Plain local users never reach Finesse.
    const before = finesse.requests.length;
    expect((await grant('localuser', 'Local-Password-1')).status).toBe(200);
    expect(finesse.requests.length).toBe(before);
  });

  describe('token exchange (RFC 8693) of a Finesse SSO token', () => {
    it('issues Cloakroom tokens with a refresh token for the agent of a valid bearer token', async () => {
      const bearer = finesse.issueBearer(XAGENT.loginId);
      const answer = await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'finesse', cc_username: XAGENT.loginId, scope: 'openid' });
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ token_type: 'Bearer', issued_token_type: REFRESH_TOKEN_TYPE });
      expect(answer.body.refresh_token).toEqual(expect.any(String));
      expect(answer.body.id_token).toEqual(expect.any(String));
      expect(finesse.requests).toContainEqual(expect.objectContaining({ path: `/finesse/api/User/${XAGENT.loginId}`, auth: 'bearer', status: 200 }));

      const claims = decodeJwt(answer.body.access_token!);
      expect(claims).toMatchObject({ preferred_username: 'xagent', azp: CLIENT, given_name: 'Xena' });
      expect((claims.realm_access as { roles: string[] }).roles).toContain('agent');
      expect(claims.groups).toEqual(['/finesse-teams/Billing']);
      const user = (await findUser('xagent'))!;
      expect(await bench.admin.users.listFederatedIdentities({ realm, id: user.id! })).toEqual([
        { identityProvider: 'finesse', userId: XAGENT.loginId, userName: 'xagent' },
      ]);
      expect(await waitForEvent((e) => e.type === 'TOKEN_EXCHANGE' && e.user_id === user.id)).toMatchObject({ details: expect.objectContaining({ subject_issuer: 'finesse' }) });
      expect(await waitForEvent((e) => e.type === 'REGISTER' && e.user_id === user.id)).toMatchObject({ details: expect.objectContaining({ register_method: 'token-exchange' }) });

      // The refresh token works like any other.
      const refreshed = await postForm(tokenUrl(), { grant_type: 'refresh_token', client_id: CLIENT, refresh_token: answer.body.refresh_token! });
      expect(refreshed.status).toBe(200);
      expect(decodeJwt(((await refreshed.json()) as { access_token: string }).access_token)).toMatchObject({ preferred_username: 'xagent' });
    });

    it('accepts requested_subject and a confidential client; access_token only when asked', async () => {
      const bearer = finesse.issueBearer(XAGENT.loginId);
      const answer = await exchange(
        { subject_token: bearer, subject_issuer: 'finesse', requested_subject: 'xagent', requested_token_type: ACCESS_TOKEN_TYPE },
        { authorization: basicAuth(BACKEND, BACKEND_SECRET) },
      );
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ issued_token_type: ACCESS_TOKEN_TYPE, refresh_expires_in: 0 });
      expect(answer.body.refresh_token).toBeUndefined();
      expect(decodeJwt(answer.body.access_token!)).toMatchObject({ preferred_username: 'xagent', azp: BACKEND });
    });

    it('refuses a wrong or expired token with 400 invalid_token', async () => {
      const bearer = finesse.issueBearer(XAGENT.loginId);
      finesse.revokeBearer(bearer);
      expect(await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'finesse', cc_username: XAGENT.loginId }))
        .toEqual({ status: 400, body: { error: 'invalid_token', error_description: 'invalid token' } });
      // Another agent's token does not open this agent's account.
      const other = finesse.issueBearer(AGENT.loginId);
      expect(await exchange({ client_id: CLIENT, subject_token: other, subject_issuer: 'finesse', cc_username: XAGENT.loginId }))
        .toMatchObject({ status: 400, body: { error: 'invalid_token' } });
      expect(await waitForEvent((e) => e.type === 'TOKEN_EXCHANGE_ERROR' && e.error === 'invalid_token')).toBeDefined();
    });

    it('refuses clients not allowed to exchange for the provider', async () => {
      const bearer = finesse.issueBearer(XAGENT.loginId);
      const before = finesse.requests.length;
      expect(await exchange({ client_id: OTHER, subject_token: bearer, subject_issuer: 'finesse', cc_username: XAGENT.loginId }))
        .toEqual({ status: 403, body: { error: 'access_denied', error_description: 'Client not allowed to exchange' } });
      expect(finesse.requests.length).toBe(before);
      expect(await waitForEvent((e) => e.type === 'TOKEN_EXCHANGE_ERROR' && e.error === 'not_allowed')).toBeDefined();
    });

    it('refuses an unknown subject_issuer, other token types and a missing agent id with 400', async () => {
      const bearer = finesse.issueBearer(XAGENT.loginId);
      expect(await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'no-such-idp', cc_username: XAGENT.loginId }))
        .toEqual({ status: 400, body: { error: 'invalid_issuer', error_description: 'Invalid subject_issuer parameter' } });
      expect(await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'finesse', cc_username: XAGENT.loginId, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }))
        .toEqual({ status: 400, body: { error: 'invalid_token', error_description: 'invalid token type' } });
      expect(await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'finesse' }))
        .toMatchObject({ status: 400, body: { error: 'invalid_request' } });
      expect(await exchange({ client_id: CLIENT, subject_token: bearer, subject_issuer: 'finesse', cc_username: XAGENT.loginId, audience: 'no-such-client' }))
        .toEqual({ status: 400, body: { error: 'invalid_client', error_description: 'Audience not found' } });
    });

    it('lists the grant type in discovery', async () => {
      const meta = await (await fetch(`${bench.server.url}/realms/${realm}/.well-known/openid-configuration`)).json() as { grant_types_supported: string[] };
      expect(meta.grant_types_supported).toContain(EXCHANGE);
    });
  });

  describe('when Finesse fails', () => {
    const failRealm = `finesse-fail-${crypto.randomBytes(4).toString('hex')}`;
    let failRealmId: string;
    let flaky: FinesseStandIn;
    let providerRep: Record<string, unknown>;
    const FLAKY_AGENT: FinesseStandInUser = { loginId: '2001001', loginName: 'flo', password: 'Flo-Pass-1', roles: ['Agent'], teamId: '600', teamName: 'Night' };
    const FLAKY_OTHER: FinesseStandInUser = { loginId: '2002002', loginName: 'fred', password: 'Fred-Pass-1', roles: ['Agent'], teamId: '600', teamName: 'Night' };

    async function passwordPage(username: string, password: string): Promise<{ status: number; html: string }> {
      const jar = new CookieJar();
      const url = new URL(`${bench.server.url}/realms/${failRealm}/protocol/openid-connect/auth`);
      url.search = new URLSearchParams({ client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT, code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }).toString();
      const { response, url: pageUrl } = await follow(await get(url.toString(), jar), jar, (u) => u.startsWith(REDIRECT));
      let html = await response.text();
      let form = parseForm(html, pageUrl);
      if (form.action.endsWith('/username')) {
        html = await (await post(form.action, { ...form.hidden, username }, jar)).text();
        form = parseForm(html, pageUrl);
      }
      const answer = await post(form.action, { ...form.hidden, username, password }, jar);
      return { status: answer.status, html: await answer.text() };
    }

    async function setUrls(urls: string): Promise<void> {
      await bench.admin.identityProviders.update({ realm: failRealm, alias: 'flaky' }, { ...providerRep, config: { ...(providerRep.config as object), finesseUrls: urls } });
    }

    beforeAll(async () => {
      flaky = await startFinesse({ slowMs: 20_000 });
      flaky.addUser(FLAKY_AGENT);
      flaky.addUser(FLAKY_OTHER);
      failRealmId = await createRealm(failRealm);
      await bench.admin.identityProviders.create({
        realm: failRealm, alias: 'flaky', providerId: 'finesse', enabled: true,
        config: { finesseUrls: flaky.url, caBundle: flaky.caPem, connectTimeout: '500', readTimeout: '500' },
      });
      providerRep = (await bench.admin.identityProviders.findOne({ realm: failRealm, alias: 'flaky' })) as Record<string, unknown>;
      expect((await grant('flo', 'Flo-Pass-1', failRealm)).status).toBe(200);
    });

    afterAll(async () => {
      await flaky?.stop();
    });

    it('answers 503 when every Finesse URL is dead, with a LOGIN_ERROR finesse_unavailable event, and counts nothing', async () => {
      await setUrls(`https://127.0.0.1:${await closedPort()} https://127.0.0.1:${await closedPort()}`);
      try {
        expect(await grant('flo', 'Flo-Pass-1', failRealm)).toEqual({
          status: 503, body: { error: 'temporarily_unavailable', error_description: 'Cannot reach Cisco Finesse' },
        });
        // A name unknown here may be in Finesse: the same answer.
        expect(await grant('fred', 'Fred-Pass-1', failRealm)).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
        const flo = (await findUser('flo', failRealm))!;
        const event = await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.error === 'finesse_unavailable' && e.user_id === flo.id, failRealmId);
        expect(event?.details).toMatchObject({ username: 'flo', grant_type: 'password' });
        expect(await bench.admin.attackDetection.findOne({ realm: failRealm, id: flo.id! })).toMatchObject({ numFailures: 0 });
        // Local users are not affected.
        await bench.admin.users.create({ realm: failRealm, username: 'local-lou', enabled: true, credentials: [{ type: 'password', value: 'Local-Lou-1', temporary: false }] });
        expect((await grant('local-lou', 'Local-Lou-1', failRealm)).status).toBe(200);

        const page = await passwordPage('flo', 'Flo-Pass-1');
        expect(page.status).toBe(503);
        expect(page.html).toContain('Cannot reach Cisco Finesse. Try again later.');
      } finally {
        await setUrls(flaky.url);
      }
    });

    it('answers 503 when Finesse does not answer within readTimeout', async () => {
      flaky.mode = 'slow';
      try {
        expect(await grant('flo', 'Flo-Pass-1', failRealm)).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
        expect(await grant('fred', 'Fred-Pass-1', failRealm)).toMatchObject({ status: 503 });
        expect(await findUser('fred', failRealm)).toBeUndefined();
      } finally {
        flaky.mode = 'normal';
      }
    });

    it('refuses broken XML with 503 and creates nothing', async () => {
      flaky.mode = 'broken-xml';
      try {
        expect(await grant('fred', 'Fred-Pass-1', failRealm)).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
        expect(await findUser('fred', failRealm)).toBeUndefined();
        expect((await bench.admin.groups.find({ realm: failRealm })).map((g) => g.name)).toEqual(['finesse-teams']);
        expect(await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.error === 'finesse_unavailable' && e.details.username === 'fred', failRealmId)).toBeDefined();
      } finally {
        flaky.mode = 'normal';
      }
      expect((await grant('fred', 'Fred-Pass-1', failRealm)).status).toBe(200);
    });

    it('answers a token exchange with 503 while Finesse is down', async () => {
      await bench.admin.identityProviders.update({ realm: failRealm, alias: 'flaky' }, {
        ...providerRep, config: { ...(providerRep.config as object), finesseUrls: `https://127.0.0.1:${await closedPort()}`, tokenExchangeClients: CLIENT },
      });
      const answer = await postForm(tokenUrl(failRealm), {
        grant_type: EXCHANGE, client_id: CLIENT, subject_token: 'some-token', subject_token_type: ACCESS_TOKEN_TYPE, subject_issuer: 'flaky', cc_username: 'flo',
      });
      expect(answer.status).toBe(503);
      expect(await answer.json()).toEqual({ error: 'temporarily_unavailable', error_description: 'Cannot reach Cisco Finesse' });
    });
  });
});
