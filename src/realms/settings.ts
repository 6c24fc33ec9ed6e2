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
  eventsEnabled: z.boolean().default(false),
  enabledEventTypes: z.array(z.string()).default([]),
}).loose();

export type RealmSettings = z.infer<typeof realmSettingsSchema>;

export function parseRealmSettings(stored: Record<string, unknown>): RealmSettings {
  const parsed = realmSettingsSchema.safeParse(stored);
  // Stored settings were validated on the way in; a value that no longer parses (e.g. written by a
  // newer version) falls back to the defaults instead of taking the realm down.
  return parsed.success ? parsed.data : realmSettingsSchema.parse({});
}
