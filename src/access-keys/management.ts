// Managing a user's access keys, shared by the Admin API (src/admin/access-keys.ts) and the
// self-service endpoint (self-service.ts): create (the secret is returned once, only its digest is
// stored), list, read, enable/disable and relabel, delete. A user holds at most N active keys
// (enabled and unexpired; realm attribute cloakroom.accessKeys.maxActivePerUser, default 2: one
// in use and its successor while integrations rotate).
import { z } from 'zod';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import type { AccessKey } from '../store/schema.ts';
import { ACCESS_KEY_PATTERN, digestSecret, generateAccessKey } from './access-keys.ts';

export const MAX_ACTIVE_ATTRIBUTE = 'cloakroom.accessKeys.maxActivePerUser';
export const DEFAULT_MAX_ACTIVE = 2;

/** Latest accepted expiry (JavaScript's largest Date). */
const MAX_EPOCH_MS = 8.64e15;

/** Why an operation was refused; each caller answers it in its own error shape. */
export class AccessKeyError extends Error {
  readonly reason: 'invalid' | 'not_found' | 'limit';
  constructor(reason: 'invalid' | 'not_found' | 'limit', message: string) {
    super(message);
    this.reason = reason;
  }
}

/** What lists and reads show of a key: never the secret nor its digest. Times in epoch ms. */
export type AccessKeyRepresentation = {
  id: string;
  label: string | null;
  createdAt: number;
  lastUsedAt: number | null;
  expiresAt: number | null;
  enabled: boolean;
};

/** The answer to a create: the only time the secret is ever shown. */
export type NewAccessKeyRepresentation = Omit<AccessKeyRepresentation, 'lastUsedAt'> & { secret: string };

const epochMs = (value: Date | string | null): number | null => (value === null ? null : new Date(value).getTime());

export function accessKeyRepresentation(row: AccessKey): AccessKeyRepresentation {
  return {
    id: row.id, label: row.label, createdAt: epochMs(row.created_at)!, lastUsedAt: epochMs(row.last_used_at),
    expiresAt: epochMs(row.expires_at), enabled: row.enabled,
  };
}

const label = z.string().max(255).refine((s) => !s.includes('\0'), 'must not contain NUL characters');

/** POST body: an optional label and expiry (epoch ms or an ISO 8601 date-time). */
export const newAccessKeyRep = z.object({
  label: label.nullish(),
  expiresAt: z.union([z.number(), z.string()]).nullish(),
}).loose();
export type NewAccessKeyInput = z.infer<typeof newAccessKeyRep>;

/** PUT body: absent fields keep their value; `label: null` or "" clears the label. */
export const accessKeyUpdateRep = z.object({
  enabled: z.boolean().nullish(),
  label: label.nullish(),
}).loose();
export type AccessKeyUpdateInput = z.infer<typeof accessKeyUpdateRep>;

/** The realm's limit of active keys per user (a non-negative integer attribute, else the default). */
export function maxActiveKeys(settings: { attributes?: Record<string, unknown> }): number {
  const value = settings.attributes?.[MAX_ACTIVE_ATTRIBUTE];
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  return Number.isInteger(n) && n >= 0 ? n : DEFAULT_MAX_ACTIVE;
}

function parseExpiry(value: number | string | null | undefined, now: Date): Date | null {
  if (value === undefined || value === null) return null;
  const ms = typeof value === 'number' ? value : /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms) || (typeof value === 'number' && !Number.isInteger(ms)) || Math.abs(ms) > MAX_EPOCH_MS) {
    throw new AccessKeyError('invalid', "Invalid value for field 'expiresAt': expected epoch milliseconds or an ISO 8601 date-time");
  }
  if (ms <= now.getTime()) throw new AccessKeyError('invalid', "Invalid value for field 'expiresAt': must be in the future");
  return new Date(ms);
}

const limitMessage = (max: number): string => `User already has the maximum number of active access keys (${max})`;

/**
 * Locks the user's row for the rest of the transaction, so that two concurrent creates (or
 * enables) of one user are counted one after the other. Throws not_found when the user is gone.
 */
