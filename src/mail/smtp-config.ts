// The realm's `smtpServer` map (Keycloak's Map<String,String>) at rest and on the way out. The
// password never rests in clear: realms.settings keeps it sealed under `passwordSealed` (and no
// `password` key), so a stored map tells sealed from plain by the key alone. Reads show it as
// Keycloak's mask or, for an export with secrets, opened; a write that sends the mask back keeps
// the stored one. Maps stored before sealing (a plain `password`) are still read.
import type { SecretBox } from '../crypto/secret-box.ts';
import { SECRET_MASK } from '../store/sealed-config.ts';

/** Key of the sealed SMTP password inside the stored smtpServer map. */
export const SMTP_PASSWORD_SEALED = 'passwordSealed';

type SmtpMap = Record<string, unknown>;

export const isSmtpMap = (value: unknown): value is SmtpMap => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The stored password of a stored map: sealed, or a legacy plain one sealed now. */
function storedSealedPassword(box: SecretBox, stored: unknown): string | undefined {
  if (!isSmtpMap(stored)) return undefined;
  const sealed = stored[SMTP_PASSWORD_SEALED];
  if (typeof sealed === 'string' && sealed !== '') return sealed;
  const plain = stored.password;
  return typeof plain === 'string' && plain !== '' && plain !== SECRET_MASK ? box.seal(plain) : undefined;
}

/**
 * An incoming smtpServer map (Admin API, realm import) as it is stored: `password` sealed under
 * `passwordSealed`; the mask keeps `previous`'s password (none without one). A `passwordSealed`
 * sent by a caller is dropped: only the server writes it.
 */
export function sealSmtpServer(box: SecretBox, incoming: SmtpMap, previous?: unknown): SmtpMap {
  const { password, [SMTP_PASSWORD_SEALED]: _ignored, ...rest } = incoming;
  let sealed: string | undefined;
  if (password === SECRET_MASK) sealed = storedSealedPassword(box, previous);
  else if (typeof password === 'string' && password !== '') sealed = box.seal(password);
  return sealed === undefined ? rest : { ...rest, [SMTP_PASSWORD_SEALED]: sealed };
}

/** A stored map as the Admin API shows it: the password (if any) as the mask. */
export function maskedSmtpServer(stored: SmtpMap): SmtpMap {
  const { password, [SMTP_PASSWORD_SEALED]: sealed, ...rest } = stored;
  const hasPassword = (typeof sealed === 'string' && sealed !== '') || (typeof password === 'string' && password !== '');
  return hasPassword ? { ...rest, password: SECRET_MASK } : rest;
}

/** A stored map with its password opened (exports with secrets). */
export function openSmtpServer(box: SecretBox, stored: SmtpMap): SmtpMap {
  const { password, [SMTP_PASSWORD_SEALED]: sealed, ...rest } = stored;
  if (typeof sealed === 'string' && sealed !== '') return { ...rest, password: box.open(sealed) };
  return password === undefined ? rest : { ...rest, password };
}
