// E-mail verification during login (the VERIFY_EMAIL required action): a single-use link to
// {issuer}/login-actions/action-token (action-token-page.ts marks the address verified), valid
// for the realm's actionTokenGeneratedByUserLifespan.
import type { RealmContext } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { actionTokenLifespan, sendActionEmail } from './action-emails.ts';
import type { LoginPages } from './routes.ts';

/** Sends the verification mail in the background; a failure is logged (the page offers a resend). */
export async function sendVerificationEmail(pages: LoginPages, realm: RealmContext, user: User, issuer: string, locale: string, clientId?: string): Promise<void> {
  if (!user.email) return;
  pages.deps.event(realm, { type: 'SEND_VERIFY_EMAIL', clientId, userId: user.id, details: { email: user.email } });
  sendActionEmail(pages.deps.mailer, realm, issuer, user, {
    kind: 'verify-email', lifespanSeconds: actionTokenLifespan(realm, 'user', 'verify-email'), locale, ...(clientId ? { clientId } : {}),
  }).catch((err: unknown) => pages.deps.logger.warn({ err, realm: realm.name, userId: user.id }, 'could not send the verification e-mail'));
}
