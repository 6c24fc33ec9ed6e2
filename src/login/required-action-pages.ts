// Required actions run after authentication, in the realm's priority order, before any code is
// issued: UPDATE_PASSWORD (also when the authenticator's password age ran out), CONFIGURE_TOTP
// (also when the authenticator requires MFA and the user has no such device), VERIFY_EMAIL,
// UPDATE_PROFILE, TERMS_AND_CONDITIONS. The same pages serve the login flow and e-mailed action
// links; the caller says where the form posts and what hidden fields bind it to its flow.
import type { Context } from 'koa';

import { endUserSessions } from '../oidc/session-end.ts';
import { LdapPasswordError } from '../federation/ldap/password.ts';
import { LdapUnavailableError } from '../federation/ldap/types.ts';
import { enrollmentOtpType } from './authenticator-settings.ts';
import type { EffectiveAuthenticator } from './login-authenticators.ts';
import {
  generateOtpSecret, listOtpDevices, newOtpCredentialData, otpCode, otpKeyUri, qrCodeSvg, storeOtpCredential, verifyOtp, type OtpDevice,
} from './otp.ts';
import { changePassword, passwordSetAt } from './password-change.ts';
import { parsePasswordPolicy, passwordChecklist, passwordExpired } from './password-policy.ts';
import type { PageMessage, PageName } from './pages.ts';
import { profileFieldErrors } from './profile-fields.ts';
import { requiredActionProviders, SUPPORTED_REQUIRED_ACTIONS } from './required-actions.ts';
import type { LoginPages } from './routes.ts';
import { sendVerificationEmail } from './verify-email.ts';
import type { RealmContext } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { emailTaken } from '../store/users.ts';

export type ActionPageContext = {
  pages: LoginPages;
  ctx: Context;
  realm: RealmContext;
  user: User;
  authenticator: EffectiveAuthenticator;
  locale: string;
  csrf: string;
  /** URL the action's form posts to. */
  formAction: string;
  /** Extra hidden inputs (e.g. the action token of an e-mailed link). */
  hidden?: Record<string, string>;
  /** Client of the login, for events. */
  clientId?: string;
  /** The realm's issuer URL at this origin (for links in e-mails). */
  issuer: string;
  /** The application asked for this action (kc_action) and the user may cancel it. */
  applicationInitiated?: boolean;
  /** The user's SSO session this flow continues, which "sign out from other devices" keeps. */
  currentSessionId?: string;
};

export type ActionOutcome = 'done' | 'rendered' | 'cancelled';

const PAGE_OF: Record<string, PageName> = {
  UPDATE_PASSWORD: 'login-update-password',
  CONFIGURE_TOTP: 'login-config-totp',
  VERIFY_EMAIL: 'login-verify-email',
  UPDATE_PROFILE: 'login-update-profile',
  TERMS_AND_CONDITIONS: 'terms',
};

const MAX_FIELD = 255;
const MAX_PASSWORD = 1024;
const BASE32_SECRET = /^[A-Z2-7]{16,128}$/;

/**
 * What the password page says when an LDAP user's provider did not take the new password, with
 * Keycloak's event (UPDATE_PASSWORD_ERROR password_rejected, reason = its exception message):
 * read-only (Keycloak's readOnlyPasswordMessage), refused (the directory's reason), unreachable.
 */
function ldapPasswordRefusal(error: unknown, t: (key: string, ...args: string[]) => string): { error: string; reason: string; text: string; status: number } | undefined {
  if (error instanceof LdapPasswordError) {
    if (error.kind === 'read-only') return { error: 'password_rejected', reason: error.keycloakMessage, text: t('readOnlyPasswordMessage'), status: 400 };
    return { error: 'password_rejected', reason: error.message, text: t('ldapPasswordRejectedMessage', error.message), status: 400 };
  }
  if (error instanceof LdapUnavailableError) return { error: 'ldap_unavailable', reason: error.message, text: t('ldapUnavailableMessage'), status: 503 };
  return undefined;
}

/** Devices that satisfy the authenticator's MFA requirement (any device when MFA is optional). */
export function matchingDevices(devices: OtpDevice[], authenticator: EffectiveAuthenticator): OtpDevice[] {
  const { mfa } = authenticator.settings;
  return mfa === 'totp' || mfa === 'hotp' ? devices.filter((d) => d.data.subType === mfa) : devices;
}

async function passwordIsExpired(realm: RealmContext, user: User, authenticator: EffectiveAuthenticator): Promise<boolean> {
  const policy = parsePasswordPolicy(authenticator.settings.passwordPolicy);
  if (!policy.some((e) => e.id === 'forceExpiredPasswordChange')) return false;
  const setAt = await passwordSetAt(realm.db, user.id);
  return setAt !== undefined && passwordExpired(policy, setAt);
}

