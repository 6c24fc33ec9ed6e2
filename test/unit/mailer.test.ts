// Realm e-mail rendering and sending against a real in-process SMTP server: every template in
// English and German, escaping of user data in the HTML part (and none in the text part), the
// theme fallback, and the failures that must surface as MailError.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MailError, Mailer, smtpSettings, type EmailTemplate, type MailMessage, type SmtpSettings } from '../../src/mail/mailer.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startMailServer, type MailServer } from '../support/mail.ts';

const VIEWS = fileURLToPath(new URL('../../views', import.meta.url));
const HOSTILE_USER = '<script>alert(1)</script>';
const HOSTILE_REALM = '<b>Acme & "Co"</b>';
const LINK = 'https://login.example.com/realms/acme/login-actions/action-token?key=abc&client_id=<portal>';

let mail: MailServer;
let settings: SmtpSettings;
const mailer = new Mailer({ viewsDir: VIEWS, logger: createLogger('silent') });

beforeAll(async () => {
  mail = await startMailServer();
  settings = smtpSettings(mail.smtpServerSettings(), () => { throw new Error('nothing sealed'); })!;
});
afterAll(async () => {
  await mail.stop();
});

let sent = 0;
/** Sends `message` to a fresh address and returns what the server received. */
async function deliver(message: Omit<MailMessage, 'to'>, theme?: string, mailer_ = mailer) {
  const to = `user${++sent}@example.com`;
  await mailer_.sendWith(settings, { ...message, to }, theme);
  return mail.waitFor((m) => m.to.includes(to));
}

const data = {
  realmName: 'acme',
  realmDisplayName: HOSTILE_REALM,
  user: { username: HOSTILE_USER, firstName: null, lastName: null, email: 'x@example.com' },
  link: LINK,
  linkExpirationMinutes: 5,
  requiredActions: ['UPDATE_PASSWORD', 'CONFIGURE_TOTP'],
};

const EXPECTED: Record<'en' | 'de', Record<EmailTemplate, { subject: string; text: string[] }>> = {
  en: {
    'password-reset': { subject: 'Reset password', text: [`change your ${HOSTILE_REALM} account's credentials`, 'This link will expire within 5 minutes.'] },
    'execute-actions': { subject: 'Update Your Account', text: ['following action(s): Update Password, Configure OTP.', 'This link will expire within 5 minutes.'] },
    'email-verification': { subject: 'Verify email', text: [`created a ${HOSTILE_REALM} account`, 'This link will expire within 5 minutes.'] },
    'password-updated': { subject: 'Your password was changed', text: [`The password of your ${HOSTILE_REALM} account was changed on `, 'contact your administrator'] },
    'email-test': { subject: `[${HOSTILE_REALM}] - SMTP test message`, text: ['This is a test message'] },
  },
  de: {
    'password-reset': { subject: 'Passwort zurücksetzen', text: [`Ihr Konto ${HOSTILE_REALM} angefordert`, 'Dieser Link wird in 5 Minuten ablaufen.'] },
    'execute-actions': { subject: 'Aktualisieren Sie Ihr Konto', text: ['Aktion(en) ausführen: Passwort aktualisieren, Mehrfachauthentifizierung konfigurieren.'] },
    'email-verification': { subject: 'E-Mail verifizieren', text: [`ein Konto ${HOSTILE_REALM} mit dieser E-Mail-Adresse`] },
    'password-updated': { subject: 'Ihr Passwort wurde geändert', text: [`Das Passwort Ihres Kontos ${HOSTILE_REALM} wurde am `, 'an Ihren Administrator'] },
    'email-test': { subject: `[${HOSTILE_REALM}] - SMTP Testnachricht`, text: ['Dies ist eine Testnachricht'] },
  },
};

