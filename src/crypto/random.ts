import crypto from 'node:crypto';

export const newId = (): string => crypto.randomUUID();

/** The form of a UUID (our ids): PostgreSQL refuses anything else in a uuid column. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A client secret as Keycloak generates them: 32 characters of [A-Za-z0-9]. */
export function newClientSecret(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(64);
  let out = '';
  for (const byte of bytes) {
    // 248 = 4 * 62: rejection sampling keeps every character equally likely.
    if (byte < 248) out += alphabet[byte % 62];
    if (out.length === 32) return out;
  }
  return out + newClientSecret().slice(out.length);
}

/** Constant-time comparison of two strings of any length. */
export function safeEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb) && a.length === b.length;
}
