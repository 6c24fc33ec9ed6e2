// Realm e-mail through the real server: Keycloak's testSMTPConnection (official admin client and
// raw calls) delivering to an in-process SMTP server, its failure answers, the SMTP password
// sealed at rest, masked on reads, kept when the mask is sent back, opened or masked in exports,
// and Mailer.send reading the realm's stored settings.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Mailer } from '../../src/mail/mailer.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { exportRealm } from '../../src/realms/export.ts';
import { SECRET_MASK } from '../../src/store/sealed-config.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { startMailServer, type MailServer } from '../support/mail.ts';

const SMTP_USER = 'realm-mailer';
const SMTP_PASSWORD = 'smtp-Pa55-never-in-clear';
const ADMIN_EMAIL = 'root@cloakroom.test';
const REALM = 'mail';

let bench: AdminBench;
let mail: MailServer;

beforeAll(async () => {
  [bench, mail] = await Promise.all([startAdminBench(), startMailServer({ credentials: { user: SMTP_USER, password: SMTP_PASSWORD } })]);
  const [root] = await bench.admin.users.find({ realm: 'master', username: bench.adminUsername, exact: true });
  await bench.admin.users.update({ realm: 'master', id: root!.id! }, { ...root, email: ADMIN_EMAIL });
  await bench.admin.realms.create({
    realm: REALM, displayName: 'Mail Realm', enabled: true,
    smtpServer: mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD }),
  });
}, 60_000);
afterAll(async () => {
  await bench?.stop();
  await mail?.stop();
});

