// OTP credentials against a real database (src/login/otp.ts): storage, the TOTP window and replay
// protection, HOTP counter resync, races between parallel submissions, and credentials imported in
// Keycloak's format. PGlite in memory by default, a fresh PostgreSQL database with DATABASE_URL.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createSecretBox } from '../../src/crypto/secret-box.ts';
import { newId } from '../../src/crypto/random.ts';
import { parseAuthenticatorSettings, type AuthenticatorSettings } from '../../src/login/authenticator-settings.ts';
import {
  listOtpDevices, newOtpCredentialData, otpCode, storeOtpCredential, verifyOtp, type OtpCredentialData,
} from '../../src/login/otp.ts';
import { importRealm } from '../../src/realms/import.ts';
import type { Db, Store } from '../../src/store/db.ts';
import { createTestDatabase, openTestStore, type TestDatabase } from '../support/server.ts';

const box = createSecretBox(crypto.randomBytes(32));
let database: TestDatabase;
let store: Store;
let db: Db;
let realmId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openTestStore(database.url);
  db = store.db;
  realmId = newId();
  await db.insertInto('realms').values({ id: realmId, name: 'otp', display_name: 'OTP Realm', settings: '{}' }).execute();
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

// Fixed secrets and times keep every code (and the absence of accidental collisions) deterministic.
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const NOW = Date.UTC(2024, 0, 15, 12, 0, 10); // 10 s into a 30 s step
const STEP_MS = 30_000;

const settingsWith = (fields: Partial<AuthenticatorSettings> = {}): AuthenticatorSettings => parseAuthenticatorSettings(fields);

let users = 0;
async function newUser(): Promise<string> {
  const id = newId();
  await db.insertInto('users').values({ id, realm_id: realmId, username: `user-${++users}`, email: null, first_name: null, last_name: null,
    federation_link: null, service_account_client_id: null, attributes: '{}', required_actions: '[]' }).execute();
  return id;
}

async function device(type: 'totp' | 'hotp', settings = settingsWith(), secret = SECRET): Promise<{ userId: string; id: string; data: OtpCredentialData }> {
  const userId = await newUser();
  const data = newOtpCredentialData(settings, type);
  const id = await storeOtpCredential(db, box, { realmId, userId, label: 'phone', secret, data });
  return { userId, id, data };
}

async function storedCounter(id: string): Promise<number> {
  const [found] = (await listOtpDevices(db, (await db.selectFrom('credentials').select('user_id').where('id', '=', id).executeTakeFirstOrThrow()).user_id))
    .filter((d) => d.id === id);
  return found!.data.counter;
}

/** RFC 4226 HOTP with node:crypto, independent of the module under test. */
function referenceHotp(key: Buffer, counter: number, digits = 6): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', key).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

describe('storing devices', () => {
  it('seals the secret, keeps Keycloak credentialData and orders new devices last', async () => {
    const userId = await newUser();
    await db.insertInto('credentials').values({ id: newId(), realm_id: realmId, user_id: userId, type: 'password', user_label: null,
      secret_data: '{}', credential_data: '{}', priority: 10 }).execute();
    const data = newOtpCredentialData(settingsWith({ otpPolicyDigits: 8 }), 'totp');
    const first = await storeOtpCredential(db, box, { realmId, userId, label: 'phone', secret: SECRET, data });
    const second = await storeOtpCredential(db, box, { realmId, userId, label: null, secret: SECRET, data: { ...data, subType: 'hotp' } });

    const row = await db.selectFrom('credentials').selectAll().where('id', '=', first).executeTakeFirstOrThrow();
    expect(row.type).toBe('otp');
    expect(row.user_label).toBe('phone');
    expect(row.secret_data.startsWith('v1.')).toBe(true);
    expect(row.secret_data).not.toContain(SECRET);
    expect(JSON.parse(box.open(row.secret_data))).toEqual({ value: SECRET });
    expect(row.credential_data).toEqual({ subType: 'totp', digits: 8, counter: 0, period: 30, algorithm: 'HmacSHA1', secretEncoding: 'BASE32' });
    expect(row.priority).toBe(20);

    const devices = await listOtpDevices(db, userId);
    expect(devices.map((d) => [d.id, d.label, d.data.subType])).toEqual([[first, 'phone', 'totp'], [second, null, 'hotp']]);
    expect(devices[0]!.createdAt).toBeInstanceOf(Date);
    const priorities = await db.selectFrom('credentials').select('priority').where('user_id', '=', userId).orderBy('priority').execute();
    expect(priorities.map((p) => p.priority)).toEqual([10, 20, 30]);
  });
});