describe('Mailer.sendWith', () => {
  for (const locale of ['en', 'de'] as const) {
    for (const [template, expected] of Object.entries(EXPECTED[locale]) as [EmailTemplate, { subject: string; text: string[] }][]) {
      it(`sends ${template} in ${locale}: user data escaped in HTML, plain in text`, async () => {
        const received = await deliver({ template, locale, data });
        expect(received.subject).toBe(expected.subject);
        expect(received.from).toBe('"Cloakroom" <noreply@cloakroom.test>');

        // Text part: exactly what was given, no entities.
        expect(received.text).toContain(`${locale === 'de' ? 'Hallo' : 'Hello'} ${HOSTILE_USER},`);
        for (const fragment of expected.text) expect(received.text).toContain(fragment);
        expect(received.text).not.toMatch(/&lt;|&amp;|&quot;|&#39;/);

        // HTML part: nothing from data comes through as markup.
        expect(received.html).not.toContain('<script>');
        expect(received.html).not.toContain('<b>');
        expect(received.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
        expect(received.html).toContain('&lt;b&gt;Acme &amp; &quot;Co&quot;&lt;/b&gt;');
        expect(received.html).toMatch(new RegExp(`<html lang="${locale}">`));

        if (['password-reset', 'execute-actions', 'email-verification'].includes(template)) {
          expect(received.text).toContain(LINK);
          expect(received.html).toContain(`href="${LINK.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')}"`);
          expect(received.html).not.toContain(LINK);
        }
      });
    }
  }

  it('shows link lifetimes as Keycloak does (hours or days when they divide evenly) and falls back to English', async () => {
    const hours = await deliver({ template: 'execute-actions', locale: 'de-AT', data: { ...data, linkExpirationMinutes: 720 } });
    expect(hours.text).toContain('Dieser Link wird in 12 Stunden ablaufen.');
    const day = await deliver({ template: 'password-reset', locale: 'fr', data: { ...data, linkExpirationMinutes: 1440 } });
    expect(day.subject).toBe('Reset password');
    expect(day.text).toContain('This link will expire within 1 day.');
    const minutes = await deliver({ template: 'email-verification', locale: 'en', data: { ...data, linkExpirationMinutes: 90 } });
    expect(minutes.text).toContain('This link will expire within 90 minutes.');
  });

  it('names the user by first and last name when known, and shows unknown required actions by alias', async () => {
    const received = await deliver({
      template: 'execute-actions', locale: 'en',
      data: { realmName: 'acme', user: { username: 'jdoe', firstName: 'Jane', lastName: 'Doe' }, link: LINK, linkExpirationMinutes: 60, requiredActions: ['cxone-custom-action'] },
    });
    expect(received.text).toContain('Hello Jane Doe,');
    expect(received.text).toContain('your acme account by performing the following action(s): cxone-custom-action.');
    expect(received.text).toContain('within 1 hour.');
    expect(received.subject).toBe('Update Your Account');
  });

  it('uses a custom theme\'s templates and messages where it has them, the default theme elsewhere', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-views-'));
    try {
      fs.symlinkSync(path.join(VIEWS, 'default'), path.join(root, 'default'));
      fs.mkdirSync(path.join(root, 'acme', 'email', 'text'), { recursive: true });
      fs.mkdirSync(path.join(root, 'acme', 'messages'), { recursive: true });
      fs.writeFileSync(path.join(root, 'acme', 'email', 'text', 'email-test.eta'), 'ACME test for <%= it.user.username %> from <%= it.realmName %>\n');
      fs.writeFileSync(path.join(root, 'acme', 'messages', 'email_en.json'), JSON.stringify({ emailTestSubject: 'ACME says hi to {0}' }));
      const themed = new Mailer({ viewsDir: root, logger: createLogger('silent') });

      const received = await deliver({ template: 'email-test', locale: 'en', data }, 'acme', themed);
      expect(received.subject).toBe(`ACME says hi to ${HOSTILE_REALM}`);
      expect(received.text.trim()).toBe(`ACME test for ${HOSTILE_USER} from ${HOSTILE_REALM}`);
      // The HTML part comes from the default theme.
      expect(received.html).toContain('This is a test message');
      // German has no override: the default theme's subject.
      expect((await deliver({ template: 'email-test', locale: 'de', data }, 'acme', themed)).subject).toBe(`[${HOSTILE_REALM}] - SMTP Testnachricht`);
      // An unknown theme is the default theme.
      expect((await deliver({ template: 'email-test', locale: 'en', data }, 'no-such-theme', themed)).subject).toBe(`[${HOSTILE_REALM}] - SMTP test message`);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('sets the reply-to and envelope sender from the settings', async () => {
    const withReply = smtpSettings(mail.smtpServerSettings({ replyTo: 'help@example.com', replyToDisplayName: 'Help Desk', envelopeFrom: 'bounces@example.com' }), () => '')!;
    const to = 'reply@example.com';
    await mailer.sendWith(withReply, { to, template: 'email-test', locale: 'en', data: { realmName: 'acme' } });
    const received = await mail.waitFor((m) => m.to.includes(to));
    expect(received.envelopeFrom).toBe('bounces@example.com');
    expect(received.raw).toMatch(/^Reply-To: Help Desk <help@example\.com>\r?$/m);
  });

  it('fails with MailError, never hangs, when the server is unreachable, closes on us or refuses the login', async () => {
    const closed = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as net.AddressInfo).port;
    const unused = net.createServer();
    await new Promise<void>((resolve) => unused.listen(0, '127.0.0.1', resolve));
    const unusedPort = (unused.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => unused.close(() => resolve()));
    const strict = await startMailServer({ credentials: { user: 'mailer', password: 'right' } });
    try {
      const message: MailMessage = { to: 'a@example.com', template: 'email-test', locale: 'en', data: { realmName: 'acme' } };
      const cases: SmtpSettings[] = [
        { ...settings, port: unusedPort },
        { ...settings, port: closedPort },
        { ...settings, port: strict.port, auth: true, user: 'mailer', password: 'wrong' },
        { ...settings, port: strict.port }, // the server wants authentication
        { ...settings, auth: true, user: 'mailer' }, // no password
      ];
      for (const bad of cases) await expect(mailer.sendWith(bad, message)).rejects.toBeInstanceOf(MailError);
      await expect(mailer.sendWith({ ...settings, port: strict.port, auth: true, user: 'mailer', password: 'right' }, message)).resolves.toBeUndefined();
      expect(strict.messages).toHaveLength(1);
      expect(strict.messages[0]!.authUser).toBe('mailer');
    } finally {
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      await strict.stop();
    }
  });

  it('refuses bad recipients and links that are not absolute http(s) URLs', async () => {
    const base = { template: 'password-reset' as const, locale: 'en', data: { ...data } };
    for (const to of ['', 'not-an-address', 'a@example.com\r\nBcc: b@example.com', 'a@example.com, b@example.com']) {
      await expect(mailer.sendWith(settings, { ...base, to })).rejects.toBeInstanceOf(MailError);
    }
    for (const link of ['javascript:alert(1)', '/relative/path', 'data:text/html,x']) {
      await expect(mailer.sendWith(settings, { ...base, to: 'a@example.com', data: { ...data, link } })).rejects.toBeInstanceOf(MailError);
    }
    await expect(mailer.sendWith(settings, { ...base, to: 'a@example.com', data: { realmName: 'acme' } })).rejects.toBeInstanceOf(MailError);
    expect(mail.messages.some((m) => m.to.includes('a@example.com'))).toBe(false);
  });
});

describe('smtpSettings', () => {
  const open = (sealed: string): string => sealed.replace(/^sealed:/, '');

  it('reads Keycloak\'s string map, the password plain or sealed, never the mask', () => {
    expect(smtpSettings({ host: 'smtp.example.com', from: 'a@example.com', port: '587', ssl: 'false', starttls: 'TRUE', auth: 'true', user: 'u', passwordSealed: 'sealed:pw', fromDisplayName: 'Acme' }, open)).toEqual({
      host: 'smtp.example.com', port: 587, from: 'a@example.com', fromDisplayName: 'Acme', ssl: false, starttls: true, auth: true, authType: 'basic', user: 'u', password: 'pw',
    });
    // Keycloak 26.1's token authentication (XOAUTH2): the client secret plain or sealed, never the mask.
    const token = { host: 'h', from: 'a@example.com', auth: 'true', authType: 'TOKEN', user: 'box@example.com', authTokenUrl: 'https://login.example.com/token', authTokenClientId: 'c', authTokenScope: 'https://outlook.office365.com/.default' };
    expect(smtpSettings({ ...token, authTokenClientSecretSealed: 'sealed:s3cret' }, open)).toMatchObject({
      authType: 'token', user: 'box@example.com', tokenSource: { url: 'https://login.example.com/token', clientId: 'c', clientSecret: 's3cret', scope: 'https://outlook.office365.com/.default' },
    });
    expect(smtpSettings({ ...token, authTokenClientSecret: 'plain' }, open)?.tokenSource?.clientSecret).toBe('plain');
    expect(smtpSettings({ ...token, authTokenClientSecret: '**********' }, open)).not.toHaveProperty('tokenSource');
    expect(() => smtpSettings({ ...token, authType: 'kerberos' }, open)).toThrow(MailError);
    expect(smtpSettings({ host: 'h', from: 'a@example.com', password: 'plain' }, open)).toMatchObject({ port: 25, password: 'plain', auth: false });
    expect(smtpSettings({ host: 'h', from: 'a@example.com', ssl: 'true', password: '**********' }, open)).toMatchObject({ port: 465, ssl: true });
    expect(smtpSettings({ host: 'h', from: 'a@example.com', password: '**********' }, open)).not.toHaveProperty('password');
    expect(smtpSettings({ host: 'h', from: 'a@example.com', port: 2525 }, open)).toMatchObject({ port: 2525 });
  });

  it('is undefined without host or from, and a MailError for values that cannot work', () => {
    expect(smtpSettings({}, open)).toBeUndefined();
    expect(smtpSettings(undefined, open)).toBeUndefined();
    expect(smtpSettings({ host: 'h' }, open)).toBeUndefined();
    expect(smtpSettings({ from: 'a@example.com', host: ' ' }, open)).toBeUndefined();
    expect(() => smtpSettings({ host: 'h', from: 'a@example.com', port: 'smtp' }, open)).toThrow(MailError);
    expect(() => smtpSettings({ host: 'h', from: 'a@example.com', port: '70000' }, open)).toThrow(MailError);
    expect(() => smtpSettings({ host: 'h', from: 'a@example.com', passwordSealed: 'x' }, () => { throw new Error('bad key'); })).toThrow(MailError);
  });
});
