// Admin REST API: Keycloak's testSMTPConnection. Sends the e-mail-test message with the posted
// smtpServer settings to the calling admin's own address. As in Keycloak (RealmAdminResource):
// manage-realm; 204 when sent; every failure a 500 `Failed to send email` (the reason goes to the
// log); a masked password means the realm's stored one, but only for the same host, port and
// user with authentication on in both, so a stored password is never sent to another server; a
// masked authTokenClientSecret likewise only for the same token URL and client id.
import { z } from 'zod';

import { readForm } from '../http/body.ts';
import { MailError, smtpSettings } from '../mail/mailer.ts';
import { SMTP_SECRETS, isSmtpMap } from '../mail/smtp-config.ts';
import { SECRET_MASK } from '../store/sealed-config.ts';
import { AdminError, badRequest, noContent, type AdminRouter, type RealmRequest } from './router.ts';

/** Keycloak's Map<String,String>: Jackson turns numbers and booleans into strings; null is "not set". */
const smtpServerBody = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))
  .transform((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)])));

const isTrue = (value: unknown): boolean => typeof value === 'string' && value.toLowerCase() === 'true';

/** Keycloak's reuseConfiguredAuthenticationForSmtp (basic authentication). */
function reusesStoredPassword(posted: Record<string, string>, stored: Record<string, unknown>): boolean {
  const storedText = (key: string, fallback: string): string => (typeof stored[key] === 'string' ? stored[key] : fallback);
  const basic = (type: string | undefined): boolean => (type ?? 'basic').toLowerCase() === 'basic';
  return isTrue(posted.auth) && isTrue(stored.auth)
    && basic(posted.authType) && basic(typeof stored.authType === 'string' ? stored.authType : undefined)
    && (posted.host ?? '') === storedText('host', '')
    && (posted.port ?? '25') === storedText('port', '25')
    && (posted.user ?? '') === storedText('user', '');
}

/** Keycloak's reuse of the stored client secret for token authentication: the same token endpoint and client. */
function reusesStoredClientSecret(posted: Record<string, string>, stored: Record<string, unknown>): boolean {
  const token = (type: unknown): boolean => typeof type === 'string' && type.toLowerCase() === 'token';
  return isTrue(posted.auth) && isTrue(stored.auth) && token(posted.authType) && token(stored.authType)
    && posted.authTokenUrl === stored.authTokenUrl && posted.authTokenClientId === stored.authTokenClientId;
}

/** The body: JSON, or Keycloak's deprecated form with the map as JSON in `config`. */
async function postedSettings(req: RealmRequest): Promise<Record<string, string>> {
  if (!req.ctx.is('application/x-www-form-urlencoded')) return req.json(smtpServerBody);
  const form = await readForm(req.ctx);
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof form.config === 'string' ? form.config : '');
  } catch {
    throw badRequest('the config parameter is not valid JSON');
  }
  const result = smtpServerBody.safeParse(parsed);
  if (!result.success) throw badRequest('the config parameter is not an SMTP server map');
  return result.data;
}

export function registerSmtpRoutes(admin: AdminRouter): void {
  const { db, box, mailer, logger } = admin.services;

  admin.realm('post', '/testSMTPConnection', { permission: 'manage-realm', secretBody: true, changesRealm: false }, async (req) => {
    const posted = await postedSettings(req);
    const user = await db.selectFrom('users').select(['username', 'email', 'first_name', 'last_name', 'attributes'])
      .where('id', '=', req.auth.identity.userId).executeTakeFirst();
    if (!user?.email) throw new AdminError(500, 'Logged in user does not have an e-mail.');

    const realmSettings = req.realm.settings as Record<string, unknown>;
    const stored = isSmtpMap(realmSettings.smtpServer) ? realmSettings.smtpServer : {};
    // Sealed keys come from the stored map only, never from the caller.
    const config: Record<string, unknown> = Object.fromEntries(Object.entries(posted).filter(([key]) => !SMTP_SECRETS.some((s) => s.sealedKey === key)));
    const reuse = { password: reusesStoredPassword(posted, stored), authTokenClientSecret: reusesStoredClientSecret(posted, stored) };
    for (const { key, sealedKey } of SMTP_SECRETS) {
      if (posted[key] !== SECRET_MASK || !reuse[key as keyof typeof reuse]) continue;
      config[key] = stored[key];
      config[sealedKey] = stored[sealedKey];
    }
    const theme = typeof realmSettings.emailTheme === 'string' && realmSettings.emailTheme !== '' ? realmSettings.emailTheme : 'default';
    const userLocale = user.attributes.locale?.[0];
    const realmLocale = typeof realmSettings.defaultLocale === 'string' ? realmSettings.defaultLocale : undefined;
    try {
      const settings = smtpSettings(config, (sealed) => box.open(sealed));
      if (!settings) throw new MailError('the SMTP settings need a host and a from address');
      await mailer.sendWith(settings, {
        to: user.email,
        template: 'email-test',
        locale: userLocale || realmLocale || 'en',
        data: {
          realmName: req.realm.name,
          ...(req.realm.display_name ? { realmDisplayName: req.realm.display_name } : {}),
          user: { username: user.username, firstName: user.first_name, lastName: user.last_name, email: user.email },
        },
      }, theme);
    } catch (error) {
      if (!(error instanceof MailError)) throw error;
      logger.warn({ err: error, realm: req.realm.name }, 'SMTP connection test failed');
      throw new AdminError(500, 'Failed to send email');
    }
    return noContent();
  });
}