describe('TOTP', () => {
  it('accepts steps T−w … T+w and refuses the steps beyond', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 1 });
    const { userId, id, data } = await device('totp', settings);
    const at = (offset: number): string => otpCode(SECRET, data, { time: NOW + offset * STEP_MS });
    for (const offset of [-2, 2]) {
      expect(await verifyOtp(db, box, { userId, code: at(offset), settings, now: NOW })).toEqual({ ok: false });
    }
    for (const offset of [-1, 0, 1]) {
      expect(await verifyOtp(db, box, { userId, code: at(offset), settings, now: NOW })).toEqual({ ok: true, credentialId: id });
    }
  });

  it('a wider window accepts further steps (w = 3)', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 3 });
    const { userId, data } = await device('totp', settings);
    const at = (offset: number): string => otpCode(SECRET, data, { time: NOW + offset * STEP_MS });
    expect((await verifyOtp(db, box, { userId, code: at(-3), settings, now: NOW })).ok).toBe(true);
    expect((await verifyOtp(db, box, { userId, code: at(3), settings, now: NOW })).ok).toBe(true);
    expect((await verifyOtp(db, box, { userId, code: at(4), settings, now: NOW })).ok).toBe(false);
  });

  it('window 0 accepts only the current step', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 0 });
    const { userId, data } = await device('totp', settings);
    expect((await verifyOtp(db, box, { userId, code: otpCode(SECRET, data, { time: NOW - STEP_MS }), settings, now: NOW })).ok).toBe(false);
    expect((await verifyOtp(db, box, { userId, code: otpCode(SECRET, data, { time: NOW }), settings, now: NOW })).ok).toBe(true);
  });

  it('refuses a replayed code for as long as its step is in the window', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 1 });
    const { userId, id, data } = await device('totp', settings);
    const code = otpCode(SECRET, data, { time: NOW });
    expect((await verifyOtp(db, box, { userId, code, settings, now: NOW })).ok).toBe(true);
    expect((await verifyOtp(db, box, { userId, code, settings, now: NOW })).ok).toBe(false);
    expect((await verifyOtp(db, box, { userId, code, settings, now: NOW + STEP_MS })).ok).toBe(false);

    const used = await db.selectFrom('otp_used_steps').selectAll().where('credential_id', '=', id).execute();
    const step = Math.floor(NOW / STEP_MS);
    expect(used.map((u) => Number(u.step))).toEqual([step]);
    // The window closes after step + w: then the row is no longer needed.
    expect(new Date(used[0]!.expires_at).getTime()).toBe((step + 2) * STEP_MS);

    // A later login removes this credential's expired steps.
    const later = NOW + 10 * STEP_MS;
    expect((await verifyOtp(db, box, { userId, code: otpCode(SECRET, data, { time: later }), settings, now: later })).ok).toBe(true);
    const left = await db.selectFrom('otp_used_steps').select('step').where('credential_id', '=', id).execute();
    expect(left.map((u) => Number(u.step))).toEqual([step + 10]);
  });

  it('allows the same code again when the policy marks codes reusable', async () => {
    const settings = settingsWith({ otpPolicyCodeReusable: true });
    const { userId, id, data } = await device('totp', settings);
    const code = otpCode(SECRET, data, { time: NOW });
    expect((await verifyOtp(db, box, { userId, code, settings, now: NOW })).ok).toBe(true);
    expect((await verifyOtp(db, box, { userId, code, settings, now: NOW })).ok).toBe(true);
    expect(await db.selectFrom('otp_used_steps').select('step').where('credential_id', '=', id).execute()).toEqual([]);
  });

  it('of 10 parallel submissions of one code exactly one succeeds', async () => {
    const settings = settingsWith();
    const { userId, id, data } = await device('totp', settings);
    const code = otpCode(SECRET, data, { time: NOW });
    const results = await Promise.all(Array.from({ length: 10 }, () => verifyOtp(db, box, { userId, code, settings, now: NOW })));
    expect(results.filter((r) => r.ok)).toEqual([{ ok: true, credentialId: id }]);
  });

  it("uses the credential's own digits, period and algorithm", async () => {
    const settings = settingsWith({ otpPolicyDigits: 8, otpPolicyPeriod: 60, otpPolicyAlgorithm: 'HmacSHA512' });
    const { userId, data } = await device('totp', settings);
    expect(data).toMatchObject({ digits: 8, period: 60, algorithm: 'HmacSHA512' });
    const code = otpCode(SECRET, data, { time: NOW });
    expect(code).toHaveLength(8);
    // Checked under the default policy: the window comes from the settings, the rest from the device.
    expect((await verifyOtp(db, box, { userId, code, settings: settingsWith(), now: NOW + 50_000 })).ok).toBe(true);
  });
});

