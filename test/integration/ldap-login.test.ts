// Login through LDAP end to end against a real slapd: a realm configured through the official
// admin client's component calls as Keycloak's admin console makes them (an `ldap` provider with
// its default mappers, a group-ldap-mapper and a role-ldap-mapper), then password grants and the
// hosted login pages. Covers import on first login, refresh on later ones, brute-force counting,
// LDAP password changes, login by e-mail, LDAP injection attempts, the directory going down and
// coming back, and Active Directory shaped entries (objectGUID, userAccountControl, pwdLastSet).
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { CookieJar, browserlessLogin, follow, get, parseForm, post } from '../support/browserless.ts';
import { postForm } from '../support/server.ts';
import { EMPTY_MEMBER, groupDn, groupLdif, ldifLine, ouLdif, personDn, personLdif, slapdAvailable, sshaPassword, startSlapd, type Slapd } from '../support/slapd.ts';

const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const LDAP_MAPPER = 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper';
const CLIENT = 'app';
const REDIRECT = 'http://localhost:8080/callback';
const ROLES_DN = 'ou=roles,dc=example,dc=org';

type Grant = { status: number; body: { access_token?: string; error?: string; error_description?: string } };

describe.skipIf(!slapdAvailable('ldap login'))('login through LDAP', () => {
  let bench: AdminBench;
  let slapd: Slapd;
  let adSlapd: Slapd;
  const realm = `ldap-${crypto.randomBytes(4).toString('hex')}`;
  let realmId: string;
  let providerId: string;

  const grant = async (username: string, password: string, realmName = realm): Promise<Grant> => {
    const res = await postForm(`${bench.server.url}/realms/${realmName}/protocol/openid-connect/token`, {
      grant_type: 'password', client_id: CLIENT, username, password, scope: 'openid',
    });
    return { status: res.status, body: await res.json() as Grant['body'] };
  };

  const findUser = async (username: string, realmName = realm) => (await bench.admin.users.find({ realm: realmName, username, exact: true }))[0];

  const person = (uid: string, password: string, extra: { mail?: string; cn?: string; sn?: string } = {}): string =>
    personLdif({ uid, cn: extra.cn ?? uid, sn: extra.sn ?? 'Tester', mail: extra.mail ?? `${uid}@example.org`, password });

  const setLdapPassword = (uid: string, password: string): Promise<void> =>
    slapd.modify([ldifLine('dn', personDn(uid)), 'changetype: modify', 'replace: userPassword', ldifLine('userPassword', sshaPassword(password))].join('\n'));

  /** Events of the realm, polled (they are written off the request path). */
  async function waitForEvent(match: (e: { type: string; error: string | null; user_id: string | null; details: Record<string, unknown> }) => boolean) {
    for (let i = 0; i < 40; i++) {
      const rows = await bench.server.store.db.selectFrom('events').select(['type', 'error', 'user_id', 'details']).where('realm_id', '=', realmId).execute();
      const found = rows.map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> })).find(match);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  /** The Keycloak admin console's create call for an LDAP provider. */
  async function createProvider(realmName: string, parentId: string, directory: Slapd, config: Record<string, string[]> = {}): Promise<string> {
    const { id } = await bench.admin.components.create({
      realm: realmName, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId,
      config: {
        vendor: ['other'], connectionUrl: [directory.url], usersDn: [directory.peopleDn], bindDn: [directory.adminDn],
        bindCredential: [directory.adminPassword], editMode: ['READ_ONLY'], usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'],
        uuidLDAPAttribute: ['entryUUID'], userObjectClasses: ['inetOrgPerson, organizationalPerson'], searchScope: ['1'],
        enabled: ['true'], priority: ['0'], ...config,
      },
    });
    return id;
  }

  async function createRealm(realmName: string): Promise<string> {
    await bench.admin.realms.create({
      realm: realmName, enabled: true, eventsEnabled: true, bruteForceProtected: true, failureFactor: 3, waitIncrementSeconds: 600,
      quickLoginCheckMilliSeconds: 0, loginWithEmailAllowed: true,
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
    [slapd, adSlapd, bench] = await Promise.all([startSlapd({ tls: false }), startSlapd({ tls: false, adSchema: true }), startAdminBench()]);
    await slapd.add([
      ouLdif('roles'),
      person('alice', 'Alice-Ldap-1', { cn: 'Alice', sn: 'Liddell', mail: 'Alice@Example.ORG' }),
      person('bob', 'Bob-Ldap-1'),
      person('carol', 'Carol-Ldap-1'),
      person('dave', 'Dave-Ldap-1'),
      person('erin', 'Erin-Ldap-1', { mail: 'erin.mail@example.org' }),
      person('frank', 'Frank-Ldap-1'),
      person('taken', 'Taken-Ldap-1'),
      groupLdif({ cn: 'engineers', members: [personDn('alice'), personDn('bob')] }),
      groupLdif({ cn: 'admins', members: [personDn('bob')] }),
      groupLdif({ cn: 'ldap-manager', members: [personDn('alice')], ou: 'roles' }),
      groupLdif({ cn: 'ldap-viewer', members: [personDn('bob')], ou: 'roles' }),
    ]);

    realmId = await createRealm(realm);
    await bench.admin.groups.create({ realm, name: 'ldap' });
    providerId = await createProvider(realm, realmId, slapd);
    await bench.admin.components.create({
      realm, name: 'groups', providerId: 'group-ldap-mapper', providerType: LDAP_MAPPER, parentId: providerId,
      config: {
        'groups.dn': [slapd.groupsDn], 'group.name.ldap.attribute': ['cn'], 'group.object.classes': ['groupOfNames'],
        'preserve.group.inheritance': ['false'], 'membership.ldap.attribute': ['member'], 'membership.attribute.type': ['DN'],
        'membership.user.ldap.attribute': ['uid'], mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['LOAD_GROUPS_BY_MEMBER_ATTRIBUTE'],
        'groups.path': ['/ldap'], 'memberof.ldap.attribute': ['memberOf'], 'ignore.missing.groups': ['false'],
        'drop.non.existing.groups.during.sync': ['false'],
      },
    });
    await bench.admin.components.create({
      realm, name: 'roles', providerId: 'role-ldap-mapper', providerType: LDAP_MAPPER, parentId: providerId,
      config: {
        'roles.dn': [ROLES_DN], 'role.name.ldap.attribute': ['cn'], 'role.object.classes': ['groupOfNames'],
        'membership.ldap.attribute': ['member'], 'membership.attribute.type': ['DN'], 'membership.user.ldap.attribute': ['uid'],
        mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['LOAD_ROLES_BY_MEMBER_ATTRIBUTE'], 'memberof.ldap.attribute': ['memberOf'],
        'use.realm.roles.mapping': ['true'],
      },
    });
    // A local user holding the name of an LDAP entry, and a plain local user.
    await bench.admin.users.create({ realm, username: 'taken', enabled: true, credentials: [{ type: 'password', value: 'Local-Taken-1', temporary: false }] });
    await bench.admin.users.create({ realm, username: 'localuser', enabled: true, credentials: [{ type: 'password', value: 'Local-Password-1', temporary: false }] });
  }, 60_000);

  afterAll(async () => {
    await bench?.stop();
    await slapd?.destroy();
    await adSlapd?.destroy();
  });

  it('imports an LDAP user at the first password grant, with mapped attributes, groups and roles', async () => {
    const before = await findUser('alice');
    expect(before).toBeUndefined();
    const { status, body } = await grant('alice', 'Alice-Ldap-1');
    expect(status).toBe(200);

    const user = (await findUser('alice'))!;
    const [entry] = await slapd.search('(uid=alice)', ['entryUUID', 'createTimestamp', 'modifyTimestamp']);
    expect(user).toMatchObject({
      username: 'alice', firstName: 'Alice', lastName: 'Liddell', email: 'alice@example.org', emailVerified: false, enabled: true,
      federationLink: providerId,
    });
    expect(user.attributes).toMatchObject({
      LDAP_ID: [entry!.entryUUID], LDAP_ENTRY_DN: [personDn('alice')],
      createTimestamp: [entry!.createTimestamp], modifyTimestamp: [entry!.modifyTimestamp],
    });
    // No local password: the password lives in LDAP only.
    expect(await bench.admin.users.getCredentials({ realm, id: user.id! })).toEqual([]);

    const claims = decodeJwt(body.access_token!) as { realm_access?: { roles: string[] }; groups?: string[] };
    expect(claims.realm_access?.roles).toEqual(expect.arrayContaining(['ldap-manager', `default-roles-${realm}`, 'offline_access']));
    expect(claims.realm_access?.roles).not.toContain('ldap-viewer');
    expect(claims.groups).toEqual(['/ldap/engineers']);
    // The role mapper creates the LDAP role in the realm, as Keycloak does.
    expect(await bench.admin.roles.findOneByName({ realm, name: 'ldap-manager' })).toMatchObject({ name: 'ldap-manager' });
  });

  it('refreshes attributes, groups and roles at the next login and keeps memberships given locally', async () => {
    const alice = (await findUser('alice'))!;
    // Local memberships: a group outside the mapper's path, one inside it that LDAP does not have, a local role.
    const { id: localTeam } = await bench.admin.groups.create({ realm, name: 'local-team' });
    const [ldapParent] = await bench.admin.groups.find({ realm, search: 'ldap' });
    const { id: manual } = await bench.admin.groups.createChildGroup({ realm, id: ldapParent!.id! }, { name: 'manual' });
    await bench.admin.users.addToGroup({ realm, id: alice.id!, groupId: localTeam });
    await bench.admin.users.addToGroup({ realm, id: alice.id!, groupId: manual });
    await bench.admin.roles.create({ realm, name: 'auditor' });
    const auditor = await bench.admin.roles.findOneByName({ realm, name: 'auditor' });
    await bench.admin.users.addRealmRoleMappings({ realm, id: alice.id!, roles: [{ id: auditor!.id!, name: 'auditor' }] });

    await slapd.modify([ldifLine('dn', personDn('alice')), 'changetype: modify', 'replace: mail', 'mail: alice.new@example.org'].join('\n'));
    await slapd.modify([ldifLine('dn', groupDn('engineers')), 'changetype: modify', 'delete: member', ldifLine('member', personDn('alice'))].join('\n'));
    await slapd.modify([ldifLine('dn', groupDn('admins')), 'changetype: modify', 'add: member', ldifLine('member', personDn('alice'))].join('\n'));
    // Its last member: groupOfNames keeps Keycloak's placeholder member.
    await slapd.modify([ldifLine('dn', groupDn('ldap-manager', 'roles')), 'changetype: modify', 'replace: member', ldifLine('member', EMPTY_MEMBER)].join('\n'));

    const { status, body } = await grant('alice', 'Alice-Ldap-1');
    expect(status).toBe(200);
    expect((await findUser('alice'))!.email).toBe('alice.new@example.org');
    const claims = decodeJwt(body.access_token!) as { realm_access?: { roles: string[] }; groups?: string[] };
    expect([...claims.groups!].sort()).toEqual(['/ldap/admins', '/ldap/manual', '/local-team']);
    expect(claims.realm_access?.roles).toContain('auditor');
    expect(claims.realm_access?.roles).not.toContain('ldap-manager');
    expect(claims.realm_access?.roles).toContain(`default-roles-${realm}`);
  });

  it('counts wrong LDAP passwords like local ones and locks after failureFactor', async () => {
    const wrong = await grant('carol', 'not-her-password');
    expect(wrong).toEqual({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    // Imported at the lookup, before the password check (Keycloak's order): failures are counted on it.
    const carol = (await findUser('carol'))!;
    expect(carol.federationLink).toBe(providerId);
    expect(await bench.admin.attackDetection.findOne({ realm, id: carol.id! })).toMatchObject({ numFailures: 1, disabled: false });
    await grant('carol', 'still-wrong');
    await grant('carol', 'wrong-again');
    expect(await bench.admin.attackDetection.findOne({ realm, id: carol.id! })).toMatchObject({ numFailures: 3, disabled: true });
    // Locked: the right password gets the wrong-password answer.
    expect(await grant('carol', 'Carol-Ldap-1')).toMatchObject({ status: 401, body: { error_description: 'Invalid user credentials' } });
    const event = await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.user_id === carol.id && e.error === 'invalid_user_credentials');
    expect(event).toBeDefined();
  });

  it('checks every login against LDAP: a password changed there replaces the old one at once', async () => {
    expect((await grant('dave', 'Dave-Ldap-1')).status).toBe(200);
    await setLdapPassword('dave', 'Dave-Ldap-2');
    expect(await grant('dave', 'Dave-Ldap-1')).toMatchObject({ status: 401, body: { error: 'invalid_grant' } });
    expect((await grant('dave', 'Dave-Ldap-2')).status).toBe(200);
    const dave = (await findUser('dave'))!;
    expect(await bench.admin.users.getCredentials({ realm, id: dave.id! })).toEqual([]);
  });

  it('finds a user by e-mail when the realm allows e-mail logins', async () => {
    const { status } = await grant('erin.mail@example.org', 'Erin-Ldap-1');
    expect(status).toBe(200);
    expect(await findUser('erin')).toMatchObject({ username: 'erin', email: 'erin.mail@example.org', federationLink: providerId });
  });

  it('never takes over a local user with the same username', async () => {
    // The local user's password works, the LDAP entry's does not.
    expect((await grant('taken', 'Local-Taken-1')).status).toBe(200);
    expect((await grant('taken', 'Taken-Ldap-1')).status).toBe(401);
    expect((await findUser('taken'))!.federationLink).toBeUndefined();
  });

  it('answers LDAP injection attempts like unknown users and imports nobody', async () => {
    const count = await bench.admin.users.count({ realm });
    for (const username of ['*', ')(uid=*', 'admin)(|(uid=*', '*)(|(objectClass=*', 'alice\u0000', 'al\u0000*', 'a*']) {
      const answer = await grant(username, 'Alice-Ldap-1');
      expect(answer, username).toEqual({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    }
    expect(await bench.admin.users.count({ realm })).toBe(count);
  });

  it('shows the LDAP user the login pages and lets them in', async () => {
    const { redirect } = await browserlessLogin(authUrl(realm), 'bob', 'Bob-Ldap-1', REDIRECT);
    expect(new URL(redirect).searchParams.get('code')).toBeTruthy();
  });

  function authUrl(realmName: string): string {
    const verifier = crypto.randomBytes(32).toString('base64url');
    const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
    const params = new URLSearchParams({
      client_id: CLIENT, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', state: crypto.randomUUID(),
      code_challenge: challenge, code_challenge_method: 'S256',
    });
    return `${bench.server.url}/realms/${realmName}/protocol/openid-connect/auth?${params}`;
  }

  /** The login pages up to the password answer (status and HTML). */
  async function passwordPage(username: string, password: string): Promise<{ status: number; html: string }> {
    const jar = new CookieJar();
    const url = authUrl(realm);
    const { response, url: pageUrl } = await follow(await get(url, jar), jar, (u) => u.startsWith(REDIRECT));
    let html = await response.text();
    let form = parseForm(html, pageUrl);
    if (form.action.endsWith('/username')) {
      html = await (await post(form.action, { ...form.hidden, username }, jar)).text();
      form = parseForm(html, pageUrl);
    }
    const answer = await post(form.action, { ...form.hidden, username, password }, jar);
    return { status: answer.status, html: await answer.text() };
  }

  describe('with the directory down', () => {
    beforeAll(async () => {
      await slapd.stop();
    });

    it('local users still log in', async () => {
      expect((await grant('localuser', 'Local-Password-1')).status).toBe(200);
      expect(await grant('localuser', 'wrong')).toMatchObject({ status: 401, body: { error: 'invalid_grant' } });
    });

    it('LDAP users get 503 temporarily_unavailable and a LOGIN_ERROR event', async () => {
      const answer = await grant('alice', 'Alice-Ldap-1');
      expect(answer).toEqual({ status: 503, body: { error: 'temporarily_unavailable', error_description: 'Cannot reach the user directory' } });
      // A name unknown here may be in the directory: the same answer.
      expect(await grant('frank', 'Frank-Ldap-1')).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
      const alice = (await findUser('alice'))!;
      const event = await waitForEvent((e) => e.type === 'LOGIN_ERROR' && e.error === 'ldap_unavailable' && e.user_id === alice.id);
      expect(event?.details).toMatchObject({ username: 'alice', grant_type: 'password' });
      // Not a wrong password: nothing counted.
      expect(await bench.admin.attackDetection.findOne({ realm, id: alice.id! })).toMatchObject({ numFailures: 0 });
    });

    it('the login page says the directory cannot be reached', async () => {
      const { status, html } = await passwordPage('alice', 'Alice-Ldap-1');
      expect(status).toBe(503);
      expect(html).toContain('Cannot reach the user directory. Try again later.');
    });

    it('service returns by itself when the directory is back', async () => {
      await slapd.start();
      expect((await grant('alice', 'Alice-Ldap-1')).status).toBe(200);
      expect((await grant('frank', 'Frank-Ldap-1')).status).toBe(200);
    });
  });

  describe('other mappers', () => {
    const mapRealm = `map-${crypto.randomBytes(4).toString('hex')}`;
    const TEAMS_DN = 'ou=teams,dc=example,dc=org';
    const POSIX_DN = 'ou=posix,dc=example,dc=org';

    beforeAll(async () => {
      await slapd.add([
        ouLdif('teams'),
        ouLdif('posix'),
        personLdif({ uid: 'grace', cn: 'Grace Brewster Hopper', sn: 'Hopper', mail: 'grace@example.org', password: 'Grace-Ldap-1' }),
        personLdif({ uid: 'henry', cn: 'Henry', sn: 'Ford', password: 'Henry-Ldap-1' }),
        groupLdif({ cn: 'team-a', members: [personDn('grace')], ou: 'teams' }),
        groupLdif({ cn: 'dept', members: [groupDn('team-a', 'teams')], ou: 'teams' }),
        [ldifLine('dn', `cn=posix-devs,${POSIX_DN}`), 'objectClass: top', 'objectClass: posixGroup', 'cn: posix-devs', 'gidNumber: 5000', 'memberUid: grace'].join('\n'),
      ]);
      const id = await createRealm(mapRealm);
      // Full name from cn: Keycloak's default mappers for an RDN of cn (full-name-ldap-mapper).
      const provider = await createProvider(mapRealm, id, slapd, { rdnLDAPAttribute: ['cn'] });
      await bench.admin.roles.create({ realm: mapRealm, name: 'hard-role' });
      await bench.admin.groups.create({ realm: mapRealm, name: 'hard-group' });
      const mapper = (name: string, providerId: string, config: Record<string, string[]>) =>
        bench.admin.components.create({ realm: mapRealm, name, providerId, providerType: LDAP_MAPPER, parentId: provider, config });
      await mapper('teams', 'group-ldap-mapper', {
        'groups.dn': [TEAMS_DN], 'group.name.ldap.attribute': ['cn'], 'group.object.classes': ['groupOfNames'],
        'preserve.group.inheritance': ['true'], 'membership.ldap.attribute': ['member'], 'membership.attribute.type': ['DN'],
        mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['GET_GROUPS_FROM_USER_MEMBEROF_ATTRIBUTE'], 'memberof.ldap.attribute': ['memberOf'],
        'groups.path': ['/'],
      });
      await mapper('posix roles', 'role-ldap-mapper', {
        'roles.dn': [POSIX_DN], 'role.name.ldap.attribute': ['cn'], 'role.object.classes': ['posixGroup'],
        'membership.ldap.attribute': ['memberUid'], 'membership.attribute.type': ['UID'], 'membership.user.ldap.attribute': ['uid'],
        mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['LOAD_ROLES_BY_MEMBER_ATTRIBUTE'],
        'use.realm.roles.mapping': ['false'], 'client.id': [CLIENT],
      });
      await mapper('hard role', 'hardcoded-ldap-role-mapper', { role: ['hard-role'] });
      await mapper('hard group', 'hardcoded-ldap-group-mapper', { group: ['/hard-group'] });
    });

    it('maps full names, nested groups by memberOf, UID memberships to client roles and hardcoded ones', async () => {
      const { status, body } = await grant('grace', 'Grace-Ldap-1', mapRealm);
      expect(status).toBe(200);
      expect(await findUser('grace', mapRealm)).toMatchObject({ firstName: 'Grace Brewster', lastName: 'Hopper', email: 'grace@example.org' });
      const claims = decodeJwt(body.access_token!) as { realm_access?: { roles: string[] }; resource_access?: Record<string, { roles: string[] }>; groups?: string[] };
      // preserve.group.inheritance: team-a sits under dept, as in LDAP.
      expect([...claims.groups!].sort()).toEqual(['/dept/team-a', '/hard-group']);
      expect(claims.resource_access?.[CLIENT]?.roles).toEqual(['posix-devs']);
      expect(claims.realm_access?.roles).toContain('hard-role');
    });

    it('removes the local user of an entry deleted from LDAP at its next login', async () => {
      expect((await grant('henry', 'Henry-Ldap-1', mapRealm)).status).toBe(200);
      expect(await findUser('henry', mapRealm)).toBeDefined();
      await slapd.delete(personDn('henry'));
      expect(await grant('henry', 'Henry-Ldap-1', mapRealm)).toMatchObject({ status: 401, body: { error: 'invalid_grant' } });
      expect(await findUser('henry', mapRealm)).toBeUndefined();
    });
  });

  describe('Active Directory shaped entries', () => {
    const adRealm = `ad-${crypto.randomBytes(4).toString('hex')}`;
    const guid = Buffer.from([0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    const adPerson = (uid: string, sam: string, password: string, attributes: Record<string, string | number | Buffer>): string => personLdif({
      uid, cn: `${sam} Person`, sn: 'Person', mail: `${sam}@ad.example.org`, password, objectClasses: ['cloakroomAdUser'],
      attributes: { sAMAccountName: sam, userPrincipalName: `${sam}@ad.example.org`, objectGUID: crypto.randomBytes(16), ...attributes },
    });

    beforeAll(async () => {
      await adSlapd.add([
        adPerson('u1', 'AdUser', 'Ad-Password-1', { objectGUID: guid, userAccountControl: 512, pwdLastSet: '133000000000000000' }),
        adPerson('u2', 'Disabled', 'Ad-Password-2', { userAccountControl: 514, pwdLastSet: '133000000000000000' }),
        adPerson('u3', 'MustChange', 'Ad-Password-3', { userAccountControl: 512, pwdLastSet: 0 }),
      ]);
      const id = await createRealm(adRealm);
      await createProvider(adRealm, id, adSlapd, {
        vendor: ['ad'], usernameLDAPAttribute: ['sAMAccountName'], rdnLDAPAttribute: ['uid'], uuidLDAPAttribute: ['objectGUID'],
        userObjectClasses: ['inetOrgPerson, cloakroomAdUser'], editMode: ['WRITABLE'],
      });
    });

    it('logs in by sAMAccountName and stores objectGUID in Keycloak\'s UUID form', async () => {
      expect((await grant('aduser', 'Ad-Password-1', adRealm)).status).toBe(200);
      const user = (await findUser('aduser', adRealm))!;
      // The first three GUID fields are little-endian.
      expect(user.attributes?.LDAP_ID).toEqual(['76543210-ba98-fedc-0123-456789abcdef']);
      expect(user).toMatchObject({ username: 'aduser', enabled: true, requiredActions: [] });
    });

    it('refuses a disabled account (userAccountControl 514), telling so only with the right password', async () => {
      expect(await grant('disabled', 'wrong-password', adRealm)).toEqual({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
      expect(await grant('disabled', 'Ad-Password-2', adRealm)).toEqual({ status: 400, body: { error: 'invalid_grant', error_description: 'Account disabled' } });
      expect((await findUser('disabled', adRealm))!.enabled).toBe(false);
    });

    it('asks for a new password when pwdLastSet is 0', async () => {
      expect(await grant('mustchange', 'Ad-Password-3', adRealm)).toEqual({ status: 400, body: { error: 'invalid_grant', error_description: 'Account is not fully set up' } });
      expect((await findUser('mustchange', adRealm))!.requiredActions).toContain('UPDATE_PASSWORD');
    });
  });
});