type Answer = { status: number; body: any };
async function testConnection(settings: unknown, token?: string, realm = REALM): Promise<Answer> {
  const response = await bench.api(`/${realm}/testSMTPConnection`, { method: 'POST', body: JSON.stringify(settings), ...(token ? { token } : {}) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

const storedSettings = async (realm = REALM): Promise<string> =>
  JSON.stringify((await bench.server.store.db.selectFrom('realms').select('settings').where('name', '=', realm).executeTakeFirstOrThrow()).settings);

const FAILED = { status: 500, body: { errorMessage: 'Failed to send email' } };

describe('testSMTPConnection', () => {
  it('sends the test message to the calling admin with the posted settings (official admin client)', async () => {
    const before = mail.messages.length;
    await bench.admin.realms.testSMTPConnection({ realm: REALM }, mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD, fromDisplayName: 'Mail Desk' }));
    const received = await mail.waitFor((m) => m.to.includes(ADMIN_EMAIL));
    expect(mail.messages.length).toBe(before + 1);
    expect(received.subject).toBe('[Mail Realm] - SMTP test message');
    expect(received.from).toBe('"Mail Desk" <noreply@cloakroom.test>');
    expect(received.text).toContain('This is a test message');
    expect(received.html).toContain('<p>This is a test message</p>');
    expect(received.authUser).toBe(SMTP_USER);
  });

  it('uses the stored password for the mask when host, port and user are the stored ones, as Keycloak does', async () => {
    const rep = await bench.admin.realms.findOne({ realm: REALM });
    expect(rep!.smtpServer!.password).toBe(SECRET_MASK);
    const logins = mail.logins.length;
    expect(await testConnection(rep!.smtpServer)).toEqual({ status: 204, body: undefined });
    expect(mail.logins.slice(logins)).toMatchObject([{ user: SMTP_USER, password: SMTP_PASSWORD }]);

    // Another host (same server, other name) or another user: the stored password is not sent.
    const elsewhere = mail.logins.length;
    expect(await testConnection({ ...rep!.smtpServer, host: 'localhost' })).toEqual(FAILED);
    expect(await testConnection({ ...rep!.smtpServer, user: 'someone-else' })).toEqual(FAILED);
    expect(mail.logins.slice(elsewhere).map((l) => l.password)).not.toContain(SMTP_PASSWORD);
  });

  it('answers 500 "Failed to send email" when sending fails, as Keycloak does', async () => {
    const unreachable = mail.smtpServerSettings({ port: '1' });
    expect(await testConnection(unreachable)).toEqual(FAILED);
    // Keycloak's testWithNullSettings and testWithAuthEnabledCredentialsEmpty.
    expect(await testConnection({ host: null, port: null, from: null, auth: null })).toEqual(FAILED);
    expect(await testConnection({})).toEqual(FAILED);
    expect(await testConnection(mail.smtpServerSettings({ auth: 'true' }))).toEqual(FAILED);
    expect(await testConnection(mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: 'wrong' }))).toEqual(FAILED);
    expect(await testConnection(mail.smtpServerSettings({ port: 'not-a-port' }))).toEqual(FAILED);
    // The server wants authentication.
    expect(await testConnection(mail.smtpServerSettings())).toEqual(FAILED);
    // The official client surfaces the same answer.
    await expect(bench.admin.realms.testSMTPConnection({ realm: REALM }, unreachable))
      .rejects.toMatchObject({ response: { status: 500 }, responseData: { errorMessage: 'Failed to send email' } });
  });

  it('refuses a body that is not an SMTP map with 400', async () => {
    expect(await testConnection(['host'])).toMatchObject({ status: 400, body: { errorMessage: expect.any(String) } });
    expect(await testConnection({ host: { nested: true } })).toMatchObject({ status: 400, body: { errorMessage: expect.any(String) } });
    const response = await bench.api(`/${REALM}/testSMTPConnection`, { method: 'POST', body: '{not json' });
    expect(response.status).toBe(400);
  });

  it('takes Keycloak\'s deprecated form body (config=<json>)', async () => {
    const to = mail.messages.length;
    const response = await bench.api(`/${REALM}/testSMTPConnection`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ config: JSON.stringify(mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD })) }).toString(),
    });
    expect(response.status).toBe(204);
    await mail.waitFor((m) => mail.messages.indexOf(m) >= to && m.to.includes(ADMIN_EMAIL));
  });

  it('needs manage-realm, and an e-mail address on the calling admin', async () => {
    const viewer = await bench.realmAdmin(REALM, ['view-realm']);
    expect((await testConnection(mail.smtpServerSettings(), await viewer.getAccessToken())).status).toBe(403);

    const manager = await bench.realmAdmin(REALM, ['manage-realm']);
    const noEmail = await testConnection(mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD }), await manager.getAccessToken());
    expect(noEmail).toEqual({ status: 500, body: { errorMessage: 'Logged in user does not have an e-mail.' } });

    // With an address, the realm's own admin gets the message.
    const token = await manager.getAccessToken();
    const subject = JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString()).sub as string;
    await bench.admin.users.update({ realm: REALM, id: subject }, { email: 'realm-admin@cloakroom.test' });
    expect((await testConnection(mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD }), token)).status).toBe(204);
    await mail.waitFor((m) => m.to.includes('realm-admin@cloakroom.test'));
  });
});

