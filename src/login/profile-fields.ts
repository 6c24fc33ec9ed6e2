// The fields of Keycloak's default user profile that the login pages ask for (registration and
// the Update Account Information page): e-mail, first and last name, all required, with its
// validators: an address the mailer can send to, and no characters Keycloak's
// person-name-prohibited-characters validator refuses in a name.

export type ProfileFields = { email: string; firstName: string; lastName: string };

/** A refused field: the message key and its arguments (the login pages translate them). */
export type FieldError = { key: string; params: string[] };

/** An address the mailer can send to (no spaces, brackets, commas, semicolons or quotes). */
export const EMAIL = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;

/** Keycloak's PersonNameProhibitedCharactersValidator: `<>&"$%!#?§;*~/\|^=[]{}()`, vertical whitespace and control characters. */
const PERSON_NAME = /^[^<>&"\n\v\f\r\u0085\u2028\u2029$%!#?§;*~/\\|^=[\]{}()\p{Cc}]+$/u;

/** Errors by field name (email, firstName, lastName); empty when all are fine. Values are trimmed already. */
export function profileFieldErrors(fields: ProfileFields): Record<string, FieldError> {
  const errors: Record<string, FieldError> = {};
  if (fields.email === '') errors.email = { key: 'missingEmailMessage', params: [] };
  else if (!EMAIL.test(fields.email)) errors.email = { key: 'invalidEmailMessage', params: [] };
  for (const [field, missing] of [['firstName', 'missingFirstNameMessage'], ['lastName', 'missingLastNameMessage']] as const) {
    const value = fields[field];
    if (value === '') errors[field] = { key: missing, params: [] };
    else if (!PERSON_NAME.test(value)) errors[field] = { key: 'error-person-name-invalid-character', params: [field] };
  }
  return errors;
}
