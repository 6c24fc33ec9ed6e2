// The page behind every e-mailed link: {issuer}/login-actions/action-token?key=... It needs no
// login interaction (the link may be opened in another browser); the token is the credential.
//   reset-credentials  GET: new-password page; POST: password changed, link used up.
//   execute-actions    GET: "perform the following actions" + proceed; POST: each action's page in
//                      turn (progress kept in the token row), then the link is used up.
//   verify-email       GET: "confirm e-mail address" + proceed; POST: address verified, link used up.
// GETs change nothing (mail scanners fetch links); forms carry the key and a CSRF token bound to the
// token's digest. Every unusable link (unknown, expired, used, user disabled or e-mail changed)
// gets the same error page.
import type { Context } from 'koa';
import { z } from 'zod';

import { BodyError, readForm } from '../http/body.ts';
import type { RealmContext } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { findUserById } from '../store/users.ts';
import { ACTION_TOKEN_PATH } from './action-emails.ts';
import { consumeActionToken, findActionToken, invalidateActionTokens, updateActionTokenPayload, type ActionToken } from './action-tokens.ts';
import { loginAuthenticatorFor } from './login-authenticators.ts';
import { pendingRequiredActions, renderRequiredAction, submitRequiredAction, type ActionPageContext } from './required-action-pages.ts';
import { SUPPORTED_REQUIRED_ACTIONS } from './required-actions.ts';
import type { LoginPages } from './routes.ts';

const payloadSchema = z.object({
  email: z.string(),
  actions: z.array(z.string()).optional(),
  done: z.array(z.string()).optional(),
  clientId: z.string().optional(),
  redirectUri: z.string().optional(),
});
type Payload = z.infer<typeof payloadSchema>;

/** Keycloak's event type of each kind of link. */
const EVENT_OF: Record<string, string> = {
  'reset-credentials': 'RESET_PASSWORD',
  'execute-actions': 'EXECUTE_ACTIONS',
  'verify-email': 'VERIFY_EMAIL',
};

/** Marks the address verified; VERIFY_EMAIL has nothing left to ask. */
async function markEmailVerified(realm: RealmContext, user: User): Promise<void> {
  const actions = user.required_actions.filter((a) => a !== 'VERIFY_EMAIL');
  await realm.db.updateTable('users').set({ email_verified: true, required_actions: JSON.stringify(actions) }).where('id', '=', user.id).execute();
  user.email_verified = true;
  user.required_actions = actions;
}

