// Issue 7's "done when" in headless Chromium: a realm configured only through the official admin
// client's component calls signs in an OpenLDAP user on the hosted pages, the user's LDAP group
// becomes a role in the token, and login survives the directory going away and coming back
// (a clear error while it is down, local users unaffected).
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { chromiumAvailable, launchChromium, recordPage } from '../support/browser.ts';
import { postForm } from '../support/server.ts';
import { groupLdif, personDn, personLdif, slapdAvailable, startSlapd, type Slapd } from '../support/slapd.ts';

const REALM = 'agents-ldap';
const CLIENT = 'agent-desktop';

describe.skipIf(!chromiumAvailable('ldap e2e') || !slapdAvailable('ldap e2e'))('LDAP users in Chromium', { timeout: 120_000 }, () => {
  let bench: AdminBench;
  let slapd: Slapd;
  let browser: Browser;
  let app: http.Server;
  let appOrigin: string;
  let issuer: string;

  beforeAll(async () => {
    app = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('app'); });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    [slapd, bench, browser] = await Promise.all([startSlapd({ tls: true }), startAdminBench(), launchChromium()]);
    issuer = `${bench.server.url}/realms/${REALM}`;
    await slapd.add([
      personLdif({ uid: 'agnes', cn: 'Agnes Agent', sn: 'Agent', givenName: 'Agnes', mail: 'agnes@cx.example', password: 'Agnes-Ldap-1' }),
      groupLdif({ cn: 'voice-agents', members: [personDn('agnes')] }),
    ]);

    const { admin } = bench;
    await admin.realms.create({ realm: REALM, enabled: true });
    const realmId = (await admin.realms.findOne({ realm: REALM }))!.id!;
    await admin.clients.create({ realm: REALM, clientId: CLIENT, publicClient: true, directAccessGrantsEnabled: true, redirectUris: [`${appOrigin}/*`] });
    await admin.users.create({ realm: REALM, username: 'local-lisa', enabled: true, credentials: [{ type: 'password', value: 'Local-Lisa-1', temporary: false }] });
    // The LDAP group becomes a local group under /ldap, which carries the realm role "voice".
    await admin.roles.create({ realm: REALM, name: 'voice' });
    const { id: parent } = await admin.groups.create({ realm: REALM, name: 'ldap' });
    const { id: groupId } = await admin.groups.createChildGroup({ realm: REALM, id: parent }, { name: 'voice-agents' });
    const voice = await admin.roles.findOneByName({ realm: REALM, name: 'voice' });
    await admin.groups.addRealmRoleMappings({ realm: REALM, id: groupId, roles: [{ id: voice!.id!, name: 'voice' }] });

    // StartTLS with the directory's CA, as an operator would configure it.
    const { id: providerId } = await admin.components.create({
      realm: REALM, name: 'corporate-ldap', providerId: 'ldap', providerType: 'org.keycloak.storage.UserStorageProvider', parentId: realmId,
      config: {
        vendor: ['other'], connectionUrl: [slapd.url], startTls: ['true'], 'cloakroom.tlsCaBundle': [slapd.caPem],
        usersDn: [slapd.peopleDn], bindDn: [slapd.adminDn], bindCredential: [slapd.adminPassword], editMode: ['READ_ONLY'],
        usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'], uuidLDAPAttribute: ['entryUUID'],
        userObjectClasses: ['inetOrgPerson, organizationalPerson'], searchScope: ['1'], connectionTimeout: ['2000'], readTimeout: ['3000'],
        enabled: ['true'], priority: ['0'],
      },
    });
    await admin.components.create({
      realm: REALM, name: 'groups', providerId: 'group-ldap-mapper', providerType: 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper', parentId: providerId,
      config: {
        'groups.dn': [slapd.groupsDn], 'group.name.ldap.attribute': ['cn'], 'group.object.classes': ['groupOfNames'],
        'membership.ldap.attribute': ['member'], 'membership.attribute.type': ['DN'], 'membership.user.ldap.attribute': ['uid'],
        mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['LOAD_GROUPS_BY_MEMBER_ATTRIBUTE'], 'groups.path': ['/ldap'],
        'preserve.group.inheritance': ['false'],
      },
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await bench?.stop();
    await slapd?.destroy();
    await new Promise<void>((resolve) => { app?.closeAllConnections(); app?.close(() => resolve()); });
  });

  async function browserLogin(username: string, password: string): Promise<{ page: Page; done(): Promise<void>; dump(): string }> {
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
    (page as Page & { verifier?: string }).verifier = verifier;
    return { page, done: () => context.close(), dump: () => record.dump() };
  }

  async function tokenFromCallback(page: Page, dump: () => string): Promise<Record<string, unknown>> {
    await page.waitForURL((u) => u.origin === appOrigin, { timeout: 15_000 }).catch(async () => {
      throw new Error(`never reached the app:\n${dump()}\n${await page.textContent('body').catch(() => '')}`);
    });
    const code = new URL(page.url()).searchParams.get('code')!;
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: CLIENT, code, redirect_uri: `${appOrigin}/cb`, code_verifier: (page as Page & { verifier?: string }).verifier!,
    });
    expect(response.status).toBe(200);
    const { access_token: token } = await response.json() as { access_token: string };
    return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  }

  it('signs in an LDAP user on the hosted pages, importing them, with the group role in the token', async () => {
    const login = await browserLogin('agnes', 'Agnes-Ldap-1');
    const claims = await tokenFromCallback(login.page, login.dump);
    // Keycloak's default "first name" mapper reads cn (inetOrgPerson), "last name" sn.
    expect(claims).toMatchObject({ preferred_username: 'agnes', email: 'agnes@cx.example', given_name: 'Agnes Agent', family_name: 'Agent' });
    expect((claims.realm_access as { roles: string[] }).roles).toContain('voice');
    await login.done();
    const [agnes] = await bench.admin.users.find({ realm: REALM, username: 'agnes', exact: true });
    expect(agnes?.federationLink).toBeTruthy();
  });

  it('the password grant works for the same user and refuses a wrong password', async () => {
    const grant = (password: string) => postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'password', client_id: CLIENT, username: 'agnes', password });
    expect((await grant('Agnes-Ldap-1')).status).toBe(200);
    expect((await grant('not-her-password')).status).toBe(401);
  });

  it('survives the directory going away: a clear error for LDAP users, local users unaffected, back when it returns', async () => {
    await slapd.stop();
    try {
      const down = await browserLogin('agnes', 'Agnes-Ldap-1');
      await down.page.waitForSelector('.kc-field-error');
      expect(await down.page.textContent('.kc-field-error')).toContain('Cannot reach the user directory');
      await down.done();
      const local = await browserLogin('local-lisa', 'Local-Lisa-1');
      expect((await tokenFromCallback(local.page, local.dump)).preferred_username).toBe('local-lisa');
      await local.done();
    } finally {
      await slapd.start();
    }
    const back = await browserLogin('agnes', 'Agnes-Ldap-1');
    expect((await tokenFromCallback(back.page, back.dump)).preferred_username).toBe('agnes');
    await back.done();
  });
});