describe('the realm SMTP password', () => {
  it('is sealed in the database and masked on every read', async () => {
    const stored = await storedSettings();
    expect(stored).not.toContain(SMTP_PASSWORD);
    expect(stored).toContain('"passwordSealed":"v1.');
    expect(stored).not.toMatch(/"password":/);

    const rep = await bench.admin.realms.findOne({ realm: REALM });
    expect(rep!.smtpServer).toEqual({ ...mail.smtpServerSettings({ auth: 'true', user: SMTP_USER }), password: SECRET_MASK });
    const listed = (await bench.admin.realms.find()).find((r) => r.realm === REALM);
    expect(listed!.smtpServer!.password).toBe(SECRET_MASK);
    expect(JSON.stringify(listed)).not.toContain('passwordSealed');
  });

  it('is kept when a PUT sends the mask back, replaced by a new one, dropped by an empty one', async () => {
    const before = await storedSettings();
    const rep = await bench.admin.realms.findOne({ realm: REALM });
    await bench.admin.realms.update({ realm: REALM }, { ...rep, smtpServer: { ...rep!.smtpServer, fromDisplayName: 'Desk' } });
    const after = await storedSettings();
    expect(after).not.toContain(SMTP_PASSWORD);
    expect(JSON.parse(after).smtpServer.passwordSealed).toBe(JSON.parse(before).smtpServer.passwordSealed);
    expect(JSON.parse(after).smtpServer.fromDisplayName).toBe('Desk');

    // A caller cannot plant its own sealed value.
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...rep!.smtpServer, passwordSealed: 'v1.forged' } as Record<string, string> });
    expect(JSON.parse(await storedSettings()).smtpServer.passwordSealed).toBe(JSON.parse(before).smtpServer.passwordSealed);

    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...rep!.smtpServer, password: 'rotated-secret' } });
    const rotated = await storedSettings();
    expect(rotated).not.toContain('rotated-secret');
    expect(JSON.parse(rotated).smtpServer.passwordSealed).not.toBe(JSON.parse(before).smtpServer.passwordSealed);
    const logins = mail.logins.length;
    expect(await testConnection(rep!.smtpServer)).toEqual(FAILED); // the server still wants the old one
    expect(mail.logins.slice(logins)).toMatchObject([{ user: SMTP_USER, password: 'rotated-secret' }]);

    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...rep!.smtpServer, password: '' } });
    expect(JSON.parse(await storedSettings()).smtpServer).not.toHaveProperty('passwordSealed');
    expect((await bench.admin.realms.findOne({ realm: REALM }))!.smtpServer).not.toHaveProperty('password');

    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...rep!.smtpServer, password: SMTP_PASSWORD } });
  });

  it('is opened in an export with secrets and masked in one without, and sealed again on import', async () => {
    const open = await exportRealm(bench.server.store.db, bench.server.box, REALM, { users: false, secrets: 'open' }) as Record<string, any>;
    expect(open.smtpServer.password).toBe(SMTP_PASSWORD);
    expect(open.smtpServer).not.toHaveProperty('passwordSealed');
    const masked = await exportRealm(bench.server.store.db, bench.server.box, REALM, { users: false, secrets: 'masked' }) as Record<string, any>;
    expect(masked.smtpServer.password).toBe(SECRET_MASK);
    expect(JSON.stringify(masked)).not.toMatch(new RegExp(`${SMTP_PASSWORD}|passwordSealed`));
    const partial = await bench.admin.realms.export({ realm: REALM }) as Record<string, any>;
    expect(partial.smtpServer.password).toBe(SECRET_MASK);
    expect(JSON.stringify(partial)).not.toMatch(new RegExp(`${SMTP_PASSWORD}|passwordSealed`));

    // The export's settings into new realms (its object ids belong to the realm it came from).
    await bench.admin.realms.create({ realm: 'mail-copy', displayName: open.displayName, smtpServer: open.smtpServer });
    expect(await storedSettings('mail-copy')).not.toContain(SMTP_PASSWORD);
    expect((await bench.admin.realms.findOne({ realm: 'mail-copy' }))!.smtpServer!.password).toBe(SECRET_MASK);

    // Importing a masked export keeps no password (the mask is not one).
    await bench.admin.realms.create({ realm: 'mail-masked', smtpServer: masked.smtpServer });
    expect(JSON.parse(await storedSettings('mail-masked')).smtpServer).not.toHaveProperty('passwordSealed');
  });

  it('is what Mailer.send uses for the realm', async () => {
    const mailer = new Mailer({ viewsDir: new URL('../../views', import.meta.url).pathname, logger: createLogger('silent') });
    const realm = (await bench.server.registry.get('mail-copy'))!;
    const logins = mail.logins.length;
    await mailer.send(realm, {
      to: 'reset@example.com', template: 'password-reset', locale: 'de',
      data: { realmName: realm.name, realmDisplayName: realm.realm.display_name ?? undefined, user: { username: 'jdoe' }, link: 'https://login.example.com/reset?key=1', linkExpirationMinutes: 5 },
    });
    const received = await mail.waitFor((m) => m.to.includes('reset@example.com'));
    expect(received.subject).toBe('Passwort zurücksetzen');
    expect(received.text).toContain('https://login.example.com/reset?key=1');
    expect(mail.logins.slice(logins)).toMatchObject([{ user: SMTP_USER, password: SMTP_PASSWORD }]);

    const masked = (await bench.server.registry.get('mail-masked'))!;
    await expect(mailer.send(masked, { to: 'x@example.com', template: 'email-test', locale: 'en', data: { realmName: 'mail-masked' } }))
      .rejects.toThrow(/user and a password/);
    const unconfigured = (await bench.server.registry.get('master'))!;
    await expect(mailer.send(unconfigured, { to: 'x@example.com', template: 'email-test', locale: 'en', data: { realmName: 'master' } }))
      .rejects.toThrow('the realm has no SMTP server configured');
  });
});

