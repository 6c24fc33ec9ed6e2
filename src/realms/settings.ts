// The realm settings the server acts on, typed, with Keycloak's defaults. The realms.settings
// column keeps every RealmRepresentation field (so exports round-trip); this schema reads the
// ones that change behaviour.
import { z } from 'zod';

import { SIGNING_ALGS } from '../crypto/signing-keys.ts';

const seconds = z.coerce.number().int().min(0);

export const realmSettingsSchema = z.object({
  sslRequired: z.string().default('external'),
  defaultSignatureAlgorithm: z.enum(SIGNING_ALGS).catch('RS256').default('RS256'),
  accessTokenLifespan: seconds.default(300),
  accessTokenLifespanForImplicitFlow: seconds.default(900),
  ssoSessionIdleTimeout: seconds.default(1800),
  ssoSessionMaxLifespan: seconds.default(36000),
  offlineSessionIdleTimeout: seconds.default(2592000),
  revokeRefreshToken: z.boolean().default(false),
  refreshTokenMaxReuse: seconds.default(0),
  accessCodeLifespan: seconds.default(60),
  accessCodeLifespanLogin: seconds.default(1800),
  ssoSessionIdleTimeoutRememberMe: seconds.default(0),
  ssoSessionMaxLifespanRememberMe: seconds.default(0),
  offlineSessionMaxLifespanEnabled: z.boolean().default(false),
  offlineSessionMaxLifespan: seconds.default(5184000),
  clientSessionIdleTimeout: seconds.default(0),
  clientSessionMaxLifespan: seconds.default(0),
  rememberMe: z.boolean().default(false),
  registrationAllowed: z.boolean().default(false),
  registrationEmailAsUsername: z.boolean().default(false),
  verifyEmail: z.boolean().default(false),
  loginWithEmailAllowed: z.boolean().default(true),
  duplicateEmailsAllowed: z.boolean().default(false),
  displayName: z.string().optional().catch(undefined),
  loginTheme: z.string().optional().catch(undefined),
  internationalizationEnabled: z.boolean().default(false),
  supportedLocales: z.array(z.string()).default([]),
  defaultLocale: z.string().optional().catch(undefined),
  passwordPolicy: z.string().optional().catch(undefined),
  /** Realm attributes (Keycloak keeps strings); Cloakroom's own knobs live here as `cloakroom.*`. */
  attributes: z.record(z.string(), z.unknown()).default({}),
  eventsEnabled: z.boolean().default(false),
  enabledEventTypes: z.array(z.string()).default([]),
  adminEventsEnabled: z.boolean().default(false),
  adminEventsDetailsEnabled: z.boolean().default(false),
}).loose();

export type RealmSettings = z.infer<typeof realmSettingsSchema>;

export function parseRealmSettings(stored: Record<string, unknown>): RealmSettings {
  const parsed = realmSettingsSchema.safeParse(stored);
  // Stored settings were validated on the way in; a value that no longer parses (e.g. written by a
  // newer version) falls back to the defaults instead of taking the realm down.
  return parsed.success ? parsed.data : realmSettingsSchema.parse({});
}

/** Keycloak's extra idle time before a session really ends, for clock skew between instances. */
export const SESSION_IDLE_GRACE_SECONDS = 120;

/** Lifespans of a browser/password session; remember-me variants apply when set (non-zero). */
export function ssoSessionLifespans(settings: RealmSettings, rememberMe: boolean): { idle: number; max: number } {
  const idle = rememberMe && settings.ssoSessionIdleTimeoutRememberMe > 0 ? settings.ssoSessionIdleTimeoutRememberMe : settings.ssoSessionIdleTimeout;
  const max = rememberMe && settings.ssoSessionMaxLifespanRememberMe > 0 ? settings.ssoSessionMaxLifespanRememberMe : settings.ssoSessionMaxLifespan;
  return { idle: idle + SESSION_IDLE_GRACE_SECONDS, max };
}

export function offlineSessionLifespans(settings: RealmSettings): { idle: number; max: number } {
  return {
    idle: settings.offlineSessionIdleTimeout + SESSION_IDLE_GRACE_SECONDS,
    max: settings.offlineSessionMaxLifespanEnabled ? settings.offlineSessionMaxLifespan : 0,
  };
}

function attribute(settings: RealmSettings, name: string): string | undefined {
  const value = settings.attributes[name];
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

function nonNegativeInt(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isInteger(n) && n >= 0 ? n : fallback;
}

/**
 * Beyond Keycloak: seconds during which presenting an already rotated refresh token again returns
 * the same successor (parallel tabs) instead of ending the client session. 0 = off (Keycloak).
 */
export function refreshReuseGraceSeconds(settings: RealmSettings): number {
  return nonNegativeInt(attribute(settings, 'cloakroom.refreshTokenReuseGraceSeconds'), 0);
}

/** First login page: username, then password (Keycloak's username-first) or both on one page. */
export function loginFlow(settings: RealmSettings): 'username-first' | 'username-password' {
  return attribute(settings, 'cloakroom.loginFlow') === 'username-password' ? 'username-password' : 'username-first';
}

/** A policy's argument from Keycloak's passwordPolicy string, e.g. hashIterations(3). */
export function passwordPolicyValue(settings: RealmSettings, name: string): string | undefined {
  for (const part of (settings.passwordPolicy ?? '').split(/\s+and\s+/)) {
    const match = /^\s*([A-Za-z]+)\s*(?:\((.*)\))?\s*$/.exec(part);
    if (match?.[1] === name) return match[2] ?? '';
  }
  return undefined;
}

/**
 * argon2id parameters for new hashes: Keycloak's `hashIterations` policy sets t (as in Keycloak's
 * argon2 provider); memory and parallelism come from realm attributes.
 */
export function argon2Params(settings: RealmSettings): { memoryKiB: number; iterations: number; parallelism: number; hashLength: number } {
  const clamp = (n: number, min: number, max: number): number => Math.min(Math.max(n, min), max);
  return {
    memoryKiB: clamp(nonNegativeInt(attribute(settings, 'cloakroom.argon2.memoryKiB'), 19456), 1024, 1048576),
    iterations: clamp(nonNegativeInt(passwordPolicyValue(settings, 'hashIterations'), 2), 1, 100),
    parallelism: clamp(nonNegativeInt(attribute(settings, 'cloakroom.argon2.parallelism'), 1), 1, 16),
    hashLength: 32,
  };
}