/**
 * What the user must still do, in priority order. The user's own required actions count when the
 * realm has them enabled; the authenticator's demands (expired password, MFA without a device)
 * always do. `only` restricts to the actions of an e-mailed link.
 */
/**
 * `brokered`: signed in through an identity provider, which owns the password and the second
 * factor: no expired-password change and no MFA enrollment (Keycloak's first broker login likewise).
 */
export async function pendingRequiredActions(realm: RealmContext, user: User, authenticator: EffectiveAuthenticator, only?: string[], options: { brokered?: boolean } = {}): Promise<string[]> {
  const providers = requiredActionProviders(realm.realm.settings).slice().sort((a, b) => a.priority - b.priority);
  const enabled = new Set(providers.filter((p) => p.enabled).map((p) => p.alias));
  const wanted = new Set((only ?? user.required_actions).filter((a) => only !== undefined || enabled.has(a)));
  // The realm's "Verify email": every user with an unverified address verifies it (Keycloak's VerifyEmail trigger).
  if (only === undefined && enabled.has('VERIFY_EMAIL') && realm.settings.verifyEmail && user.email && !user.email_verified) wanted.add('VERIFY_EMAIL');
  if (only === undefined && !options.brokered) {
    if (await passwordIsExpired(realm, user, authenticator)) wanted.add('UPDATE_PASSWORD');
    if (authenticator.settings.mfa !== 'none' && matchingDevices(await listOtpDevices(realm.db, user.id), authenticator).length === 0) {
      wanted.add('CONFIGURE_TOTP');
    }
  }
  const ordered = providers.map((p) => p.alias).filter((a) => wanted.has(a));
  // Actions without a provider entry (an old export) still run, after the known ones.
  for (const alias of wanted) if (!ordered.includes(alias)) ordered.push(alias);
  return ordered.filter((a) => (SUPPORTED_REQUIRED_ACTIONS as readonly string[]).includes(a));
}

async function removeRequiredAction(page: ActionPageContext, action: string): Promise<void> {
  const { realm, user } = page;
  const remaining = user.required_actions.filter((a) => a !== action);
  if (remaining.length === user.required_actions.length) return;
  await realm.db.updateTable('users').set({ required_actions: JSON.stringify(remaining) }).where('id', '=', user.id).execute();
  user.required_actions = remaining;
}

function text(form: Record<string, unknown>, name: string, max = MAX_FIELD): string {
  const value = form[name];
  return typeof value === 'string' ? value.slice(0, max) : '';
}

/** Groups of four for reading a Base32 secret off the screen. */
const spaced = (secret: string): string => secret.replace(/(.{4})(?=.)/g, '$1 ');

type RenderExtra = { errors?: Record<string, string>; message?: PageMessage; status?: number; form?: Record<string, unknown> };