export function createActionTokenPage(pages: LoginPages) {
  const { deps } = pages;

  /** Handles GET/POST {issuer}/login-actions/action-token. */
  return async function actionTokenPage(ctx: Context, realm: RealmContext, issuer: string): Promise<void> {
    const isPost = ctx.method === 'POST';
    if (!isPost && ctx.method !== 'GET' && ctx.method !== 'HEAD') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 405);
    const locale = pages.locale(realm, ctx);
    const t = (key: string, ...args: string[]): string => deps.pages.t(locale, key, ...args);

    let form: Record<string, unknown> = {};
    if (isPost) {
      try {
        form = await readForm(ctx);
      } catch (error) {
        if (error instanceof BodyError) return pages.errorPage(ctx, realm, 'invalidRequestMessage', error.status, locale);
        throw error;
      }
    }
    const query = ctx.query.key;
    const key = typeof form.key === 'string' ? form.key : typeof query === 'string' ? query : undefined;

    const unusable = (type: string, error: string, userId?: string): Promise<void> => {
      deps.event(realm, { type, userId, ipAddress: ctx.ip, error });
      return pages.errorPage(ctx, realm, 'expiredActionTokenNoSessionMessage', 400, locale);
    };
    const token = await findActionToken(realm.db, realm.box, realm.id, key);
    if (!token || key === undefined) return unusable('EXECUTE_ACTION_TOKEN_ERROR', 'invalid_code');
    const eventType = EVENT_OF[token.kind] ?? 'EXECUTE_ACTION_TOKEN';
    const parsed = payloadSchema.safeParse(token.payload);
    if (!parsed.success) return unusable(`${eventType}_ERROR`, 'invalid_code', token.user_id);
    const payload = parsed.data;
    const user = await findUserById(realm.db, realm.id, token.user_id);
    if (!user) return unusable(`${eventType}_ERROR`, 'user_not_found', token.user_id);
    if (!user.enabled) return unusable(`${eventType}_ERROR`, 'user_disabled', user.id);
    // The link went to one address: once the user's address changes, it no longer speaks for them.
    if (!user.email || user.email.toLowerCase() !== payload.email.toLowerCase()) return unusable(`${eventType}_ERROR`, 'invalid_email', user.id);

    const csrf = pages.csrfToken(realm, token.digest);
    if (isPost && !pages.csrfValid(realm, token.digest, form.csrf)) {
      deps.event(realm, { type: `${eventType}_ERROR`, userId: user.id, ipAddress: ctx.ip, error: 'invalid_code', details: { reason: 'csrf token missing or wrong' } });
      return pages.errorPage(ctx, realm, 'pageExpiredMessage1', 403, locale);
    }
    const formAction = `${new URL(issuer).pathname}${ACTION_TOKEN_PATH}`;
    const event = (type: string, details: Record<string, unknown> = {}): void =>
      deps.event(realm, { type, clientId: payload.clientId, userId: user.id, ipAddress: ctx.ip, details: { email: user.email, ...details } });
    const finished = (messageKey: string): Promise<void> =>
      pages.render(ctx, realm, 'info', {
        locale, message: { type: 'success', text: t(messageKey) }, ...(payload.redirectUri ? { redirectUrl: payload.redirectUri } : {}),
      });
    /** Uses up the link; false (error page shown) when another request used it first or it just expired. */
    const consume = async (): Promise<boolean> => {
      if (await consumeActionToken(realm.db, token.digest)) return true;
      await unusable(`${eventType}_ERROR`, 'expired_code', user.id);
      return false;
    };

    switch (token.kind) {
      case 'reset-credentials': {
        const authenticator = await loginAuthenticatorFor(realm.db, realm.realm, user);
        const page: ActionPageContext = {
          pages, ctx, realm, issuer, user, authenticator, locale, csrf, formAction,
          hidden: { key, requiredAction: 'UPDATE_PASSWORD' }, ...(payload.clientId ? { clientId: payload.clientId } : {}),
        };
        if (!isPost) return renderRequiredAction(page, 'UPDATE_PASSWORD');
        // Rule violations re-render the page and keep the link usable.
        if (await submitRequiredAction(page, 'UPDATE_PASSWORD', form) !== 'done') return;
        if (!await consume()) return;
        // The link reached the user's mailbox: the address is proven.
        await markEmailVerified(realm, user);
        await invalidateActionTokens(realm.db, user.id, 'reset-credentials');
        event('RESET_PASSWORD');
        return finished('accountPasswordUpdatedMessage');
      }
      case 'verify-email': {
        if (!isPost || form.confirm !== 'yes') {
          return pages.render(ctx, realm, 'login-action-confirm', {
            locale, csrf, actions: { submit: formAction }, hidden: { key },
            message: { type: 'info', text: t('confirmEmailAddressVerification', user.email) },
          });
        }
        if (!await consume()) return;
        await markEmailVerified(realm, user);
        await invalidateActionTokens(realm.db, user.id, 'verify-email');
        event('VERIFY_EMAIL');
        return finished('emailVerifiedMessage');
      }
      case 'execute-actions':
        return executeActions(token, payload, user, csrf, formAction, key);
      default:
        return unusable('EXECUTE_ACTION_TOKEN_ERROR', 'invalid_code', user.id);
    }

    async function executeActions(row: ActionToken, state: Payload, user: User, csrf: string, formAction: string, key: string): Promise<void> {
      const requested = state.actions ?? [];
      const done = new Set(state.done ?? []);
      if (requested.some((a) => !(SUPPORTED_REQUIRED_ACTIONS as readonly string[]).includes(a))) {
        deps.event(realm, { type: 'EXECUTE_ACTIONS_ERROR', userId: user.id, ipAddress: ctx.ip, error: 'resolve_required_actions' });
        return pages.errorPage(ctx, realm, 'invalidTokenRequiredActions', 400, locale);
      }
      const started = isPost && (form.confirm === 'yes' || typeof form.requiredAction === 'string');
      if (!started) {
        const names = requested.map((a) => t(`requiredAction.${a}`)).join(', ');
        return pages.render(ctx, realm, 'login-action-confirm', {
          locale, csrf, actions: { submit: formAction }, hidden: { key },
          message: { type: 'info', text: t('confirmExecutionOfActions', names) },
        });
      }
      const authenticator = await loginAuthenticatorFor(realm.db, realm.realm, user);
      const page: ActionPageContext = {
        pages, ctx, realm, issuer, user, authenticator, locale, csrf, formAction, ...(state.clientId ? { clientId: state.clientId } : {}),
      };
      const save = async (): Promise<boolean> => {
        // The address may change on the way (UPDATE_PROFILE): the link keeps following its user.
        if (await updateActionTokenPayload(realm.db, row.digest, { ...state, email: user.email ?? state.email, done: [...done] })) return true;
        await unusable('EXECUTE_ACTIONS_ERROR', 'expired_code', user.id);
        return false;
      };

      // Opening the link proved the address (Keycloak does the same): VERIFY_EMAIL is done by it.
      if (!user.email_verified || (requested.includes('VERIFY_EMAIL') && !done.has('VERIFY_EMAIL'))) {
        await markEmailVerified(realm, user);
        if (requested.includes('VERIFY_EMAIL') && !done.has('VERIFY_EMAIL')) {
          done.add('VERIFY_EMAIL');
          event('VERIFY_EMAIL');
          if (!await save()) return;
        }
      }

      const remaining = (): string[] => requested.filter((a) => !done.has(a));
      let [current] = await pendingRequiredActions(realm, user, authenticator, remaining());
      // A stale form (another tab already did that step) just shows what is due now.
      if (current !== undefined && form.requiredAction === current) {
        const outcome = await submitRequiredAction({ ...page, hidden: { key, requiredAction: current } }, current, form);
        if (outcome === 'rendered') return;
        if (outcome === 'cancelled') return pages.errorPage(ctx, realm, 'accountNotSetUpMessage', 403, locale);
        done.add(current);
        if (!await save()) return;
        [current] = await pendingRequiredActions(realm, user, authenticator, remaining());
      }
      if (current !== undefined) return renderRequiredAction({ ...page, hidden: { key, requiredAction: current } }, current);
      if (!await consume()) return;
      event('EXECUTE_ACTIONS', { required_actions: requested.join(',') });
      return finished('accountUpdatedMessage');
    }
  };
}