describe('HOTP', () => {
  it('catches up with a device up to w ahead and stores counter k+1', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 3 });
    const { userId, id, data } = await device('hotp', settings);
    const at = (counter: number): string => otpCode(SECRET, data, { counter });

    expect(await verifyOtp(db, box, { userId, code: at(3), settings })).toEqual({ ok: true, credentialId: id });
    expect(await storedCounter(id)).toBe(4);
    for (const old of [0, 1, 2, 3]) expect((await verifyOtp(db, box, { userId, code: at(old), settings })).ok).toBe(false);
    // More than w ahead is refused and does not move the counter.
    expect((await verifyOtp(db, box, { userId, code: at(8), settings })).ok).toBe(false);
    expect(await storedCounter(id)).toBe(4);
    expect((await verifyOtp(db, box, { userId, code: at(4), settings })).ok).toBe(true);
    expect(await storedCounter(id)).toBe(5);
  });

  it('starts at the policy initial counter', async () => {
    const settings = settingsWith({ otpPolicyInitialCounter: 10, otpPolicyLookAheadWindow: 1 });
    const { userId, id, data } = await device('hotp', settings);
    expect(data.counter).toBe(10);
    expect((await verifyOtp(db, box, { userId, code: otpCode(SECRET, data, { counter: 9 }), settings })).ok).toBe(false);
    expect((await verifyOtp(db, box, { userId, code: otpCode(SECRET, data, { counter: 11 }), settings })).ok).toBe(true);
    expect(await storedCounter(id)).toBe(12);
  });

  it('of 10 parallel submissions of one code exactly one succeeds', async () => {
    const settings = settingsWith({ otpPolicyLookAheadWindow: 2 });
    const { userId, id, data } = await device('hotp', settings);
    const code = otpCode(SECRET, data, { counter: 1 });
    const results = await Promise.all(Array.from({ length: 10 }, () => verifyOtp(db, box, { userId, code, settings })));
    expect(results.filter((r) => r.ok)).toEqual([{ ok: true, credentialId: id }]);
    expect(await storedCounter(id)).toBe(2);
  });

  it('ignores codeReusable: a counter is consumed once', async () => {
    const settings = settingsWith({ otpPolicyCodeReusable: true });
    const { userId, data } = await device('hotp', settings);
    const code = otpCode(SECRET, data, { counter: 0 });
    expect((await verifyOtp(db, box, { userId, code, settings })).ok).toBe(true);
    expect((await verifyOtp(db, box, { userId, code, settings })).ok).toBe(false);
  });
});

describe('several devices', () => {
  it('tries every device without credentialId, only the named one with it', async () => {
    const settings = settingsWith();
    const userId = await newUser();
    const totpData = newOtpCredentialData(settings, 'totp');
    const hotpData = newOtpCredentialData(settings, 'hotp');
    const other = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
    const totpId = await storeOtpCredential(db, box, { realmId, userId, label: 'a', secret: SECRET, data: totpData });
    const hotpId = await storeOtpCredential(db, box, { realmId, userId, label: 'b', secret: other, data: hotpData });

    const hotpCode = otpCode(other, hotpData, { counter: 0 });
    expect(await verifyOtp(db, box, { userId, code: hotpCode, settings, credentialId: totpId, now: NOW })).toEqual({ ok: false });
    expect(await verifyOtp(db, box, { userId, code: hotpCode, settings, now: NOW })).toEqual({ ok: true, credentialId: hotpId });
    const totpCode = otpCode(SECRET, totpData, { time: NOW });
    expect(await verifyOtp(db, box, { userId, code: totpCode, settings, credentialId: totpId, now: NOW })).toEqual({ ok: true, credentialId: totpId });

    // Another user's device is not reachable by its id.
    const stranger = await newUser();
    const code = otpCode(SECRET, totpData, { time: NOW + STEP_MS });
    expect(await verifyOtp(db, box, { userId: stranger, code, settings, credentialId: totpId, now: NOW })).toEqual({ ok: false });
  });
});

