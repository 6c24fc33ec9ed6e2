// E-mailed action links: a fresh action token, its link ({issuer}/login-actions/action-token?key=...)
// and the realm e-mail that carries it. Used by the forgot-password page, the VERIFY_EMAIL required
// action and the Admin API's execute-actions-email / send-verify-email.
import type { Mailer, EmailTemplate } from '../mail/mailer.ts';
import type { RealmContext } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { createActionToken, type ActionTokenKind } from './action-tokens.ts';

/** Path under the issuer of the page that handles every action link. */
export const ACTION_TOKEN_PATH = '/login-actions/action-token';

/** What an action token carries besides its user (the token row's `payload`). */
export type ActionTokenPayload = {
  /** The address the link was sent to: the link dies if the user's e-mail changes. */
  email: string;
  /** execute-actions: the required actions asked for, and those done so far. */
  actions?: string[];
  done?: string[];
  clientId?: string;
  /** Where "Back to application" leads once done (validated against the client when issued). */
  redirectUri?: string;
};

const TEMPLATE_OF: Record<ActionTokenKind, EmailTemplate> = {
  'reset-credentials': 'password-reset',
  'execute-actions': 'execute-actions',
  'verify-email': 'email-verification',
};

export function actionTokenLink(issuer: string, token: string): string {
  return `${issuer}${ACTION_TOKEN_PATH}?key=${encodeURIComponent(token)}`;
}

/**
 * The language of e-mails not asked for from a page (admin-sent): the user's `locale` attribute
 * when the realm has internationalization on, else the realm default (as Keycloak).
 */
export function userLocale(realm: RealmContext, user: Pick<User, 'attributes'>): string {
  const fallback = realm.settings.defaultLocale || 'en';
  if (!realm.settings.internationalizationEnabled) return fallback;
  const wanted = user.attributes?.locale?.[0];
  const supported = realm.settings.supportedLocales;
  return wanted && supported.some((s) => s.toLowerCase() === wanted.toLowerCase()) ? wanted : fallback;
}

export type ActionEmail = {
  kind: ActionTokenKind;
  lifespanSeconds: number;
  locale: string;
  actions?: string[];
  clientId?: string;
  redirectUri?: string;
};

/**
 * Creates the token and sends its e-mail to the user's address. Throws MailError when sending
 * fails (the token then simply expires unused). The user must have an e-mail address.
 */
export async function sendActionEmail(mailer: Mailer, realm: RealmContext, issuer: string, user: User, email: ActionEmail): Promise<void> {
  if (!user.email) throw new Error('the user has no e-mail address');
  const payload: ActionTokenPayload = {
    email: user.email,
    ...(email.actions ? { actions: email.actions, done: [] } : {}),
    ...(email.clientId ? { clientId: email.clientId } : {}),
    ...(email.redirectUri ? { redirectUri: email.redirectUri } : {}),
  };
  const token = await createActionToken(realm.db, realm.box, {
    realmId: realm.id, userId: user.id, kind: email.kind, payload, lifespanSeconds: email.lifespanSeconds,
  });
  await mailer.send(realm, {
    to: user.email,
    template: TEMPLATE_OF[email.kind],
    locale: email.locale,
    data: {
      realmName: realm.name,
      ...(realm.realm.display_name ? { realmDisplayName: realm.realm.display_name } : {}),
      user: { username: user.username, firstName: user.first_name, lastName: user.last_name, email: user.email },
      link: actionTokenLink(issuer, token),
      linkExpirationMinutes: Math.floor(email.lifespanSeconds / 60),
      ...(email.actions ? { requiredActions: email.actions } : {}),
    },
  });
}

/**
 * A link's lifespan in seconds: the realm attribute `actionTokenGeneratedByUserLifespan.<kind>`
 * (Keycloak's per-token-type override) or the realm setting, with Keycloak's defaults.
 */
export function actionTokenLifespan(realm: RealmContext, generatedBy: 'user' | 'admin', kind?: ActionTokenKind): number {
  const key = generatedBy === 'user' ? 'actionTokenGeneratedByUserLifespan' : 'actionTokenGeneratedByAdminLifespan';
  const seconds = (value: unknown): number | undefined => {
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined;
  };
  const override = kind === undefined ? undefined : seconds(realm.settings.attributes[`${key}.${kind}`]);
  return override ?? seconds((realm.realm.settings as Record<string, unknown>)[key]) ?? (generatedBy === 'user' ? 300 : 43200);
}
