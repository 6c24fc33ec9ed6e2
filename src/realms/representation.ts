// Keycloak representations (realm export JSON, Admin API bodies) as zod schemas. Only the fields
// Cloakroom interprets are declared; `.loose()` keeps the rest so nothing a Keycloak export
// carries is rejected.
import { z } from 'zod';

import { EXTRA_FIELDS, authenticatorSettingsSchema, parseAuthenticatorSettings, type AuthenticatorSettings } from '../login/authenticator-settings.ts';
import { isValidIpRange } from '../login/ip-ranges.ts';
import { PasswordPolicyError, formatPasswordPolicy, parsePasswordPolicy } from '../login/password-policy.ts';

const stringMap = z.record(z.string(), z.string());
const multiMap = z.record(z.string(), z.array(z.string()));
/** Keycloak writes attribute values as strings, but hand-written JSON often has plain values. */
const attributeMap = z.record(z.string(), z.union([z.array(z.string()), z.string()]))
  .transform((m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])));
const configMap = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))
  .transform((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)])));

export const protocolMapperRep = z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  protocol: z.string().default('openid-connect'),
  protocolMapper: z.string().min(1),
  consentRequired: z.boolean().optional(),
  config: configMap.default({}),
}).loose();
export type ProtocolMapperRepresentation = z.infer<typeof protocolMapperRep>;

export const clientScopeRep = z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  description: z.string().optional(),
  protocol: z.string().default('openid-connect'),
  attributes: configMap.default({}),
  protocolMappers: z.array(protocolMapperRep).default([]),
}).loose();
export type ClientScopeRepresentation = z.infer<typeof clientScopeRep>;

export const roleRep = z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  description: z.string().nullish(),
  composite: z.boolean().optional(),
  composites: z.object({
    realm: z.array(z.string()).optional(),
    client: z.record(z.string(), z.array(z.string())).optional(),
  }).optional(),
  clientRole: z.boolean().optional(),
  attributes: attributeMap.optional(),
}).loose();
export type RoleRepresentation = z.infer<typeof roleRep>;

export const clientRep = z.object({
  id: z.string().optional(),
  clientId: z.string().min(1).max(255),
  name: z.string().nullish(),
  description: z.string().nullish(),
  rootUrl: z.string().nullish(),
  baseUrl: z.string().nullish(),
  adminUrl: z.string().nullish(),
  enabled: z.boolean().default(true),
  protocol: z.string().default('openid-connect'),
  clientAuthenticatorType: z.string().default('client-secret'),
  secret: z.string().nullish(),
  publicClient: z.boolean().default(false),
  bearerOnly: z.boolean().default(false),
  standardFlowEnabled: z.boolean().default(true),
  implicitFlowEnabled: z.boolean().default(false),
  directAccessGrantsEnabled: z.boolean().default(false),
  serviceAccountsEnabled: z.boolean().default(false),
  consentRequired: z.boolean().default(false),
  fullScopeAllowed: z.boolean().default(true),
  frontchannelLogout: z.boolean().default(true),
  redirectUris: z.array(z.string()).default([]),
  webOrigins: z.array(z.string()).default([]),
  attributes: configMap.default({}),
  defaultClientScopes: z.array(z.string()).optional(),
  optionalClientScopes: z.array(z.string()).optional(),
  protocolMappers: z.array(protocolMapperRep).optional(),
}).loose();
export type ClientRepresentation = z.infer<typeof clientRep>;

export const credentialRep = z.object({
  id: z.string().optional(),
  type: z.string().default('password'),
  userLabel: z.string().nullish(),
  value: z.string().optional(),
  temporary: z.boolean().optional(),
  createdDate: z.number().optional(),
  secretData: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  credentialData: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  priority: z.number().optional(),
}).loose();
export type CredentialRepresentation = z.infer<typeof credentialRep>;

export const userRep = z.object({
  id: z.string().optional(),
  username: z.string().min(1).max(255),
  email: z.string().nullish(),
  emailVerified: z.boolean().default(false),
  enabled: z.boolean().default(true),
  firstName: z.string().nullish(),
  lastName: z.string().nullish(),
  attributes: attributeMap.optional(),
  requiredActions: z.array(z.string()).optional(),
  credentials: z.array(credentialRep).optional(),
  realmRoles: z.array(z.string()).optional(),
  clientRoles: z.record(z.string(), z.array(z.string())).optional(),
  groups: z.array(z.string()).optional(),
  serviceAccountClientId: z.string().optional(),
  federationLink: z.string().nullish(),
  notBefore: z.number().optional(),
  createdTimestamp: z.number().optional(),
  /** Beyond Keycloak: the name of the user's own login authenticator. */
  loginAuthenticator: z.string().min(1).nullish(),
}).loose();
export type UserRepresentation = z.infer<typeof userRep>;

export type GroupRepresentation = {
  id?: string;
  name: string;
  description?: string | null;
  attributes?: Record<string, string[]>;
  realmRoles?: string[];
  clientRoles?: Record<string, string[]>;
  subGroups?: GroupRepresentation[];
  /** Beyond Keycloak: the name of the group's login authenticator. */
  loginAuthenticator?: string | null;
};
export const groupRep: z.ZodType<GroupRepresentation> = z.lazy(() => z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  description: z.string().nullish(),
  attributes: attributeMap.optional(),
  realmRoles: z.array(z.string()).optional(),
  clientRoles: z.record(z.string(), z.array(z.string())).optional(),
  subGroups: z.array(groupRep).optional(),
  loginAuthenticator: z.string().min(1).nullish(),
}).loose());