describe('SMTP with XOAUTH2 (authType token)', () => {
  const TOKEN_REALM = 'mail-oauth';
  const CLIENT_SECRET = 'smtp-client-secret-never-in-clear';
  const MAILBOX = 'mailer@oauth.example';
  let oauthMail: MailServer;
  let refuseNext = 0;
  const tokenClaims = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString() || '{}') as Record<string, unknown>;
  const clientLogins = async (): Promise<number> =>
    (await bench.server.store.db.selectFrom('events').innerJoin('realms', 'realms.id', 'events.realm_id').select('events.id')
      .where('realms.name', '=', TOKEN_REALM).where('events.type', '=', 'CLIENT_LOGIN').execute()).length;
  /** The CLIENT_LOGIN count once it reaches `expected` (events are stored in the background), or what it is after 3 s. */
  const clientLoginsReaching = async (expected: number): Promise<number> => {
    let count = await clientLogins();
    for (let i = 0; i < 60 && count < expected; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      count = await clientLogins();
    }
    return count;
  };

  beforeAll(async () => {
    // The SMTP server takes access tokens our own token endpoint issued to the mailer client.
    oauthMail = await startMailServer({
      xoauth2: {
        accepts: (user, token) => {
          if (refuseNext > 0) {
            refuseNext--;
            return false;
          }
          const claims = tokenClaims(token);
          return user === MAILBOX && claims.azp === 'smtp-mailer' && typeof claims.exp === 'number' && claims.exp * 1000 > Date.now();
        },
      },
    });
    await bench.admin.realms.create({ realm: TOKEN_REALM, enabled: true, eventsEnabled: true, enabledEventTypes: ['CLIENT_LOGIN'] });
    await bench.admin.clients.create({ realm: TOKEN_REALM, clientId: 'smtp-mailer', secret: CLIENT_SECRET, publicClient: false, serviceAccountsEnabled: true, standardFlowEnabled: false });
    await bench.admin.realms.update({ realm: REALM }, {
      smtpServer: oauthMail.smtpServerSettings({
        auth: 'true', authType: 'token', user: MAILBOX, authTokenUrl: `${bench.server.url}/realms/${TOKEN_REALM}/protocol/openid-connect/token`,
        authTokenClientId: 'smtp-mailer', authTokenClientSecret: CLIENT_SECRET, authTokenScope: 'openid',
      }),
    });
  });
  afterAll(async () => {
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: mail.smtpServerSettings({ auth: 'true', user: SMTP_USER, password: SMTP_PASSWORD }) });
    await oauthMail?.stop();
  });

  it('keeps the client secret sealed and masked like the password', async () => {
    const stored = await storedSettings();
    expect(stored).not.toContain(CLIENT_SECRET);
    expect(JSON.parse(stored).smtpServer.authTokenClientSecretSealed).toMatch(/^v1\./);
    const rep = await bench.admin.realms.findOne({ realm: REALM });
    expect(rep!.smtpServer!.authTokenClientSecret).toBe(SECRET_MASK);
    expect(JSON.stringify(rep)).not.toContain('Sealed');
    const open = await exportRealm(bench.server.store.db, bench.server.box, REALM, { users: false, secrets: 'open' }) as Record<string, any>;
    expect(open.smtpServer.authTokenClientSecret).toBe(CLIENT_SECRET);
  });

  it('signs in with a client-credentials token, reused while valid and fetched anew once when refused', async () => {
    const settings = (await bench.admin.realms.findOne({ realm: REALM }))!.smtpServer!;
    const tokensBefore = await clientLogins();
    const loginsBefore = oauthMail.logins.length;
    // The mask stands for the stored secret: same token URL and client.
    expect(await testConnection(settings)).toEqual({ status: 204, body: undefined });
    expect(await testConnection(settings)).toEqual({ status: 204, body: undefined });
    const attempts = oauthMail.logins.slice(loginsBefore);
    expect(attempts.map((l) => [l.method, l.user])).toEqual([['XOAUTH2', MAILBOX], ['XOAUTH2', MAILBOX]]);
    expect(tokenClaims(attempts[0]!.password).azp).toBe('smtp-mailer');
    expect(attempts[1]!.password).toBe(attempts[0]!.password);
    expect(await clientLoginsReaching(tokensBefore + 1)).toBe(tokensBefore + 1);
    expect(oauthMail.messages.filter((m) => m.to.includes(ADMIN_EMAIL))).toHaveLength(2);

    // A refused token (nodemailer tries it twice) is dropped and a new one fetched.
    refuseNext = 2;
    const refusedFrom = oauthMail.logins.length;
    expect(await testConnection(settings)).toEqual({ status: 204, body: undefined });
    const retried = oauthMail.logins.slice(refusedFrom).map((l) => l.password);
    expect(retried).toHaveLength(3);
    expect(retried[2]).not.toBe(retried[0]);
    expect(await clientLoginsReaching(tokensBefore + 2)).toBe(tokensBefore + 2);
    expect(oauthMail.messages.filter((m) => m.to.includes(ADMIN_EMAIL))).toHaveLength(3);
  });

  it('keeps the stored secret for the mask only while the token URL and client stay; needs https off this machine', async () => {
    const settings = (await bench.admin.realms.findOne({ realm: REALM }))!.smtpServer!;
    const stored = async (): Promise<Record<string, unknown>> => JSON.parse(await storedSettings()).smtpServer as Record<string, unknown>;
    const before = (await stored()).authTokenClientSecretSealed;
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...settings, fromDisplayName: 'Oauth Desk' } });
    expect((await stored()).authTokenClientSecretSealed).toBe(before);
    // Another token endpoint with the mask: the stored secret is not carried there.
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...settings, authTokenUrl: 'https://evil.example/token' } });
    expect(await stored()).not.toHaveProperty('authTokenClientSecretSealed');
    // The same for the password and another host.
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...settings, authType: 'basic', password: 'pw-1' } });
    const withPassword = (await bench.admin.realms.findOne({ realm: REALM }))!.smtpServer!;
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...withPassword, host: 'smtp.evil.example' } });
    expect(await stored()).not.toHaveProperty('passwordSealed');
    // A plain http token endpoint elsewhere is refused before the secret leaves.
    expect(await testConnection({ ...settings, authTokenUrl: 'http://token.example/token', authTokenClientSecret: CLIENT_SECRET })).toEqual(FAILED);
    // Back to the working settings for the next test.
    await bench.admin.realms.update({ realm: REALM }, { smtpServer: { ...settings, authTokenClientSecret: CLIENT_SECRET } });
  });

  it('fails as Keycloak does with a wrong client secret, a refused token, or a mask for another client', async () => {
    const settings = (await bench.admin.realms.findOne({ realm: REALM }))!.smtpServer!;
    expect(await testConnection({ ...settings, authTokenClientSecret: 'wrong' })).toEqual(FAILED);
    // nodemailer tries a refused token twice; the mailer then fetches a new one, refused twice too.
    refuseNext = 4;
    expect(await testConnection(settings)).toEqual(FAILED);
    refuseNext = 0;
    expect(await testConnection({ ...settings, authTokenClientId: 'other-client' })).toEqual(FAILED);
    expect(await testConnection({ ...settings, authTokenClientSecret: '' })).toEqual(FAILED);
  });
});