async function lockUser(trx: Db, realmId: string, userId: string): Promise<void> {
  const user = await trx.selectFrom('users').select('id').where('realm_id', '=', realmId).where('id', '=', userId)
    .forUpdate().executeTakeFirst();
  if (!user) throw new AccessKeyError('not_found', 'User not found');
}

async function countActive(trx: Db, userId: string, now: Date, exceptKeyId?: string): Promise<number> {
  let query = trx.selectFrom('access_keys').select((eb) => eb.fn.countAll().as('count'))
    .where('user_id', '=', userId).where('enabled', '=', true)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
  if (exceptKeyId) query = query.where('id', '!=', exceptKeyId);
  const { count } = await query.executeTakeFirstOrThrow();
  return Number(count);
}

export type KeyRealm = { id: string; settings: { attributes?: Record<string, unknown> } };

/** Creates a key for a user of `realm`; the returned secret is not stored anywhere. */
export async function createAccessKey(db: Db, box: SecretBox, realm: KeyRealm, userId: string, input: NewAccessKeyInput): Promise<NewAccessKeyRepresentation> {
  const now = new Date();
  const expiresAt = parseExpiry(input.expiresAt, now);
  const max = maxActiveKeys(realm.settings);
  const { id, secret } = generateAccessKey();
  const row = await db.transaction().execute(async (trx) => {
    await lockUser(trx, realm.id, userId);
    if (await countActive(trx, userId, now) >= max) throw new AccessKeyError('limit', limitMessage(max));
    return trx.insertInto('access_keys').values({
      id, realm_id: realm.id, user_id: userId, secret_digest: digestSecret(box, secret),
      label: input.label ? input.label : null, enabled: true, created_at: now, expires_at: expiresAt,
    }).returningAll().executeTakeFirstOrThrow();
  });
  const { lastUsedAt: _never, ...rep } = accessKeyRepresentation(row);
  return { ...rep, secret };
}

/** A user's keys, newest first. */
export async function listAccessKeys(db: Db, realmId: string, userId: string): Promise<AccessKeyRepresentation[]> {
  const rows = await db.selectFrom('access_keys').selectAll().where('realm_id', '=', realmId).where('user_id', '=', userId)
    .orderBy('created_at', 'desc').orderBy('id').execute();
  return rows.map(accessKeyRepresentation);
}

/** One key of one user; another user's key, or one of another realm, is not found. */
export async function findUserAccessKey(db: Db, realmId: string, userId: string, keyId: string): Promise<AccessKey> {
  const row = ACCESS_KEY_PATTERN.test(keyId)
    ? await db.selectFrom('access_keys').selectAll().where('realm_id', '=', realmId).where('user_id', '=', userId)
      .where('id', '=', keyId).executeTakeFirst()
    : undefined;
  if (!row) throw new AccessKeyError('not_found', 'Access key not found');
  return row;
}

/** Enables/disables and relabels a key; enabling counts against the limit of active keys. */
export async function updateAccessKey(db: Db, realm: KeyRealm, userId: string, keyId: string, input: AccessKeyUpdateInput): Promise<AccessKeyRepresentation> {
  const now = new Date();
  const max = maxActiveKeys(realm.settings);
  const row = await db.transaction().execute(async (trx) => {
    await lockUser(trx, realm.id, userId);
    const key = await findUserAccessKey(trx, realm.id, userId, keyId);
    const enabled = input.enabled ?? key.enabled;
    const expired = key.expires_at !== null && new Date(key.expires_at).getTime() <= now.getTime();
    if (enabled && !key.enabled && !expired && await countActive(trx, userId, now, key.id) >= max) {
      throw new AccessKeyError('limit', limitMessage(max));
    }
    const newLabel = input.label === undefined ? key.label : input.label === null || input.label === '' ? null : input.label;
    return trx.updateTable('access_keys').set({ enabled, label: newLabel }).where('id', '=', key.id)
      .returningAll().executeTakeFirstOrThrow();
  });
  return accessKeyRepresentation(row);
}

export async function deleteAccessKey(db: Db, realmId: string, userId: string, keyId: string): Promise<void> {
  const key = await findUserAccessKey(db, realmId, userId, keyId);
  await db.deleteFrom('access_keys').where('id', '=', key.id).execute();
}