describe("credentials imported in Keycloak's format", () => {
  const kcTotpValue = 'aBcD3fGhIjKlMnOpQrSt';
  const kcHotpSeed = 'JBSWY3DPEHPK3PXP';
  let importedRealm: string;
  const userIdOf = async (username: string): Promise<string> =>
    (await db.selectFrom('users').select('id').where('realm_id', '=', importedRealm).where('username', '=', username).executeTakeFirstOrThrow()).id;

  beforeAll(async () => {
    importedRealm = (await importRealm(db, box, {
      realm: 'otp-import',
      otpPolicyLookAheadWindow: 1,
      users: [
        {
          username: 'kc-totp', enabled: true,
          credentials: [{
            type: 'otp', userLabel: 'Phone', createdDate: 1_700_000_000_000,
            secretData: JSON.stringify({ value: kcTotpValue }),
            credentialData: '{"subType":"totp","digits":6,"counter":0,"period":30,"algorithm":"HmacSHA1"}',
          }],
        },
        {
          username: 'kc-hotp', enabled: true,
          credentials: [{
            type: 'otp', userLabel: 'Token',
            secretData: JSON.stringify({ value: kcHotpSeed }),
            credentialData: '{"subType":"hotp","digits":6,"counter":5,"period":30,"algorithm":"HmacSHA1","secretEncoding":"BASE32"}',
          }],
        },
      ],
    })).realmId;
  });

  it('a secret without secretEncoding is the UTF-8 bytes of its value', async () => {
    const userId = await userIdOf('kc-totp');
    const [imported] = await listOtpDevices(db, userId);
    expect(imported).toMatchObject({ label: 'Phone', data: { subType: 'totp', digits: 6, period: 30, algorithm: 'HmacSHA1' } });
    expect(imported!.data.secretEncoding).toBeUndefined();

    const code = referenceHotp(Buffer.from(kcTotpValue, 'utf8'), Math.floor(NOW / STEP_MS));
    // Read as Base32 the same value would give another code: the distinction matters.
    expect(otpCode(kcTotpValue, { ...imported!.data, secretEncoding: 'BASE32' }, { time: NOW })).not.toBe(code);
    expect(await verifyOtp(db, box, { userId, code, settings: settingsWith(), now: NOW })).toEqual({ ok: true, credentialId: imported!.id });
  });

  it('a BASE32 HOTP seed verifies from its stored counter and advances it', async () => {
    const userId = await userIdOf('kc-hotp');
    const [imported] = await listOtpDevices(db, userId);
    const key = Buffer.from([0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x21, 0xde, 0xad, 0xbe, 0xef]); // Base32 JBSWY3DPEHPK3PXP
    expect((await verifyOtp(db, box, { userId, code: referenceHotp(key, 4), settings: settingsWith() })).ok).toBe(false);
    expect((await verifyOtp(db, box, { userId, code: referenceHotp(key, 6), settings: settingsWith() })).ok).toBe(true);
    expect(await storedCounter(imported!.id)).toBe(7);
  });
});

describe('bad input', () => {
  it('wrong and malformed codes are a plain failure', async () => {
    const settings = settingsWith();
    const { userId, id, data } = await device('totp', settings);
    const right = otpCode(SECRET, data, { time: NOW });
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    for (const code of [wrong, '', '   ', 'abcdef', right.slice(1), `${right}0`, `${right.slice(0, 3)} ${right.slice(3)}`,
      '１２３４５６', '-12345', '1e5000', `${right}\n0`, 'x'.repeat(10_000)]) {
      expect(await verifyOtp(db, box, { userId, code, settings, now: NOW })).toEqual({ ok: false });
    }
    expect(await verifyOtp(db, box, { userId, code: right, settings, credentialId: 'not-a-uuid', now: NOW })).toEqual({ ok: false });
    expect(await verifyOtp(db, box, { userId, code: right, settings, credentialId: newId(), now: NOW })).toEqual({ ok: false });
    expect(await verifyOtp(db, box, { userId: 'nobody', code: right, settings, now: NOW })).toEqual({ ok: false });
    expect(await verifyOtp(db, box, { userId: await newUser(), code: right, settings, now: NOW })).toEqual({ ok: false });
    // Surrounding whitespace (a paste) is fine; the failures above did not use up the step.
    expect(await verifyOtp(db, box, { userId, code: ` ${right}\n`, settings, now: NOW })).toEqual({ ok: true, credentialId: id });
  });

  it('an unreadable stored credential is skipped, not an error', async () => {
    const settings = settingsWith();
    const userId = await newUser();
    const data = newOtpCredentialData(settings, 'totp');
    const base = { realm_id: realmId, user_id: userId, type: 'otp', user_label: null };
    await db.insertInto('credentials').values([
      { ...base, id: newId(), secret_data: 'v1.AAAA', credential_data: JSON.stringify(data), priority: 1 },
      { ...base, id: newId(), secret_data: box.seal('not json'), credential_data: JSON.stringify(data), priority: 2 },
      { ...base, id: newId(), secret_data: box.seal(JSON.stringify({ value: SECRET })), credential_data: '{"subType":"webauthn"}', priority: 3 },
      { ...base, id: newId(), secret_data: box.seal(JSON.stringify({ value: 'not base32!' })), credential_data: JSON.stringify(data), priority: 4 },
    ]).execute();
    const good = await storeOtpCredential(db, box, { realmId, userId, label: null, secret: SECRET, data });
    const code = otpCode(SECRET, data, { time: NOW });
    expect(await verifyOtp(db, box, { userId, code, settings, now: NOW })).toEqual({ ok: true, credentialId: good });
    expect((await listOtpDevices(db, userId)).map((d) => d.id)).not.toContain(undefined);
  });
});
