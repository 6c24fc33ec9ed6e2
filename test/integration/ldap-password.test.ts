// Password changes of LDAP-federated users against a real slapd, per Keycloak's edit modes:
// READ_ONLY refuses (admin reset-password, the update-password page) and writes nothing anywhere;
// WRITABLE writes to LDAP (userPassword replace, or the RFC 3062 Password Modify extended
// operation, or AD's unicodePwd over StartTLS with pwdLastSet/userAccountControl updated by the
// msad mapper) and never stores a local hash; UNSYNCED stores a local hash that then decides the
// user's logins while LDAP is left alone. Realms, providers and users are set up with the official
// admin client; logins go through the password grant and the hosted pages (fetch, no browser).
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { CookieJar, decodeEntities, follow, get, parseForm, post } from '../support/browserless.ts';
import { postForm } from '../support/server.ts';
import { personDn, personLdif, slapdAvailable, startSlapd, type Slapd } from '../support/slapd.ts';

const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const CLIENT = 'app';
const REDIRECT = 'http://localhost:8080/callback';

type Grant = { status: number; body: { access_token?: string; error?: string; error_description?: string } };
type Step = { url: string; html: string; status: number; form: { action: string; hidden: Record<string, string> } };

describe.skipIf(!slapdAvailable('ldap password'))('password changes of LDAP users', () => {
  let bench: AdminBench;
  let slapd: Slapd;
  let adSlapd: Slapd;
  const suffix = crypto.randomBytes(4).toString('hex');
  const realms = {
    readOnly: `ro-${suffix}`, writable: `rw-${suffix}`, extendedOp: `rwx-${suffix}`, unsynced: `un-${suffix}`,
    refused: `refused-${suffix}`, ad: `ad-${suffix}`, adPlain: `adplain-${suffix}`,
  };

  const grant = async (realm: string, username: string, password: string): Promise<Grant> => {
    const res = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, {
      grant_type: 'password', client_id: CLIENT, username, password, scope: 'openid',
    });
    return { status: res.status, body: await res.json() as Grant['body'] };
  };

  const findUser = async (realm: string, username: string) => (await bench.admin.users.find({ realm, username, exact: true }))[0];

  /** PUT reset-password through the raw API: the exact status and body. */
  async function resetPassword(realm: string, userId: string, value: string, temporary = false): Promise<{ status: number; body: unknown }> {
    const res = await bench.api(`/${realm}/users/${userId}/reset-password`, { method: 'PUT', body: JSON.stringify({ type: 'password', value, temporary }) });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  }

  /** Imports an LDAP user with a password grant (its LDAP password) and returns its id. */
  async function importUser(realm: string, username: string, password: string, expectedStatus = 200): Promise<string> {
    expect((await grant(realm, username, password)).status).toBe(expectedStatus);
    return (await findUser(realm, username))!.id!;
  }

  const person = (uid: string, password: string): string => personLdif({ uid, cn: uid, sn: 'Tester', mail: `${uid}@example.org`, password });

  async function createRealm(realm: string, extra: Record<string, unknown> = {}): Promise<string> {
    await bench.admin.realms.create({ realm, enabled: true, eventsEnabled: true, ...extra });
    await bench.admin.clients.create({
      realm, clientId: CLIENT, publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: true, redirectUris: [REDIRECT],
    });
    return (await bench.admin.realms.findOne({ realm }))!.id!;
  }

  /** The Keycloak admin console's create call for an LDAP provider (the default mappers come with it). */
  async function createProvider(realm: string, directory: Slapd, config: Record<string, string[]>): Promise<string> {
    const realmId = (await bench.admin.realms.findOne({ realm }))!.id!;
    const { id } = await bench.admin.components.create({
      realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId,
      config: {
        vendor: ['other'], connectionUrl: [directory.url], usersDn: [directory.peopleDn], bindDn: [directory.adminDn],
        bindCredential: [directory.adminPassword], usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'],
        uuidLDAPAttribute: ['entryUUID'], userObjectClasses: ['inetOrgPerson, organizationalPerson'], searchScope: ['1'],
        enabled: ['true'], priority: ['0'], ...config,
      },
    });
    return id;
  }

  const userPassword = async (uid: string): Promise<string | undefined> => {
    const [entry] = await slapd.search(`(uid=${uid})`, ['userPassword'], { explicitBufferAttributes: ['userPassword'] });
    const value = entry?.userPassword;
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined ? undefined : Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  };

  function authUrl(realm: string): string {
    const verifier = crypto.randomBytes(32).toString('base64url');
    const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
    const params = new URLSearchParams({
      client_id: CLIENT, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', state: crypto.randomUUID(),
      code_challenge: challenge, code_challenge_method: 'S256',
    });
    return `${bench.server.url}/realms/${realm}/protocol/openid-connect/auth?${params}`;
  }

  async function submit(action: string, form: Record<string, string>, jar: CookieJar): Promise<Step | { redirect: string }> {
    const response = await post(action, form, jar);
    const { response: last, url } = await follow(response, jar, (u) => u.startsWith(REDIRECT));
    if (url.startsWith(REDIRECT)) return { redirect: url };
    const html = await last.text();
    return { url, html, status: last.status, form: parseForm(html, action) };
  }

  /** The hosted login up to the first page after the password (or the redirect to the client). */
  async function signIn(realm: string, username: string, password: string): Promise<{ jar: CookieJar; step: Step | { redirect: string } }> {
    const jar = new CookieJar();
    const { response, url } = await follow(await get(authUrl(realm), jar), jar, (u) => u.startsWith(REDIRECT));
    let form = parseForm(await response.text(), url);
    if (form.action.endsWith('/username')) form = parseForm(await (await post(form.action, { ...form.hidden, username }, jar)).text(), url);
    return { jar, step: await submit(form.action, { ...form.hidden, username, password }, jar) };
  }

  const page = (step: Step | { redirect: string }): Step => {
    if ('redirect' in step) throw new Error(`expected a page, got the redirect ${step.redirect}`);
    return step;
  };

  async function waitForEvent(realm: string, match: (e: { type: string; error: string | null; user_id: string | null; details: Record<string, unknown> }) => boolean) {
    const realmId = (await bench.admin.realms.findOne({ realm }))!.id!;
    for (let i = 0; i < 40; i++) {
      const rows = await bench.server.store.db.selectFrom('events').select(['type', 'error', 'user_id', 'details']).where('realm_id', '=', realmId).execute();
      const found = rows.map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> })).find(match);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  beforeAll(async () => {
    [slapd, adSlapd, bench] = await Promise.all([startSlapd({ tls: false }), startSlapd({ tls: true, adSchema: true }), startAdminBench()]);
    await slapd.add([
      person('rita', 'Rita-Ldap-1'), person('walt', 'Walt-Ldap-1'), person('wendy', 'Wendy-Ldap-1'), person('xena', 'Xena-Ldap-1'),
      person('una', 'Una-Ldap-1'), person('rory', 'Rory-Ldap-1'), person('reader', 'Reader-Ldap-1'),
    ]);
    await createRealm(realms.readOnly);
    await createProvider(realms.readOnly, slapd, { editMode: ['READ_ONLY'] });
    await createRealm(realms.writable, { passwordPolicy: 'length(8) and passwordHistory(3)' });
    await createProvider(realms.writable, slapd, { editMode: ['WRITABLE'], usePasswordModifyExtendedOp: ['false'] });
    await createRealm(realms.extendedOp);
    await createProvider(realms.extendedOp, slapd, { editMode: ['WRITABLE'], usePasswordModifyExtendedOp: ['true'] });
    await createRealm(realms.unsynced);
    await createProvider(realms.unsynced, slapd, { editMode: ['UNSYNCED'] });
    // A service account that may read entries but not write passwords (slapd's ACL: only self writes userPassword).
    await createRealm(realms.refused);
    await createProvider(realms.refused, slapd, { editMode: ['WRITABLE'], bindDn: [personDn('reader')], bindCredential: ['Reader-Ldap-1'] });
  }, 60_000);

  afterAll(async () => {
    await bench?.stop();
    await slapd?.destroy();
    await adSlapd?.destroy();
  });

  describe('READ_ONLY', () => {
    it('admin reset-password answers Keycloak\'s refusal and changes nothing', async () => {
      const id = await importUser(realms.readOnly, 'rita', 'Rita-Ldap-1');
      for (const temporary of [false, true]) {
        expect(await resetPassword(realms.readOnly, id, 'Rita-New-2', temporary)).toEqual({
          status: 400,
          body: { error: "Can't reset password as account is read only", error_description: "Can't reset password as account is read only" },
        });
      }
      expect(await slapd.checkBind(personDn('rita'), 'Rita-Ldap-1')).toBe(true);
      expect(await slapd.checkBind(personDn('rita'), 'Rita-New-2')).toBe(false);
      expect(await bench.admin.users.getCredentials({ realm: realms.readOnly, id })).toEqual([]);
      expect((await findUser(realms.readOnly, 'rita'))!.requiredActions).toEqual([]);
      expect((await grant(realms.readOnly, 'rita', 'Rita-Ldap-1')).status).toBe(200);
    });

    it('the update-password page says the account is read-only and stores no local password', async () => {
      const id = (await findUser(realms.readOnly, 'rita'))!.id!;
      await bench.admin.users.update({ realm: realms.readOnly, id }, { requiredActions: ['UPDATE_PASSWORD'] });
      const { jar, step } = await signIn(realms.readOnly, 'rita', 'Rita-Ldap-1');
      const form = page(step);
      expect(form.html).toContain('password-new');
      const refused = page(await submit(form.form.action, { ...form.form.hidden, 'password-new': 'Rita-New-3', 'password-confirm': 'Rita-New-3' }, jar));
      expect(refused.status).toBe(400);
      expect(decodeEntities(refused.html)).toContain("You can't update your password as your account is read-only.");
      expect(await bench.admin.users.getCredentials({ realm: realms.readOnly, id })).toEqual([]);
      expect(await slapd.checkBind(personDn('rita'), 'Rita-Ldap-1')).toBe(true);
      expect((await findUser(realms.readOnly, 'rita'))!.requiredActions).toEqual(['UPDATE_PASSWORD']);
      const event = await waitForEvent(realms.readOnly, (e) => e.type === 'UPDATE_PASSWORD_ERROR' && e.user_id === id);
      expect(event).toMatchObject({ error: 'password_rejected', details: { reason: 'Federated storage is not writable' } });
    });
  });

  describe('WRITABLE (OpenLDAP)', () => {
    it('admin reset-password replaces userPassword in LDAP and stores no local hash', async () => {
      const id = await importUser(realms.writable, 'walt', 'Walt-Ldap-1');
      expect(await resetPassword(realms.writable, id, 'Walt-New-22')).toEqual({ status: 204, body: undefined });
      expect(await slapd.checkBind(personDn('walt'), 'Walt-New-22')).toBe(true);
      expect(await slapd.checkBind(personDn('walt'), 'Walt-Ldap-1')).toBe(false);
      // A plain replace: slapd keeps what it was given (no {SSHA} of its own).
      expect(await userPassword('walt')).toBe('Walt-New-22');
      expect(await bench.admin.users.getCredentials({ realm: realms.writable, id })).toEqual([]);
      expect((await grant(realms.writable, 'walt', 'Walt-New-22')).status).toBe(200);
      expect((await grant(realms.writable, 'walt', 'Walt-Ldap-1')).status).toBe(401);
    });

    it('checks the realm\'s rules first, except the history rules that cannot see LDAP\'s history', async () => {
      const id = (await findUser(realms.writable, 'walt'))!.id!;
      expect(await resetPassword(realms.writable, id, 'short')).toEqual({
        status: 400, body: { error: 'invalidPasswordMinLengthMessage', error_description: 'Invalid password: minimum length 8.' },
      });
      expect(await slapd.checkBind(personDn('walt'), 'Walt-New-22')).toBe(true);
      // passwordHistory(3) would refuse the current password of a local user.
      expect((await resetPassword(realms.writable, id, 'Walt-New-22')).status).toBe(204);
      expect(await slapd.checkBind(personDn('walt'), 'Walt-New-22')).toBe(true);
    });

    it('a temporary reset asks for a new password at login; the update-password page writes it to LDAP', async () => {
      const id = await importUser(realms.writable, 'wendy', 'Wendy-Ldap-1');
      expect((await resetPassword(realms.writable, id, 'Wendy-Temp-2', true)).status).toBe(204);
      expect(await slapd.checkBind(personDn('wendy'), 'Wendy-Temp-2')).toBe(true);
      expect((await findUser(realms.writable, 'wendy'))!.requiredActions).toEqual(['UPDATE_PASSWORD']);

      const { jar, step } = await signIn(realms.writable, 'wendy', 'Wendy-Temp-2');
      const form = page(step);
      const tooShort = page(await submit(form.form.action, { ...form.form.hidden, 'password-new': 'short', 'password-confirm': 'short' }, jar));
      expect(tooShort.status).toBe(400);
      expect(tooShort.html).toContain('Invalid password: minimum length 8.');
      const done = await submit(tooShort.form.action, { ...tooShort.form.hidden, 'password-new': 'Wendy-Own-3', 'password-confirm': 'Wendy-Own-3' }, jar);
      expect('redirect' in done && new URL(done.redirect).searchParams.get('code')).toBeTruthy();

      expect(await slapd.checkBind(personDn('wendy'), 'Wendy-Own-3')).toBe(true);
      expect(await slapd.checkBind(personDn('wendy'), 'Wendy-Temp-2')).toBe(false);
      expect((await findUser(realms.writable, 'wendy'))!.requiredActions).toEqual([]);
      expect(await bench.admin.users.getCredentials({ realm: realms.writable, id })).toEqual([]);
      expect((await grant(realms.writable, 'wendy', 'Wendy-Own-3')).status).toBe(200);
    });

    it('with usePasswordModifyExtendedOp the Password Modify extended operation sets it (slapd hashes it)', async () => {
      const id = await importUser(realms.extendedOp, 'xena', 'Xena-Ldap-1');
      expect((await resetPassword(realms.extendedOp, id, 'Xena-New-2')).status).toBe(204);
      expect(await slapd.checkBind(personDn('xena'), 'Xena-New-2')).toBe(true);
      expect(await slapd.checkBind(personDn('xena'), 'Xena-Ldap-1')).toBe(false);
      expect(await userPassword('xena')).toMatch(/^\{SSHA\}/);
      expect(await bench.admin.users.getCredentials({ realm: realms.extendedOp, id })).toEqual([]);
      expect((await grant(realms.extendedOp, 'xena', 'Xena-New-2')).status).toBe(200);
    });

    it('a refusal of the directory is a 400 with its reason, and nothing changes', async () => {
      const id = await importUser(realms.refused, 'rory', 'Rory-Ldap-1');
      const answer = await resetPassword(realms.refused, id, 'Rory-New-2');
      expect(answer).toMatchObject({ status: 400, body: { error: `Could not modify attribute for DN [${personDn('rory')}]` } });
      expect((answer.body as { error_description: string }).error_description).toMatch(/^the LDAP directory refused the new password: .+ \(LDAP result 50\)$/);
      expect(await slapd.checkBind(personDn('rory'), 'Rory-Ldap-1')).toBe(true);
      expect(await bench.admin.users.getCredentials({ realm: realms.refused, id })).toEqual([]);
    });
  });

  describe('UNSYNCED', () => {
    it('stores a local password that then decides the logins, and leaves LDAP alone', async () => {
      const id = await importUser(realms.unsynced, 'una', 'Una-Ldap-1');
      expect((await resetPassword(realms.unsynced, id, 'Una-Local-2')).status).toBe(204);
      expect(await bench.admin.users.getCredentials({ realm: realms.unsynced, id })).toMatchObject([{ type: 'password' }]);
      expect(await slapd.checkBind(personDn('una'), 'Una-Ldap-1')).toBe(true);
      expect(await slapd.checkBind(personDn('una'), 'Una-Local-2')).toBe(false);
      expect((await grant(realms.unsynced, 'una', 'Una-Local-2')).status).toBe(200);
      // Keycloak's isValid: with a password configured locally, LDAP's is not asked.
      expect((await grant(realms.unsynced, 'una', 'Una-Ldap-1')).status).toBe(401);
    });
  });

  describe('Active Directory (vendor ad, msad mapper)', () => {
    const adPerson = (uid: string, sam: string, password: string, attributes: Record<string, string | number | Buffer>): string => personLdif({
      uid, cn: `${sam} Person`, sn: 'Person', mail: `${sam}@ad.example.org`, password, objectClasses: ['cloakroomAdUser'],
      attributes: { sAMAccountName: sam, userPrincipalName: `${sam}@ad.example.org`, objectGUID: crypto.randomBytes(16), ...attributes },
    });
    const adConfig = (directory: Slapd): Record<string, string[]> => ({
      vendor: ['ad'], editMode: ['WRITABLE'], usernameLDAPAttribute: ['sAMAccountName'], rdnLDAPAttribute: ['uid'], uuidLDAPAttribute: ['objectGUID'],
      userObjectClasses: ['inetOrgPerson, cloakroomAdUser'], bindDn: [directory.adminDn], bindCredential: [directory.adminPassword],
    });
    const adEntry = async (uid: string) => {
      const [entry] = await adSlapd.search(`(uid=${uid})`, ['unicodePwd', 'pwdLastSet', 'userAccountControl'], { explicitBufferAttributes: ['unicodePwd'] });
      return entry!;
    };
    // NORMAL_ACCOUNT | PASSWD_NOTREQD | PASSWORD_EXPIRED
    const control = 512 | 0x20 | 0x800000;

    beforeAll(async () => {
      await adSlapd.add([
        adPerson('adam', 'Adam', 'Adam-Ad-1', { userAccountControl: control, pwdLastSet: 0 }),
        adPerson('plain', 'Plain', 'Plain-Ad-1', { userAccountControl: 512, pwdLastSet: '133000000000000000' }),
      ]);
      await createRealm(realms.ad);
      await createProvider(realms.ad, adSlapd, { ...adConfig(adSlapd), startTls: ['true'], 'cloakroom.tlsCaBundle': [adSlapd.caPem] });
      await createRealm(realms.adPlain);
      await createProvider(realms.adPlain, adSlapd, adConfig(adSlapd));
    });

    it('writes unicodePwd as the quoted UTF-16LE password over StartTLS and clears "must change"', async () => {
      // pwdLastSet 0: imported with UPDATE_PASSWORD required.
      const id = await importUser(realms.ad, 'adam', 'Adam-Ad-1', 400);
      expect((await findUser(realms.ad, 'adam'))!.requiredActions).toContain('UPDATE_PASSWORD');

      expect((await resetPassword(realms.ad, id, 'Ädam-Nëw-2')).status).toBe(204);
      const entry = await adEntry('adam');
      expect(entry.unicodePwd).toEqual(Buffer.from('"Ädam-Nëw-2"', 'utf16le'));
      expect(entry.pwdLastSet).toBe('-1');
      expect(entry.userAccountControl).toBe('512');
      expect((await findUser(realms.ad, 'adam'))!.requiredActions).toEqual([]);
      expect(await bench.admin.users.getCredentials({ realm: realms.ad, id })).toEqual([]);
    });

    it('a temporary reset sets pwdLastSet 0 (must change at the next login)', async () => {
      const id = (await findUser(realms.ad, 'adam'))!.id!;
      expect((await resetPassword(realms.ad, id, 'Adam-Temp-3', true)).status).toBe(204);
      const entry = await adEntry('adam');
      expect(entry.unicodePwd).toEqual(Buffer.from('"Adam-Temp-3"', 'utf16le'));
      expect(entry.pwdLastSet).toBe('0');
      expect((await findUser(realms.ad, 'adam'))!.requiredActions).toEqual(['UPDATE_PASSWORD']);
    });

    it('refuses to send a password to AD over a connection without TLS, as AD would', async () => {
      const id = await importUser(realms.adPlain, 'plain', 'Plain-Ad-1');
      const answer = await resetPassword(realms.adPlain, id, 'Plain-New-2');
      expect(answer).toMatchObject({ status: 400, body: { error: `Could not modify attribute for DN [${personDn('plain')}]` } });
      expect((answer.body as { error_description: string }).error_description).toContain('needs an ldaps:// URL or StartTLS');
      const entry = await adEntry('plain');
      expect(entry.unicodePwd).toEqual([]); // ldapts lists a requested attribute the entry lacks as []
      expect(entry.pwdLastSet).toBe('133000000000000000');
    });
  });

  describe('with the directory down', () => {
    beforeAll(async () => {
      await slapd.stop();
    });
    afterAll(async () => {
      await slapd.start();
    });

    it('admin reset-password of a WRITABLE user answers 503 and stores nothing', async () => {
      const id = (await findUser(realms.writable, 'walt'))!.id!;
      const answer = await resetPassword(realms.writable, id, 'Walt-Down-9');
      expect(answer).toMatchObject({ status: 503, body: { error: 'ldap_unavailable' } });
      expect(await bench.admin.users.getCredentials({ realm: realms.writable, id })).toEqual([]);
    });
  });
});
