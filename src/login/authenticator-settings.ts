// What a login authenticator decides, in Keycloak's own realm vocabulary: the `passwordPolicy`
// string, the brute-force fields and the `otpPolicy*` fields, plus Cloakroom's MFA requirement and
// allowed client IP ranges. The realm default authenticator *is* the realm's Keycloak settings
// (so realm JSON and the Admin API keep working); named authenticators hold the same fields.
import { z } from 'zod';

const int = (fallback: number) => z.coerce.number().int().min(0).catch(fallback).default(fallback);
const bool = (fallback: boolean) => z.boolean().catch(fallback).default(fallback);

export const OTP_ALGORITHMS = ['HmacSHA1', 'HmacSHA256', 'HmacSHA512'] as const;
export type OtpAlgorithm = (typeof OTP_ALGORITHMS)[number];

/** none: only users who enrolled a device are asked for a code (Keycloak's conditional OTP). */
export const MFA_REQUIREMENTS = ['none', 'totp', 'hotp', 'any'] as const;
export type MfaRequirement = (typeof MFA_REQUIREMENTS)[number];

export const BRUTE_FORCE_FIELDS = [
  'bruteForceProtected', 'permanentLockout', 'maxTemporaryLockouts', 'bruteForceStrategy', 'failureFactor',
  'waitIncrementSeconds', 'quickLoginCheckMilliSeconds', 'minimumQuickLoginWaitSeconds', 'maxFailureWaitSeconds', 'maxDeltaTimeSeconds',
] as const;
export const OTP_POLICY_FIELDS = [
  'otpPolicyType', 'otpPolicyAlgorithm', 'otpPolicyDigits', 'otpPolicyLookAheadWindow', 'otpPolicyPeriod',
  'otpPolicyInitialCounter', 'otpPolicyCodeReusable',
] as const;
/** The fields the realm default authenticator shares with the realm representation. */
export const REALM_MIRRORED_FIELDS = ['passwordPolicy', ...BRUTE_FORCE_FIELDS, ...OTP_POLICY_FIELDS] as const;
/** Cloakroom's own fields; the default authenticator keeps them in its row. */
export const EXTRA_FIELDS = ['mfa', 'allowedIpRanges'] as const;

/** Keycloak's defaults (a new realm), field by field. */
export const authenticatorSettingsSchema = z.object({
  passwordPolicy: z.string().catch('').default(''),
  bruteForceProtected: bool(false),
  permanentLockout: bool(false),
  maxTemporaryLockouts: int(0),
  bruteForceStrategy: z.enum(['MULTIPLE', 'LINEAR']).catch('MULTIPLE').default('MULTIPLE'),
  failureFactor: int(30),
  waitIncrementSeconds: int(60),
  quickLoginCheckMilliSeconds: int(1000),
  minimumQuickLoginWaitSeconds: int(60),
  maxFailureWaitSeconds: int(900),
  maxDeltaTimeSeconds: int(43200),
  otpPolicyType: z.enum(['totp', 'hotp']).catch('totp').default('totp'),
  otpPolicyAlgorithm: z.enum(OTP_ALGORITHMS).catch('HmacSHA1').default('HmacSHA1'),
  otpPolicyDigits: z.union([z.literal(6), z.literal(8)]).catch(6).default(6),
  otpPolicyLookAheadWindow: int(1),
  otpPolicyPeriod: z.coerce.number().int().min(1).catch(30).default(30),
  otpPolicyInitialCounter: int(0),
  otpPolicyCodeReusable: bool(false),
  mfa: z.enum(MFA_REQUIREMENTS).catch('none').default('none'),
  /** CIDR ranges or single addresses; empty = anywhere. */
  allowedIpRanges: z.array(z.string()).catch([]).default([]),
});

export type AuthenticatorSettings = z.infer<typeof authenticatorSettingsSchema>;

/** Parses stored or realm settings leniently: an unreadable field falls back to its default. */
export function parseAuthenticatorSettings(stored: Record<string, unknown>): AuthenticatorSettings {
  return authenticatorSettingsSchema.parse(stored);
}

/** The OTP type a new device is enrolled as: the MFA requirement names one, else the realm's otpPolicyType. */
export function enrollmentOtpType(settings: AuthenticatorSettings): 'totp' | 'hotp' {
  return settings.mfa === 'totp' || settings.mfa === 'hotp' ? settings.mfa : settings.otpPolicyType;
}

/** CXone's built-in defaults: at least 6 characters with a lower-case letter, an upper-case letter and a digit; 6 wrong passwords lock for 30 minutes. */
export const CXONE_PRESET: Partial<AuthenticatorSettings> = {
  passwordPolicy: 'length(6) and lowerCase(1) and upperCase(1) and digits(1)',
  bruteForceProtected: true,
  permanentLockout: false,
  failureFactor: 6,
  bruteForceStrategy: 'MULTIPLE',
  waitIncrementSeconds: 1800,
  maxFailureWaitSeconds: 1800,
  quickLoginCheckMilliSeconds: 0,
  minimumQuickLoginWaitSeconds: 0,
  maxDeltaTimeSeconds: 43200,
};
