// Access keys: a public key id and a secret, both Base32 of 32 random bytes (as CXone issues
// them). Only an HMAC-SHA256 digest of the secret is stored, under a key derived from the master
// key (so a realm export carries digests that verify on any server sharing that master key).
// Verification costs the same for unknown keys, wrong secrets and good ones.
import crypto from 'node:crypto';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import type { AccessKey } from '../store/schema.ts';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 Base32 without padding. */
export function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The shape of a key id or secret: 52 Base32 characters. */
export const ACCESS_KEY_PATTERN = /^[A-Z2-7]{52}$/;

export function generateAccessKey(): { id: string; secret: string } {
  return { id: base32(crypto.randomBytes(32)), secret: base32(crypto.randomBytes(32)) };
}

/** The digest key per master key, derived once (HKDF on every request cost ~5 % of an exchange). */
const digestKeys = new WeakMap<SecretBox, crypto.KeyObject>();

export function digestSecret(box: SecretBox, secret: string): string {
  let key = digestKeys.get(box);
  if (!key) {
    key = crypto.createSecretKey(box.derive('access-key-secret'));
    digestKeys.set(box, key);
  }
  return crypto.createHmac('sha256', key).update(secret, 'utf8').digest('base64url');
}

/** Compared when no key matched, so an unknown key id costs what a wrong secret costs. */
const DUMMY_DIGEST = crypto.createHash('sha256').update('no such access key').digest('base64url');

export type AccessKeyFailure = 'unknown_key' | 'wrong_secret' | 'key_disabled' | 'key_expired' | 'user_disabled';

/**
 * Checks a presented key id and secret against a stored key row (undefined: no such key in this
 * realm). Always computes and compares one digest.
 */
export function checkAccessKey(box: SecretBox, stored: Pick<AccessKey, 'secret_digest' | 'enabled' | 'expires_at'> | undefined, secret: string, userEnabled: boolean, now = new Date()): AccessKeyFailure | undefined {
  const presented = Buffer.from(digestSecret(box, secret));
  const expected = Buffer.from(stored?.secret_digest ?? DUMMY_DIGEST);
  const matches = presented.length === expected.length && crypto.timingSafeEqual(presented, expected);
  if (!stored) return 'unknown_key';
  if (!matches) return 'wrong_secret';
  if (!stored.enabled) return 'key_disabled';
  if (stored.expires_at && new Date(stored.expires_at).getTime() <= now.getTime()) return 'key_expired';
  if (!userEnabled) return 'user_disabled';
  return undefined;
}

/** A key of `realmId` by id, with its user's enabled flag. */
export async function findAccessKey(db: Db, realmId: string, keyId: string): Promise<(AccessKey & { user_enabled: boolean }) | undefined> {
  if (!ACCESS_KEY_PATTERN.test(keyId)) return undefined;
  return db.selectFrom('access_keys').innerJoin('users', 'users.id', 'access_keys.user_id')
    .selectAll('access_keys').select('users.enabled as user_enabled')
    .where('access_keys.realm_id', '=', realmId).where('access_keys.id', '=', keyId)
    .executeTakeFirst();
}

/**
 * Last-used times without a write per request: each key is written at most once a minute per
 * instance, off the request path.
 */
export class LastUsedRecorder {
  readonly #db: Db;
  readonly #written = new Map<string, number>();
  readonly #intervalMs: number;

  constructor(db: Db, intervalMs = 60_000) {
    this.#db = db;
    this.#intervalMs = intervalMs;
  }

  used(keyId: string, onError: (error: unknown) => void): void {
    const now = Date.now();
    const last = this.#written.get(keyId);
    if (last !== undefined && now - last < this.#intervalMs) return;
    this.#written.set(keyId, now);
    if (this.#written.size > 100_000) this.#written.clear(); // bounded: worst case one extra write per key
    this.#db.updateTable('access_keys').set({ last_used_at: new Date(now) }).where('id', '=', keyId).execute().catch(onError);
  }
}
