// Keycloak's self-registration (realm `registrationAllowed`): the "Register" page behind the login
// page's link, the registrations endpoint and prompt=create. The fields are those of Keycloak's
// default user profile (username unless the e-mail is the username, e-mail, first and last name,
// all required) and the password twice; the new user gets what an admin-created one gets (default
// role, default groups, the realm's default required actions) and signs in at once.
import { newId } from '../crypto/random.ts';
import { giveNewUserDefaults } from '../realms/new-users.ts';
import type { RealmContext } from '../realms/context.ts';
import type { User } from '../store/schema.ts';
import { emailTaken, findUserById, usernameTaken } from '../store/users.ts';
import { loginAuthenticatorFor, type EffectiveAuthenticator } from './login-authenticators.ts';
import { changePassword, type PasswordChangeResult } from './password-change.ts';
import { profileFieldErrors, type FieldError } from './profile-fields.ts';
import { defaultActionsForNewUser } from './required-actions.ts';

export type RegistrationInput = {
  username: string;
  email: string;
  firstName: string;
  lastName: string;
  password: string;
  passwordConfirm: string;
};

/** What the page shows again after a refusal: the values typed (never the passwords). */
export type RegistrationValues = Omit<RegistrationInput, 'password' | 'passwordConfirm'>;

export type RegistrationOutcome =
  | { ok: true; user: User; authenticator: EffectiveAuthenticator }
  /** Field errors as message keys with their arguments, and Keycloak's REGISTER_ERROR error. */
  | { ok: false; errors: Record<string, FieldError>; error: 'invalid_registration' | 'username_in_use' | 'email_in_use' };

const MAX_FIELD = 255;

/** Thrown inside the creating transaction to undo it when the password breaks the new user's rules. */
class PasswordRefused extends Error {
  readonly violation: Extract<PasswordChangeResult, { ok: false }>['violation'];
  constructor(violation: Extract<PasswordChangeResult, { ok: false }>['violation']) {
    super(violation.messageKey);
    this.violation = violation;
  }
}

/** Reads the form's fields (trimmed, bounded) as Keycloak's register form names them. */
export function registrationInput(form: Record<string, unknown>, emailAsUsername: boolean): RegistrationInput {
  const field = (name: string, max = MAX_FIELD): string => (typeof form[name] === 'string' ? (form[name] as string).slice(0, max) : '');
  const email = field('email').trim().toLowerCase();
  return {
    username: emailAsUsername ? email : field('username').trim().toLowerCase(),
    email,
    firstName: field('firstName').trim(),
    lastName: field('lastName').trim(),
    password: field('password', 1024),
    passwordConfirm: field('password-confirm', 1024),
  };
}

/** Validates and creates the user with their password, in one transaction; nothing is stored on a refusal. */
export async function registerUser(realm: RealmContext, input: RegistrationInput): Promise<RegistrationOutcome> {
  const emailAsUsername = realm.settings.registrationEmailAsUsername;
  const errors: Record<string, FieldError> = {};
  const refuse = (field: string, key: string, ...params: string[]): void => { errors[field] ??= { key, params }; };
  if (!emailAsUsername && input.username === '') refuse('username', 'missingUsernameMessage');
  Object.assign(errors, profileFieldErrors(input));
  if (input.password === '') refuse('password', 'missingPasswordMessage');
  else if (input.password !== input.passwordConfirm) refuse('password-confirm', 'notMatchPasswordMessage');
  if (Object.keys(errors).length > 0) return { ok: false, errors, error: 'invalid_registration' };

  // With the e-mail as username, a taken username is a taken address.
  const usernameInUse: RegistrationOutcome = emailAsUsername
    ? { ok: false, errors: { email: { key: 'emailExistsMessage', params: [] } }, error: 'username_in_use' }
    : { ok: false, errors: { username: { key: 'usernameExistsMessage', params: [] } }, error: 'username_in_use' };
  if (await usernameTaken(realm.db, realm.id, input.username)) return usernameInUse;
  if (!realm.settings.duplicateEmailsAllowed && await emailTaken(realm.db, realm.id, input.email)) {
    return { ok: false, errors: { email: { key: 'emailExistsMessage', params: [] } }, error: 'email_in_use' };
  }

  const id = newId();
  try {
    await realm.db.transaction().execute(async (trx) => {
      await trx.insertInto('users').values({
        id, realm_id: realm.id, username: input.username, email: input.email, email_verified: false, enabled: true,
        first_name: input.firstName, last_name: input.lastName, federation_link: null, service_account_client_id: null, application: false,
        attributes: JSON.stringify({}), required_actions: JSON.stringify(defaultActionsForNewUser(realm.realm.settings)),
      }).execute();
      await giveNewUserDefaults(trx, realm.realm, id);
      // The rules of the login authenticator the new user falls under (a default group's, the realm's).
      const user = await trx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      const authenticator = await loginAuthenticatorFor(trx, realm.realm, user);
      const changed = await changePassword(trx, realm.realm, user, input.password, authenticator.settings, { box: realm.box });
      if (!changed.ok) throw new PasswordRefused(changed.violation);
    });
  } catch (error) {
    if (error instanceof PasswordRefused) {
      return { ok: false, errors: { password: { key: error.violation.messageKey, params: error.violation.params } }, error: 'invalid_registration' };
    }
    // The same username or e-mail registered a moment ago by another request.
    if ((error as { code?: unknown }).code === '23505') return usernameInUse;
    throw error;
  }
  const user = (await findUserById(realm.db, realm.id, id))!;
  return { ok: true, user, authenticator: await loginAuthenticatorFor(realm.db, realm.realm, user) };
}
