// "Forgot Password?" inside a login interaction: {issuer}/login-actions/{uid}/reset-credentials.
// GET shows the username-or-email form; POST answers at once with the same page for every input
// (known, unknown, disabled, without e-mail: byte-identical, and equally fast because the lookup,
// the token and the e-mail all happen after the response). The e-mailed link is served by
// action-token-page.ts.
import type { Context } from 'koa';

import type { RealmContext } from '../realms/context.ts';
import { absoluteRedirectUris } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { findUserByLogin } from '../store/users.ts';
import { actionTokenLifespan, sendActionEmail } from './action-emails.ts';
import type { LoginPages } from './routes.ts';

const MAX_USERNAME = 255;

/** Keycloak's realm switch for the "Forgot Password?" link and flow. */
export function resetPasswordAllowed(realm: RealmContext): boolean {
  return (realm.realm.settings as Record<string, unknown>).resetPasswordAllowed === true;
}

export type ResetCredentialsRequest = {
  ctx: Context;
  realm: RealmContext;
  /** Absolute issuer ({origin}{base}/realms/{realm}): the e-mailed link is built on it. */
  issuer: string;
  locale: string;
  /** The interaction's CSRF token (the caller checks it on POST). */
  csrf: string;
  /** Client of the interaction (events, the link's "Back to application"). */
  clientId: string;
  /** Where the form posts: {issuer path}/login-actions/{uid}/reset-credentials. */
  formAction: string;
  /** "Back to Login": {issuer path}/login-actions/{uid}/restart. */
  loginUrl: string;
  /** POST only: the submitted form, its CSRF token already checked. */
  form?: Record<string, unknown>;
  /** GET only: a username to prefill (login_hint or the one typed before). */
  username?: string;
};

/** Where "Back to application" leads after an e-mailed action: the client's base URL (Keycloak's info page). */
export async function clientBaseUrl(realm: RealmContext, clientId: string | undefined): Promise<string | undefined> {
  if (!clientId) return undefined;
  const client = await realm.client(clientId);
  const base = client?.row.base_url;
  if (!client || !base) return undefined;
  return absoluteRedirectUris([base], client.row.root_url)[0];
}

export function createResetCredentialsRoutes(pages: LoginPages) {
  const { deps } = pages;

  /** Sends the reset e-mail when the input names a user who can get one; records the outcome as Keycloak does. */
  async function requestReset(req: ResetCredentialsRequest, login: string): Promise<void> {
    const { realm, clientId, ctx } = req;
    const ipAddress = ctx.ip;
    const details = { username: login, auth_method: 'openid-connect' };
    const failed = (error: string, user?: User, extra: Record<string, unknown> = {}): void =>
      deps.event(realm, { type: 'SEND_RESET_PASSWORD_ERROR', clientId, userId: user?.id, ipAddress, error, details: { ...details, ...extra } });

    // PostgreSQL text cannot hold NUL: no user has such a name, and it must not reach a query.
    const user = login.includes('\0') ? undefined : await findUserByLogin(realm.db, realm.id, login, realm.settings.loginWithEmailAllowed);
    if (!user) return failed('user_not_found');
    // Application users sign in with access keys only: no password to reset.
    if (user.application) return failed('user_not_found', user, { reason: 'application user' });
    if (!user.enabled) return failed('user_disabled', user);
    if (!user.email) return failed('invalid_email', user);

    const redirectUri = await clientBaseUrl(realm, clientId);
    try {
      await sendActionEmail(deps.mailer, realm, req.issuer, user, {
        kind: 'reset-credentials',
        lifespanSeconds: actionTokenLifespan(realm, 'user', 'reset-credentials'),
        locale: req.locale,
        ...(clientId ? { clientId } : {}),
        ...(redirectUri ? { redirectUri } : {}),
      });
    } catch (err) {
      deps.logger.warn({ err, realm: realm.name, userId: user.id }, 'could not send the password reset e-mail');
      return failed('email_send_failed', user, { email: user.email });
    }
    deps.event(realm, { type: 'SEND_RESET_PASSWORD', clientId, userId: user.id, ipAddress, details: { ...details, email: user.email } });
  }

  return async function resetCredentials(req: ResetCredentialsRequest): Promise<void> {
    const { ctx, realm, locale } = req;
    if (!resetPasswordAllowed(realm)) return pages.errorPage(ctx, realm, 'resetCredentialNotAllowedMessage', 400, locale);
    const page = { locale, csrf: req.csrf, actions: { submit: req.formAction, login: req.loginUrl } };

    if (req.form === undefined) {
      return pages.render(ctx, realm, 'login-reset-password', { ...page, username: (req.username ?? '').slice(0, MAX_USERNAME) });
    }
    const value = req.form.username;
    const login = typeof value === 'string' ? value.slice(0, MAX_USERNAME).trim() : '';
    if (!login) {
      deps.event(realm, { type: 'SEND_RESET_PASSWORD_ERROR', clientId: req.clientId, ipAddress: ctx.ip, error: 'username_missing' });
      return pages.render(ctx, realm, 'login-reset-password', { ...page, errors: { username: deps.pages.t(locale, 'missingUsernameMessage') } }, 400);
    }
    // Off the request path: the answer cannot depend on (or wait for) what the lookup finds.
    requestReset(req, login).catch((err: unknown) => deps.logger.error({ err, realm: realm.name }, 'password reset request failed'));
    return pages.render(ctx, realm, 'info', { locale, message: { type: 'info', text: deps.pages.t(locale, 'emailSentMessage') } });
  };
}
