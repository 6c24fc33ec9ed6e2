// One-time passwords (TOTP/HOTP) as Keycloak stores and checks them: credentials of type "otp" with
// secretData {"value": ...} (sealed at rest) and credentialData {subType, digits, counter, period,
// algorithm[, secretEncoding]}. Used by the login pages, the password grant and the Admin API.
//
// The HMAC and truncation come from otplib's HOTP generator, given the key as raw bytes: Keycloak
// keys are either the UTF-8 bytes of the value or its Base32 decoding, so this module decides the
// bytes and otplib never guesses. Its own verify() is not used: it cannot report which step or
// counter matched in a way that lets us claim it atomically in the database, and its TOTP window
// is in seconds rather than steps. Its guardrails are widened so imported seeds of any length work.
import crypto from 'node:crypto';

import { sql } from 'kysely';
import { ScureBase32Plugin, createGuardrails, generateSecret, generateSync, type HashAlgorithm } from 'otplib';
import { z } from 'zod';

import { newId, UUID } from '../crypto/random.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import { OTP_ALGORITHMS, type AuthenticatorSettings, type OtpAlgorithm } from './authenticator-settings.ts';

export type OtpType = 'totp' | 'hotp';

/** Keycloak's credentialData for type "otp" (parsed). */
export type OtpCredentialData = {
  subType: OtpType;
  digits: number;
  counter: number;
  period: number;
  algorithm: OtpAlgorithm;
  secretEncoding?: 'BASE32';
};

export type OtpDevice = { id: string; label: string | null; data: OtpCredentialData; createdAt: Date };

export type OtpVerification = { ok: true; credentialId: string } | { ok: false };

const base32 = new ScureBase32Plugin();
// Keycloak accepts seeds of any length (imported ones included); otplib's defaults (16..64 bytes)
// would refuse some. The window limits do not apply: we generate one counter at a time.
const guardrails = createGuardrails({ MIN_SECRET_BYTES: 1, MAX_SECRET_BYTES: 1024 });

const HASHES: Record<OtpAlgorithm, HashAlgorithm> = { HmacSHA1: 'sha1', HmacSHA256: 'sha256', HmacSHA512: 'sha512' };
const URI_ALGORITHMS: Record<OtpAlgorithm, string> = { HmacSHA1: 'SHA1', HmacSHA256: 'SHA256', HmacSHA512: 'SHA512' };

/** Stored credentialData, read like Keycloak's OTPCredentialData (absent fields take its defaults). */
const credentialDataSchema = z.object({
  subType: z.enum(['totp', 'hotp']),
  digits: z.coerce.number().int().min(1).max(10).default(6),
  counter: z.coerce.number().int().min(0).default(0),
  period: z.coerce.number().int().min(1).default(30),
  algorithm: z.enum(OTP_ALGORITHMS).default('HmacSHA1'),
  secretEncoding: z.string().optional(),
});

/** A malformed id is simply no device (the columns are uuids: comparing would throw). */

const secretDataSchema = z.object({ value: z.string().min(1) });

/** A fresh secret for enrollment: Base32 (RFC 4648, no padding) of 20 random bytes = 32 chars. */
export function generateOtpSecret(): string {
  return generateSecret({ length: 20, base32 });
}

/** Credential data for a new device under the authenticator's otpPolicy (type may be overridden by the MFA requirement). */
export function newOtpCredentialData(settings: AuthenticatorSettings, type: OtpType): OtpCredentialData {
  return {
    subType: type,
    digits: settings.otpPolicyDigits,
    counter: settings.otpPolicyInitialCounter,
    period: settings.otpPolicyPeriod,
    algorithm: settings.otpPolicyAlgorithm,
    secretEncoding: 'BASE32',
  };
}

/** The HMAC key: Base32-decoded with secretEncoding BASE32, else the UTF-8 bytes of the value (Keycloak's getDecodedSecret). */
export function otpKeyBytes(secretValue: string, data: Pick<OtpCredentialData, 'secretEncoding'>): Uint8Array {
  if (data.secretEncoding === 'BASE32') return decodeBase32(secretValue);
  return new TextEncoder().encode(secretValue);
}

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * RFC 4648 Base32 read the way Keycloak and authenticator apps read seeds: any case, spaces,
 * dashes and padding ignored, left-over bits of the last character dropped. (The scure decoder
 * otplib ships rejects seeds whose length is not a whole number of bytes, which real seeds are.)
 */