export async function renderRequiredAction(page: ActionPageContext, action: string, extra: RenderExtra = {}): Promise<void> {
  const { pages, ctx, realm, user, authenticator, locale } = page;
  const t = (key: string, ...args: string[]): string => pages.deps.pages.t(locale, key, ...args);
  const name = PAGE_OF[action];
  if (!name) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
  const common = {
    locale, csrf: page.csrf, actions: { submit: page.formAction }, hidden: page.hidden ?? {}, username: user.username,
    ...(page.applicationInitiated ? { isAppInitiatedAction: true } : {}),
    ...(extra.errors ? { errors: extra.errors } : {}), ...(extra.message ? { message: extra.message } : {}),
  };
  const form = extra.form ?? {};
  switch (action) {
    case 'UPDATE_PASSWORD': {
      const checklist = passwordChecklist(parsePasswordPolicy(authenticator.settings.passwordPolicy))
        .map((item) => ({ ...item, text: t(`${item.messageKey}`, ...item.params) }));
      return pages.render(ctx, realm, name, { ...common, checklist }, extra.status);
    }
    case 'CONFIGURE_TOTP': {
      const submitted = text(form, 'totpSecret', 200);
      const secret = BASE32_SECRET.test(submitted) ? submitted : generateOtpSecret();
      const data = newOtpCredentialData(authenticator.settings, enrollmentOtpType(authenticator.settings));
      const uri = otpKeyUri({ secret, data, issuer: realm.realm.display_name || realm.name, account: user.username });
      const svg = await qrCodeSvg(uri);
      return pages.render(ctx, realm, name, {
        ...common,
        otp: {
          secret, secretSpaced: spaced(secret), type: data.subType, algorithm: data.algorithm.replace('Hmac', ''), digits: data.digits,
          period: data.period, counter: data.counter, qrCode: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`,
          userLabel: text(form, 'userLabel'),
        },
      }, extra.status);
    }
    case 'UPDATE_PROFILE':
      return pages.render(ctx, realm, name, {
        ...common,
        profile: {
          email: extra.form ? text(form, 'email') : user.email ?? '',
          firstName: extra.form ? text(form, 'firstName') : user.first_name ?? '',
          lastName: extra.form ? text(form, 'lastName') : user.last_name ?? '',
        },
      }, extra.status);
    case 'VERIFY_EMAIL':
      return pages.render(ctx, realm, name, { ...common, email: user.email ?? '' }, extra.status);
    default:
      return pages.render(ctx, realm, name, common, extra.status);
  }
}

export async function submitRequiredAction(page: ActionPageContext, action: string, form: Record<string, unknown>): Promise<ActionOutcome> {
  const { pages, ctx, realm, user, authenticator, locale } = page;
  const t = (key: string, ...args: string[]): string => pages.deps.pages.t(locale, key, ...args);
  const event = (type: string, details?: Record<string, unknown>): void =>
    pages.deps.event(realm, { type, clientId: page.clientId, userId: user.id, ipAddress: ctx.ip, ...(details ? { details } : {}) });

  switch (action) {
    case 'UPDATE_PASSWORD': {
      const password = text(form, 'password-new', MAX_PASSWORD);
      const confirm = text(form, 'password-confirm', MAX_PASSWORD);
      if (!password) {
        await renderRequiredAction(page, action, { errors: { password: t('missingPasswordMessage') }, status: 400 });
        return 'rendered';
      }
      if (password !== confirm) {
        await renderRequiredAction(page, action, { errors: { passwordConfirm: t('notMatchPasswordMessage') }, status: 400 });
        return 'rendered';
      }
      let result;
      try {
        result = await changePassword(realm.db, realm.realm, user, password, authenticator.settings, { box: realm.box });
      } catch (error) {
        // An LDAP user's directory refused (read-only provider, its password policy) or is down.
        const refusal = ldapPasswordRefusal(error, t);
        if (!refusal) throw error;
        pages.deps.event(realm, { type: 'UPDATE_PASSWORD_ERROR', clientId: page.clientId, userId: user.id, ipAddress: ctx.ip, error: refusal.error, details: { reason: refusal.reason } });
        await renderRequiredAction(page, action, { errors: { password: refusal.text }, status: refusal.status });
        return 'rendered';
      }
      if (!result.ok) {
        pages.deps.event(realm, { type: 'UPDATE_PASSWORD_ERROR', clientId: page.clientId, userId: user.id, ipAddress: ctx.ip, error: 'password_rejected', details: { rule: result.violation.rule } });
        await renderRequiredAction(page, action, { errors: { password: t(result.violation.messageKey, ...result.violation.params) }, status: 400 });
        return 'rendered';
      }
      user.required_actions = user.required_actions.filter((a) => a !== 'UPDATE_PASSWORD');
      event('UPDATE_PASSWORD');
      // Keycloak's "Sign out from other devices" (checked by default): the user's other SSO sessions end.
      if (form['logout-sessions'] === 'on') await endUserSessions(realm, page.issuer, user.id, pages.deps.logger, page.currentSessionId);
      pages.notifyPasswordChanged(realm, user, locale);
      return 'done';
    }
    case 'CONFIGURE_TOTP': {
      const secret = text(form, 'totpSecret', 200);
      const code = text(form, 'totp', 16).replace(/\s+/g, '');
      const label = text(form, 'userLabel').trim();
      if (!BASE32_SECRET.test(secret)) {
        await renderRequiredAction(page, action, { message: { type: 'error', text: t('configureTotpExpiredMessage') }, status: 400 });
        return 'rendered';
      }
      if (!code) {
        await renderRequiredAction(page, action, { errors: { totp: t('missingTotpMessage') }, status: 400, form });
        return 'rendered';
      }
      const data = newOtpCredentialData(authenticator.settings, enrollmentOtpType(authenticator.settings));
      const matched = matchEnrollmentCode(secret, data, code, authenticator.settings.otpPolicyLookAheadWindow);
      if (matched === undefined) {
        pages.deps.event(realm, { type: 'UPDATE_TOTP_ERROR', clientId: page.clientId, userId: user.id, ipAddress: ctx.ip, error: 'invalid_totp' });
        await renderRequiredAction(page, action, { errors: { totp: t('invalidTotpMessage') }, status: 400, form });
        return 'rendered';
      }
      if (data.subType === 'hotp') data.counter = matched + 1;
      const credentialId = await storeOtpCredential(realm.db, realm.box, { realmId: realm.id, userId: user.id, label: label || t('defaultOtpLabel'), secret, data });
      // The enrollment code's time step counts as used: it cannot pass the login's OTP step again.
      if (data.subType === 'totp') await verifyOtp(realm.db, realm.box, { userId: user.id, code, settings: authenticator.settings, credentialId });
      await removeRequiredAction(page, 'CONFIGURE_TOTP');
      event('UPDATE_TOTP', { credential_type: 'otp', otp_type: data.subType });
      return 'done';
    }
    case 'UPDATE_PROFILE': {
      const email = text(form, 'email').trim();
      const firstName = text(form, 'firstName').trim();
      const lastName = text(form, 'lastName').trim();
      const errors: Record<string, string> = Object.fromEntries(Object.entries(profileFieldErrors({ email, firstName, lastName }))
        .map(([field, e]) => [field, t(e.key, ...e.params.map((p) => t(p)))]));
      if (!errors.email && !realm.settings.duplicateEmailsAllowed && email.toLowerCase() !== (user.email ?? '').toLowerCase()) {
        if (await emailTaken(realm.db, realm.id, email, user.id)) errors.email = t('emailExistsMessage');
      }
      if (Object.keys(errors).length > 0) {
        await renderRequiredAction(page, action, { errors, status: 400, form });
        return 'rendered';
      }
      const emailChanged = email.toLowerCase() !== (user.email ?? '').toLowerCase();
      await realm.db.updateTable('users').set({
        email: email.toLowerCase(), first_name: firstName, last_name: lastName, ...(emailChanged ? { email_verified: false } : {}),
      }).where('id', '=', user.id).execute();
      Object.assign(user, { email: email.toLowerCase(), first_name: firstName, last_name: lastName, ...(emailChanged ? { email_verified: false } : {}) });
      await removeRequiredAction(page, 'UPDATE_PROFILE');
      event('UPDATE_PROFILE', emailChanged ? { updated_email: email.toLowerCase() } : undefined);
      return 'done';
    }
    case 'TERMS_AND_CONDITIONS': {
      if (form.accept !== 'yes') {
        pages.deps.event(realm, { type: 'CUSTOM_REQUIRED_ACTION_ERROR', clientId: page.clientId, userId: user.id, ipAddress: ctx.ip, error: 'rejected_required_action', details: { custom_required_action: 'TERMS_AND_CONDITIONS' } });
        return 'cancelled';
      }
      const attributes = { ...user.attributes, terms_and_conditions: [String(Math.floor(Date.now() / 1000))] };
      await realm.db.updateTable('users').set({ attributes: JSON.stringify(attributes) }).where('id', '=', user.id).execute();
      user.attributes = attributes;
      await removeRequiredAction(page, 'TERMS_AND_CONDITIONS');
      event('CUSTOM_REQUIRED_ACTION', { custom_required_action: 'TERMS_AND_CONDITIONS' });
      return 'done';
    }
    case 'VERIFY_EMAIL': {
      if (form.resend === 'yes') {
        await sendVerificationEmail(pages, realm, user, page.issuer, locale, page.clientId);
        await renderRequiredAction(page, action, { message: { type: 'info', text: t('emailSentMessage') } });
        return 'rendered';
      }
      // The link in the e-mail marks the address verified; "continue" checks that it happened.
      const fresh = await realm.db.selectFrom('users').select(['email_verified', 'required_actions']).where('id', '=', user.id).executeTakeFirst();
      if (!fresh?.email_verified) {
        await renderRequiredAction(page, action, { message: { type: 'warning', text: t('emailVerifyInstruction1') }, status: 400 });
        return 'rendered';
      }
      user.email_verified = true;
      user.required_actions = fresh.required_actions;
      await removeRequiredAction(page, 'VERIFY_EMAIL');
      return 'done';
    }
    default:
      await pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
      return 'rendered';
  }
}

/** Called when a required action is first shown in a flow: VERIFY_EMAIL sends its e-mail then. */
export async function enterRequiredAction(page: ActionPageContext, action: string): Promise<void> {
  if (action === 'VERIFY_EMAIL' && page.user.email && !page.user.email_verified) {
    await sendVerificationEmail(page.pages, page.realm, page.user, page.issuer, page.locale, page.clientId);
  }
}

/**
 * The counter (HOTP) or time step (TOTP) at which an enrollment code matches, looking around as
 * the authenticator allows. Nothing is stored yet, so no replay check is needed here.
 */
function matchEnrollmentCode(secret: string, data: ReturnType<typeof newOtpCredentialData>, code: string, window: number): number | undefined {
  if (!/^\d{6,8}$/.test(code) || code.length !== data.digits) return undefined;
  if (data.subType === 'hotp') {
    for (let counter = data.counter; counter <= data.counter + window; counter++) {
      if (otpCode(secret, data, { counter }) === code) return counter;
    }
    return undefined;
  }
  const now = Date.now();
  for (let offset = -window; offset <= window; offset++) {
    const time = now + offset * data.period * 1000;
    if (otpCode(secret, data, { time }) === code) return Math.floor(time / 1000 / data.period);
  }
  return undefined;
}
