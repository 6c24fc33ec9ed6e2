// Keycloak representations (realm export JSON, Admin API bodies) as zod schemas. Only the fields
// Cloakroom interprets are declared; `.loose()` keeps the rest so nothing a Keycloak export
// carries is rejected.
import { z } from 'zod';

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
};
export const groupRep: z.ZodType<GroupRepresentation> = z.lazy(() => z.object({
  id: z.string().optional(),
  name: z.string().min(1),
  description: z.string().nullish(),
  attributes: attributeMap.optional(),
  realmRoles: z.array(z.string()).optional(),
  clientRoles: z.record(z.string(), z.array(z.string())).optional(),
  subGroups: z.array(groupRep).optional(),
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
  'identityProviderMappers', 'authenticationFlows', 'authenticatorConfig', 'requiredActions',
]);

export { stringMap, multiMap };