export function decodeBase32(text: string): Uint8Array {
  const clean = text.toUpperCase().replace(/[\s=-]/g, '');
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of clean) {
    const value = BASE32_ALPHABET.indexOf(char);
    if (value < 0) throw new Error('not Base32');
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** The secret as authenticator apps take it: always Base32 of the key bytes, without padding. */
export function otpSecretForApps(secretValue: string, data: Pick<OtpCredentialData, 'secretEncoding'>): string {
  return base32.encode(otpKeyBytes(secretValue, data), { padding: false });
}

/**
 * otpauth:// URI (Google Authenticator key-uri format, as Keycloak writes it: every parameter
 * spelled out). `secret` is the stored value; a Keycloak-style (UTF-8) value is Base32-encoded here.
 */
export function otpKeyUri(input: { secret: string; data: OtpCredentialData; issuer: string; account: string }): string {
  const { data } = input;
  // encodeURIComponent, not URLSearchParams: apps show "+" literally in names.
  const enc = encodeURIComponent;
  const params = [
    `secret=${otpSecretForApps(input.secret, data)}`,
    `digits=${data.digits}`,
    `algorithm=${URI_ALGORITHMS[data.algorithm]}`,
    `issuer=${enc(input.issuer)}`,
    data.subType === 'totp' ? `period=${data.period}` : `counter=${data.counter}`,
  ];
  return `otpauth://${data.subType}/${enc(input.issuer)}:${enc(input.account)}?${params.join('&')}`;
}

/** The QR code of a key URI as an SVG document string. */
export async function qrCodeSvg(uri: string): Promise<string> {
  // Loaded at the first enrollment page, not at server start (idle memory).
  const { default: QRCode } = await import('qrcode');
  return QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}

function hotpCode(key: Uint8Array, data: OtpCredentialData, counter: number): string {
  return generateSync({ strategy: 'hotp', secret: key, counter, algorithm: HASHES[data.algorithm], digits: data.digits, guardrails });
}

/** The code a device shows now / at a counter (TOTP: `counter` is the time step, else from `time`). */
export function otpCode(secretValue: string, data: OtpCredentialData, at: { time?: number /* epoch ms */; counter?: number }): string {
  const key = otpKeyBytes(secretValue, data);
  const counter = at.counter ?? (data.subType === 'totp' ? timeStep(at.time ?? Date.now(), data.period) : data.counter);
  return hotpCode(key, data, counter);
}

const timeStep = (epochMs: number, period: number): number => Math.floor(epochMs / 1000 / period);

/** Stores a new OTP credential (secretData sealed) last in the user's credential order; returns its id. */
export async function storeOtpCredential(
  db: Db, box: SecretBox,
  input: { realmId: string; userId: string; label: string | null; secret: string; data: OtpCredentialData },
): Promise<string> {
  const id = newId();
  await db.insertInto('credentials').values({
    id, realm_id: input.realmId, user_id: input.userId, type: 'otp', user_label: input.label,
    secret_data: box.seal(JSON.stringify({ value: input.secret })),
    credential_data: JSON.stringify(credentialDataJson(input.data)),
    // Keycloak: after the user's existing credentials (last priority + 10).
    priority: sql<number>`(SELECT COALESCE(MAX(priority), 0) + 10 FROM credentials WHERE user_id = ${input.userId})`,
  }).execute();
  return id;
}

/** Keycloak's field order; secretEncoding only when set. */
function credentialDataJson(data: OtpCredentialData): Record<string, unknown> {
  const { subType, digits, counter, period, algorithm, secretEncoding } = data;
  return { subType, digits, counter, period, algorithm, ...(secretEncoding ? { secretEncoding } : {}) };
}

/** Reads stored credentialData (jsonb object, or JSON text); undefined when it is not usable OTP data. */
export function parseOtpCredentialData(stored: unknown): OtpCredentialData | undefined {
  let value = stored;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  const parsed = credentialDataSchema.safeParse(value);
  if (!parsed.success) return undefined;
  const { secretEncoding, ...rest } = parsed.data;
  // Keycloak knows only BASE32; any other encoding value means the raw UTF-8 value.
  return { ...rest, ...(secretEncoding?.toUpperCase() === 'BASE32' ? { secretEncoding: 'BASE32' as const } : {}) };
}

/** The secret `value` of a stored row: sealed JSON (what import, the Admin API and this module write) or plain JSON. */
function openSecretValue(box: SecretBox, secretData: string): string | undefined {
  try {
    const text = secretData.startsWith('{') ? secretData : box.open(secretData);
    const parsed = secretDataSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.value : undefined;
  } catch {
    return undefined;
  }
}

/** The user's OTP devices in credential priority order (rows with unreadable data are left out). */
export async function listOtpDevices(db: Db, userId: string): Promise<OtpDevice[]> {
  const rows = await db.selectFrom('credentials').select(['id', 'user_label', 'credential_data', 'created_at'])
    .where('user_id', '=', userId).where('type', '=', 'otp')
    .orderBy('priority').orderBy('created_at').orderBy('id').execute();
  const devices: OtpDevice[] = [];
  for (const row of rows) {
    const data = parseOtpCredentialData(row.credential_data);
    if (data) devices.push({ id: row.id, label: row.user_label, data, createdAt: new Date(row.created_at) });
  }
  return devices;
}

/** Constant time over the code's digits; callers have already checked the lengths match. */
function sameCode(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/**
 * Checks a code against one device (or each of the user's devices in priority order when
 * credentialId is omitted). A malformed code or unusable device is a plain failure, never a throw.
 */
export async function verifyOtp(
  db: Db, box: SecretBox,
  input: { userId: string; code: string; settings: AuthenticatorSettings; credentialId?: string; now?: number },
): Promise<OtpVerification> {
  const code = input.code.trim();
  if (!/^[0-9]{1,10}$/.test(code) || !UUID.test(input.userId)) return { ok: false };
  let query = db.selectFrom('credentials').select(['id', 'secret_data', 'credential_data'])
    .where('user_id', '=', input.userId).where('type', '=', 'otp');
  if (input.credentialId !== undefined) {
    if (!UUID.test(input.credentialId)) return { ok: false };
    query = query.where('id', '=', input.credentialId);
  }
  const rows = await query.orderBy('priority').orderBy('created_at').orderBy('id').execute();
  const now = input.now ?? Date.now();
  for (const row of rows) {
    const data = parseOtpCredentialData(row.credential_data);
    const value = openSecretValue(box, row.secret_data);
    if (!data || value === undefined || code.length !== data.digits) continue;
    let key: Uint8Array;
    try {
      key = otpKeyBytes(value, data);
      if (key.length === 0) continue;
    } catch {
      continue; // not Base32 although it says so
    }
    const device = { id: row.id, key, data, stored: row.credential_data };
    const ok = data.subType === 'totp'
      ? await verifyTotp(db, device, code, input.settings, now)
      : await verifyHotp(db, device, code, input.settings);
    if (ok) return { ok: true, credentialId: row.id };
  }
  return { ok: false };
}

/** `stored` is credentialData exactly as read, for the HOTP compare-and-set. */
type UsableDevice = { id: string; key: Uint8Array; data: OtpCredentialData; stored: unknown };

/** Steps T−w … T+w. Unless codes are reusable, the matching step is claimed once per credential. */
async function verifyTotp(db: Db, device: UsableDevice, code: string, settings: AuthenticatorSettings, now: number): Promise<boolean> {
  const { period } = device.data;
  const window = settings.otpPolicyLookAheadWindow;
  const current = timeStep(now, period);
  for (let step = Math.max(0, current - window); step <= current + window; step++) {
    if (!sameCode(hotpCode(device.key, device.data, step), code)) continue;
    if (settings.otpPolicyCodeReusable) return true;
    if (await claimTimeStep(db, device.id, step, new Date((step + window + 1) * period * 1000), new Date(now))) return true;
  }
  return false;
}

/**
 * Records a used step; false when it was already recorded. The primary key makes this atomic
 * across instances: of concurrent inserts exactly one returns the row.
 */
async function claimTimeStep(db: Db, credentialId: string, step: number, expiresAt: Date, now: Date): Promise<boolean> {
  // Opportunistic cleanup of this credential's steps whose window has closed (uses the caller's
  // clock, the same one that decided the window, so a live step is never removed).
  await db.deleteFrom('otp_used_steps').where('credential_id', '=', credentialId).where('expires_at', '<', now).execute();
  const inserted = await db.insertInto('otp_used_steps').values({ credential_id: credentialId, step, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['credential_id', 'step']).doNothing()).returning('step').executeTakeFirst();
  return inserted !== undefined;
}

/** Deletes used TOTP steps whose acceptance window has closed; for the periodic cleanup job. */
export async function deleteExpiredOtpSteps(db: Db, now = new Date()): Promise<number> {
  const rows = await db.deleteFrom('otp_used_steps').where('expires_at', '<', now).returning('credential_id').execute();
  return rows.length;
}

/**
 * Counters c … c+w; a match at k stores counter k+1 with a compare-and-set on the credentialData
 * that was read (jsonb equality, so no cast of a stored field can fail). Losing the race means
 * another login advanced the counter: re-read once and look again from the new counter, so no
 * counter is ever accepted twice.
 */
async function verifyHotp(db: Db, device: UsableDevice, code: string, settings: AuthenticatorSettings): Promise<boolean> {
  const window = settings.otpPolicyLookAheadWindow;
  let { data, stored } = device;
  for (let attempt = 0; attempt < 2; attempt++) {
    let matched: number | undefined;
    for (let k = data.counter; k <= data.counter + window; k++) {
      if (sameCode(hotpCode(device.key, data, k), code)) {
        matched = k;
        break;
      }
    }
    if (matched === undefined) return false;
    const next = { ...storedObject(stored), counter: matched + 1 };
    const updated = await db.updateTable('credentials')
      .set({ credential_data: JSON.stringify(next) })
      .where('id', '=', device.id)
      .where('credential_data', '=', sql<unknown>`${JSON.stringify(stored)}::jsonb`)
      .returning('id').executeTakeFirst();
    if (updated) return true;
    const row = await db.selectFrom('credentials').select('credential_data').where('id', '=', device.id).executeTakeFirst();
    const fresh = row && parseOtpCredentialData(row.credential_data);
    if (!row || !fresh) return false;
    stored = row.credential_data;
    data = fresh;
  }
  return false;
}

/** The stored credentialData as an object (a row may hold it as JSON text inside jsonb). */
function storedObject(stored: unknown): Record<string, unknown> {
  const value = typeof stored === 'string' ? JSON.parse(stored) as unknown : stored;
  return value !== null && typeof value === 'object' ? value as Record<string, unknown> : {};
}
