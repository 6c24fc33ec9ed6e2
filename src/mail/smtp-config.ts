// The realm's `smtpServer` map (Keycloak's Map<String,String>) at rest and on the way out. Its
// secrets never rest in clear: the SMTP `password` (basic authentication) and the OAuth2
// `authTokenClientSecret` (XOAUTH2, Keycloak 26.1+) are kept sealed under `<key>Sealed` (and no
// plain key), so a stored map tells sealed from plain by the key alone. Reads show them as
// Keycloak's mask or, for an export with secrets, opened; a write that sends the mask back keeps
// the stored one, but only for the same destination (the password for the same host and user, the
// client secret for the same token URL and client id: unlike Keycloak, a realm admin cannot have
// a stored secret sent to a server of their choosing). Maps stored before sealing (a plain
// `password`) are still read.
import type { SecretBox } from '../crypto/secret-box.ts';
import { SECRET_MASK } from '../store/sealed-config.ts';

/** Key of the sealed SMTP password inside the stored smtpServer map. */
export const SMTP_PASSWORD_SEALED = 'passwordSealed';

/** The map's secret keys, where each rests sealed, and the settings naming where it is sent. */
export const SMTP_SECRETS: ReadonlyArray<{ key: string; sealedKey: string; destination: readonly string[] }> = [
  { key: 'password', sealedKey: SMTP_PASSWORD_SEALED, destination: ['host', 'user'] },
  { key: 'authTokenClientSecret', sealedKey: 'authTokenClientSecretSealed', destination: ['authTokenUrl', 'authTokenClientId'] },
];

type SmtpMap = Record<string, unknown>;

export const isSmtpMap = (value: unknown): value is SmtpMap => typeof value === 'object' && value !== null && !Array.isArray(value);

const present = (value: unknown): value is string => typeof value === 'string' && value !== '';

/** A secret of a stored map, sealed: the sealed one, or a legacy plain one sealed now. */
function storedSealed(box: SecretBox, stored: unknown, secret: { key: string; sealedKey: string }): string | undefined {
  if (!isSmtpMap(stored)) return undefined;
  if (present(stored[secret.sealedKey])) return stored[secret.sealedKey] as string;
  const plain = stored[secret.key];
  return present(plain) && plain !== SECRET_MASK ? box.seal(plain) : undefined;
}

/** Whether `incoming` sends a secret where `previous` sent it (the same values of its destination settings). */
export function sameSmtpDestination(incoming: SmtpMap, previous: unknown, secretKey: string): boolean {
  const secret = SMTP_SECRETS.find((s) => s.key === secretKey);
  if (!secret || !isSmtpMap(previous)) return false;
  const value = (map: SmtpMap, key: string): string => (typeof map[key] === 'string' ? (map[key] as string).trim().toLowerCase() : '');
  return secret.destination.every((key) => value(incoming, key) === value(previous, key));
}

/**
 * An incoming smtpServer map (Admin API, realm import) as it is stored: each secret sealed under
 * its `<key>Sealed`; the mask keeps `previous`'s for the same destination (none otherwise). Sealed
 * keys sent by a caller are dropped: only the server writes them.
 */
export function sealSmtpServer(box: SecretBox, incoming: SmtpMap, previous?: unknown): SmtpMap {
  const out: SmtpMap = { ...incoming };
  for (const secret of SMTP_SECRETS) {
    const given = out[secret.key];
    delete out[secret.key];
    delete out[secret.sealedKey];
    const kept = given === SECRET_MASK && sameSmtpDestination(incoming, previous, secret.key) ? storedSealed(box, previous, secret) : undefined;
    const sealed = given === SECRET_MASK ? kept : present(given) ? box.seal(given) : undefined;
    if (sealed !== undefined) out[secret.sealedKey] = sealed;
  }
  return out;
}

/** A stored map as the Admin API shows it: each secret (if any) as the mask. */
export function maskedSmtpServer(stored: SmtpMap): SmtpMap {
  const out: SmtpMap = { ...stored };
  for (const secret of SMTP_SECRETS) {
    const has = present(out[secret.sealedKey]) || present(out[secret.key]);
    delete out[secret.key];
    delete out[secret.sealedKey];
    if (has) out[secret.key] = SECRET_MASK;
  }
  return out;
}

/** A stored map with its secrets opened (exports with secrets). */
export function openSmtpServer(box: SecretBox, stored: SmtpMap): SmtpMap {
  const out: SmtpMap = { ...stored };
  for (const secret of SMTP_SECRETS) {
    const sealed = out[secret.sealedKey];
    delete out[secret.sealedKey];
    if (present(sealed)) out[secret.key] = box.open(sealed);
  }
  return out;
}

/** A secret of a stored (or posted) map in clear: opened from `<key>Sealed`, or a plain non-mask value. */
export function smtpSecret(map: SmtpMap, key: string, open: (sealed: string) => string): string | undefined {
  const secret = SMTP_SECRETS.find((s) => s.key === key);
  const sealed = secret ? map[secret.sealedKey] : undefined;
  if (present(sealed)) return open(sealed);
  const plain = map[key];
  return present(plain) && plain !== SECRET_MASK ? plain : undefined;
}