const scopeMappingRep = z.object({
  client: z.string().optional(),
  clientScope: z.string().optional(),
  roles: z.array(z.string()).default([]),
}).loose();

/** Realm names become URL path segments; Keycloak forbids the characters that would break them. */
export const realmName = z.string().min(1).max(255)
  .refine((name) => !/[\/\\%?#\s]/.test(name) && name !== '.' && name !== '..', 'realm name contains invalid characters');

export const realmRep = z.object({
  id: z.string().optional(),
  realm: realmName,
  displayName: z.string().nullish(),
  enabled: z.boolean().default(true),
  notBefore: z.number().int().optional(),
  clientScopes: z.array(clientScopeRep).optional(),
  defaultDefaultClientScopes: z.array(z.string()).optional(),
  defaultOptionalClientScopes: z.array(z.string()).optional(),
  roles: z.object({
    realm: z.array(roleRep).optional(),
    client: z.record(z.string(), z.array(roleRep)).optional(),
  }).loose().optional(),
  defaultRole: roleRep.optional(),
  clients: z.array(clientRep).optional(),
  users: z.array(userRep).optional(),
  groups: z.array(groupRep).optional(),
  scopeMappings: z.array(scopeMappingRep).optional(),
  clientScopeMappings: z.record(z.string(), z.array(scopeMappingRep)).optional(),
}).loose();
export type RealmRepresentation = z.infer<typeof realmRep>;

/** Fields of a RealmRepresentation that live in dedicated tables, not in realms.settings. */
export const STRUCTURAL_REALM_FIELDS = new Set([
  'id', 'realm', 'displayName', 'enabled', 'notBefore', 'clientScopes', 'defaultDefaultClientScopes',
  'defaultOptionalClientScopes', 'roles', 'defaultRole', 'clients', 'users', 'groups', 'scopeMappings',
  'clientScopeMappings', 'keycloakVersion', 'federatedUsers', 'components', 'identityProviders',
  'identityProviderMappers', 'authenticationFlows', 'authenticatorConfig', 'requiredActions', 'loginAuthenticators',
]);

// --- Login authenticators (beyond Keycloak: Cloakroom's `loginAuthenticators` realm field) ---------

const SETTINGS_DEFAULTS = parseAuthenticatorSettings({});
const jsonKind = (value: unknown): string => (Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value);

/**
 * One settings field as an import reads it: the stored schema's rule without its silent fallback
 * (a file with a wrong value is refused, not quietly reset), and the JSON type of its default
 * (no coercion of "3" or true into numbers). Absent fields take Keycloak's default.
 */
function strictSetting(field: string): z.ZodType {
  const kind = jsonKind((SETTINGS_DEFAULTS as Record<string, unknown>)[field]);
  const stored = authenticatorSettingsSchema.shape[field as keyof AuthenticatorSettings] as unknown as z.ZodDefault<z.ZodCatch<z.ZodType>>;
  return z.custom((value) => jsonKind(value) === kind, `expected ${kind}`).pipe(stored.removeDefault().removeCatch()).optional();
}
const strictSettings = z.object({
  ...Object.fromEntries(Object.keys(authenticatorSettingsSchema.shape).map((field) => [field, strictSetting(field)])),
  allowedIpRanges: z.array(z.string().refine(isValidIpRange, 'not an IP address or CIDR range')).optional(),
});

/**
 * A login authenticator in realm JSON. The default carries only Cloakroom's extras (its Keycloak
 * fields are the realm's own passwordPolicy, brute-force and otpPolicy fields; any given here are
 * ignored); a named one carries every settings field, filled with Keycloak's defaults.
 */
export type LoginAuthenticatorRepresentation = { name: string; description?: string; default?: true } & Partial<AuthenticatorSettings>;

export const loginAuthenticatorRep: z.ZodType<LoginAuthenticatorRepresentation> = z.object({
  name: z.string().trim().min(1).max(255),
  description: z.string().max(1000).nullish(),
  default: z.boolean().optional(),
}).loose().transform((entry, ctx) => {
  const parsed = strictSettings.safeParse(entry);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
    return z.NEVER;
  }
  const settings = parseAuthenticatorSettings(parsed.data);
  const head = { name: entry.name, ...(typeof entry.description === 'string' ? { description: entry.description } : {}) };
  if (entry.default) {
    return { ...head, default: true as const, ...Object.fromEntries(EXTRA_FIELDS.map((f) => [f, settings[f]])) };
  }
  try {
    // Keycloak's wording for a bad policy, and its normal form (as the Admin API stores it).
    settings.passwordPolicy = formatPasswordPolicy(parsePasswordPolicy(settings.passwordPolicy, { strict: true }));
  } catch (error) {
    if (!(error instanceof PasswordPolicyError)) throw error;
    ctx.addIssue({ code: 'custom', message: error.message, path: ['passwordPolicy'] });
    return z.NEVER;
  }
  return { ...head, ...settings };
});

/** The realm's list: names unique (case-insensitive, as the database has them), at most one default. */
export const loginAuthenticatorsRep = z.array(loginAuthenticatorRep).superRefine((list, ctx) => {
  const seen = new Set<string>();
  for (const entry of list) {
    const key = entry.name.toLowerCase();
    if (seen.has(key)) ctx.addIssue({ code: 'custom', message: `login authenticator "${entry.name}" is listed twice` });
    seen.add(key);
  }
  const defaults = list.filter((entry) => entry.default);
  if (defaults.length > 1) {
    ctx.addIssue({ code: 'custom', message: `only one login authenticator can be the default (${defaults.map((d) => `"${d.name}"`).join(', ')} are)` });
  }
});

export { stringMap, multiMap };
