// GET {base}/admin/serverinfo: what this server supports, in the shape of Keycloak's
// ServerInfoRepresentation (the parts tools read: version, protocol mapper types, providers,
// identity provider types, password policies, enums).
import os from 'node:os';

import { PROTOCOL_MAPPER_TYPES } from '../oidc/protocol-mappers.ts';
import { AdminError, ok, type AdminRouter } from './router.ts';

/** The Keycloak version whose Admin API and realm JSON this server follows. */
export const KEYCLOAK_COMPATIBLE_VERSION = '26.4.0';

const started = Date.now();

const IDENTITY_PROVIDER_TYPES = [
  { id: 'oidc', name: 'OpenID Connect v1.0' },
  { id: 'keycloak-oidc', name: 'Keycloak OpenID Connect' },
  { id: 'oauth2', name: 'OAuth v2.0' },
  { id: 'saml', name: 'SAML v2.0' },
  { id: 'finesse', name: 'Cisco Finesse' },
];

const PASSWORD_POLICIES = [
  'length', 'maxLength', 'lowerCase', 'upperCase', 'digits', 'specialChars', 'notUsername', 'notEmail',
  'regexPattern', 'passwordHistory', 'forceExpiredPasswordChange', 'hashAlgorithm', 'hashIterations',
].map((id) => ({ id, displayName: id, configType: 'int', multipleSupported: false }));

export function registerServerInfoRoutes(admin: AdminRouter): void {
  admin.server('get', '/serverinfo', {}, async (req) => {
    // Keycloak answers any admin; a token without any management role gets 403.
    const realm = await req.db.selectFrom('realms').select(['id', 'name']).where('id', '=', req.auth.identity.realmId).executeTakeFirstOrThrow();
    if (!req.auth.isSuperAdmin && !req.auth.canAccess(realm) && !req.auth.canCreateRealm) throw new AdminError(403, 'HTTP 403 Forbidden');
    const memory = process.memoryUsage();
    return ok({
      systemInfo: {
        version: KEYCLOAK_COMPATIBLE_VERSION,
        serverTime: new Date().toISOString(),
        uptime: `${Math.floor((Date.now() - started) / 1000)} seconds`,
        uptimeMillis: Date.now() - started,
        javaVersion: process.versions.node,
        javaVendor: 'Cloakroom (Node.js)',
        osName: os.type(), osVersion: os.release(), osArchitecture: os.arch(),
      },
      memoryInfo: {
        total: memory.heapTotal, used: memory.heapUsed, free: memory.heapTotal - memory.heapUsed,
        usedPercentage: Math.round((memory.heapUsed / memory.heapTotal) * 100),
        totalFormated: `${Math.round(memory.heapTotal / 1048576)} MB`, usedFormated: `${Math.round(memory.heapUsed / 1048576)} MB`,
        freeFormated: `${Math.round((memory.heapTotal - memory.heapUsed) / 1048576)} MB`,
      },
      profileInfo: { name: 'community', disabledFeatures: [], previewFeatures: [], experimentalFeatures: [] },
      themes: { login: [{ name: 'default', locales: ['en', 'de'] }] },
      protocolMapperTypes: {
        'openid-connect': Object.entries(PROTOCOL_MAPPER_TYPES).map(([id, type]) => ({
          id, name: type.name, category: type.category, helpText: '', priority: 0, properties: [],
        })),
      },
      builtinProtocolMappers: { 'openid-connect': [] },
      identityProviders: IDENTITY_PROVIDER_TYPES,
      socialProviders: [],
      clientImporters: [],
      passwordPolicies: PASSWORD_POLICIES,
      componentTypes: {
        'org.keycloak.storage.UserStorageProvider': [{ id: 'ldap', helpText: 'LDAP and Active Directory', properties: [] }],
      },
      enums: {
        operationType: ['CREATE', 'UPDATE', 'DELETE', 'ACTION'],
        resourceType: ['REALM', 'REALM_ROLE', 'REALM_ROLE_MAPPING', 'REALM_SCOPE_MAPPING', 'AUTH_FLOW', 'AUTH_EXECUTION_FLOW', 'AUTH_EXECUTION', 'AUTHENTICATOR_CONFIG', 'REQUIRED_ACTION', 'IDENTITY_PROVIDER', 'IDENTITY_PROVIDER_MAPPER', 'PROTOCOL_MAPPER', 'USER', 'USER_LOGIN_FAILURE', 'USER_SESSION', 'USER_FEDERATION_PROVIDER', 'USER_FEDERATION_MAPPER', 'GROUP', 'GROUP_MEMBERSHIP', 'CLIENT', 'CLIENT_INITIAL_ACCESS_MODEL', 'CLIENT_ROLE', 'CLIENT_ROLE_MAPPING', 'CLIENT_SCOPE', 'CLIENT_SCOPE_MAPPING', 'CLIENT_SCOPE_CLIENT_MAPPING', 'CLUSTER_NODE', 'COMPONENT', 'AUTHORIZATION_RESOURCE_SERVER', 'AUTHORIZATION_RESOURCE', 'AUTHORIZATION_SCOPE', 'AUTHORIZATION_POLICY', 'CUSTOM', 'USER_PROFILE', 'ORGANIZATION', 'ORGANIZATION_MEMBERSHIP', 'USER_STORAGE'],
      },
      cryptoInfo: { cryptoProvider: 'node:crypto', supportedKeystoreTypes: [], clientSignatureSymmetricAlgorithms: ['HS256', 'HS384', 'HS512'], clientSignatureAsymmetricAlgorithms: ['RS256', 'ES256'] },
    });
  });
}
