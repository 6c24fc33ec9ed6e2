// What Keycloak 26 creates in a brand-new realm, as representation JSON (the shape of a realm
// export), so realm import can build any realm as import(merge(defaults, given)).
//
// Target: Keycloak 26.7.1. Sources, newest first:
//  - a live 26.7.1 instance (ekalinin/gloak conformance goldens: partial-export of master,
//    GET client-scopes / clients), the newest measured data found;
//  - a fresh-realm export from 26.4.5 (tcarr-icloud/keycloak-resource README_WINDOWS.md);
//  - keycloak/keycloak sources: OIDCLoginProtocolFactory, RealmManager, ApplianceBootstrap,
//    AdminRoles, MigrateTo26_7_0.
// Where they disagree the 26.7.1 measurement wins; the comments below say where.
// SAML-only scopes (role_list, saml_organization, AuthnContextClassRef), authentication flows,
// required actions and components (keys, client-registration policies) are deliberately left out.

export type ProtocolMapperRep = { name: string; protocol: 'openid-connect'; protocolMapper: string; consentRequired?: boolean; config: Record<string, string> };
export type ClientScopeRep = { name: string; description?: string; protocol: 'openid-connect'; attributes: Record<string, string>; protocolMappers: ProtocolMapperRep[] };
export type RoleRep = { name: string; description?: string; composite: boolean; composites?: { realm?: string[]; client?: Record<string, string[]> }; clientRole: boolean; attributes?: Record<string, string[]> };
export type ClientRep = {
  clientId: string; name?: string; description?: string; rootUrl?: string; baseUrl?: string; adminUrl?: string;
  enabled: boolean; publicClient: boolean; bearerOnly: boolean; standardFlowEnabled: boolean; implicitFlowEnabled: boolean;
  directAccessGrantsEnabled: boolean; serviceAccountsEnabled: boolean; consentRequired: boolean; fullScopeAllowed: boolean;
  frontchannelLogout: boolean; redirectUris: string[]; webOrigins: string[]; protocol: 'openid-connect';
  clientAuthenticatorType: string; attributes: Record<string, string>; defaultClientScopes: string[];
  optionalClientScopes: string[]; protocolMappers?: ProtocolMapperRep[];
  // Present in every Keycloak export of these clients; optional so callers may ignore them.
  surrogateAuthRequired?: boolean; alwaysDisplayInConsole?: boolean; notBefore?: number;
  nodeReRegistrationTimeout?: number; authenticationFlowBindingOverrides?: Record<string, string>;
};
export type ScopeMappingRep = { clientScope: string; roles: string[] };
export type ClientScopeMappingRep = { client: string; roles: string[] };
export type RealmDefaults = {
  clientScopes: ClientScopeRep[];
  defaultDefaultClientScopes: string[];
  defaultOptionalClientScopes: string[];
  roles: { realm: RoleRep[]; client: Record<string, RoleRep[]> };
  /** default-roles-{realm}; it is also listed in roles.realm, as in a Keycloak export. */
  defaultRole: RoleRep;
  clients: ClientRep[];
  /** Realm-role scope mappings of client scopes (offline_access scope -> offline_access role). */
  scopeMappings: ScopeMappingRep[];
  /** Client-role scope mappings keyed by the role's client (account roles granted to account-console). */
  clientScopeMappings: Record<string, ClientScopeMappingRep[]>;
  settings: Record<string, unknown>;
};
export type RealmDefaultsOptions = {
  /** The admin realm: adds admin/create-realm, drops realm-management, master's own settings. */
  master?: boolean;
  /**
   * Add the `organization` client scope (optional scope of the realm and every built-in client).
   * Keycloak 26 creates it because the Organizations feature is on by default; it is off here
   * unless asked for, since it needs the oidc-organization-membership-mapper.
   */
  organizations?: boolean;
};

const OIDC = 'openid-connect';
const T = 'true';
const F = 'false';

function mapper(name: string, protocolMapper: string, config: Record<string, string>): ProtocolMapperRep {
  return { name, protocol: OIDC, protocolMapper, consentRequired: false, config };
}

/** The standard claim mapper: id token, access token, userinfo and introspection all on. */
function claimMapper(name: string, userAttribute: string, claim: string, jsonType: string, protocolMapper = 'oidc-usermodel-attribute-mapper'): ProtocolMapperRep {
  return mapper(name, protocolMapper, {
    'introspection.token.claim': T,
    'userinfo.token.claim': T,
    'user.attribute': userAttribute,
    'id.token.claim': T,
    'access.token.claim': T,
    'claim.name': claim,
    'jsonType.label': jsonType,
  });
}

/** Session-note mappers carry no userinfo flag (26.4.5 export and 26.7.1 agree; the source passes userInfo=false). */
function sessionNoteMapper(name: string, note: string, claim: string, jsonType: string): ProtocolMapperRep {
  return mapper(name, 'oidc-usersessionmodel-note-mapper', {
    'user.session.note': note,
    'id.token.claim': T,
    'introspection.token.claim': T,
    'access.token.claim': T,
    'claim.name': claim,
    'jsonType.label': jsonType,
  });
}

function scope(name: string, description: string, attributes: Record<string, string>, protocolMappers: ProtocolMapperRep[]): ClientScopeRep {
  return { name, description, protocol: OIDC, attributes, protocolMappers };
}

function consentAttrs(includeInTokenScope: boolean, consentText: string | undefined, display: boolean): Record<string, string> {
  const attrs: Record<string, string> = { 'include.in.token.scope': includeInTokenScope ? T : F };
  if (consentText !== undefined) attrs['consent.screen.text'] = consentText;
  attrs['display.on.consent.screen'] = display ? T : F;
  return attrs;
}

function clientScopes(organizations: boolean): ClientScopeRep[] {
  const scopes: ClientScopeRep[] = [
    scope('profile', 'OpenID Connect built-in scope: profile', consentAttrs(true, '${profileScopeConsentText}', true), [
      mapper('full name', 'oidc-full-name-mapper', { 'id.token.claim': T, 'introspection.token.claim': T, 'access.token.claim': T, 'userinfo.token.claim': T }),
      // firstName/lastName/username/email moved from the property mapper to the attribute
      // mapper with the declarative user profile (KC 24+); every 26.x source agrees.
      claimMapper('family name', 'lastName', 'family_name', 'String'),
      claimMapper('given name', 'firstName', 'given_name', 'String'),
      claimMapper('middle name', 'middleName', 'middle_name', 'String'),
      claimMapper('nickname', 'nickname', 'nickname', 'String'),
      claimMapper('username', 'username', 'preferred_username', 'String'),
      claimMapper('profile', 'profile', 'profile', 'String'),
      claimMapper('picture', 'picture', 'picture', 'String'),
      claimMapper('website', 'website', 'website', 'String'),
      claimMapper('gender', 'gender', 'gender', 'String'),
      claimMapper('birthdate', 'birthdate', 'birthdate', 'String'),
      claimMapper('zoneinfo', 'zoneinfo', 'zoneinfo', 'String'),
      claimMapper('locale', 'locale', 'locale', 'String'),
      claimMapper('updated at', 'updatedAt', 'updated_at', 'long'),
    ]),
    scope('email', 'OpenID Connect built-in scope: email', consentAttrs(true, '${emailScopeConsentText}', true), [
      claimMapper('email', 'email', 'email', 'String'),
      // emailVerified is a user property, not an attribute, so this one kept the property mapper.
      claimMapper('email verified', 'emailVerified', 'email_verified', 'boolean', 'oidc-usermodel-property-mapper'),
    ]),
    scope('roles', 'OpenID Connect scope for add user roles to the access token', consentAttrs(false, '${rolesScopeConsentText}', true), [
      // Role mappers go to the access token and introspection only, never the ID token or userinfo.
      mapper('realm roles', 'oidc-usermodel-realm-role-mapper', {
        'user.attribute': 'foo', 'introspection.token.claim': T, 'access.token.claim': T,
        'claim.name': 'realm_access.roles', 'jsonType.label': 'String', multivalued: T,
      }),
      mapper('client roles', 'oidc-usermodel-client-role-mapper', {
        'user.attribute': 'foo', 'introspection.token.claim': T, 'access.token.claim': T,
        'claim.name': 'resource_access.${client_id}.roles', 'jsonType.label': 'String', multivalued: T,
      }),
      mapper('audience resolve', 'oidc-audience-resolve-mapper', { 'introspection.token.claim': T, 'access.token.claim': T }),
    ]),
    scope('web-origins', 'OpenID Connect scope for add allowed web origins to the access token', consentAttrs(false, '', false), [
      mapper('allowed web origins', 'oidc-allowed-origins-mapper', { 'introspection.token.claim': T, 'access.token.claim': T }),
    ]),
    // A 26.6.1 export (of an imported realm) also had userinfo.token.claim on acr, auth_time and
    // the service_account mappers; the live 26.7.1 instance and 26.4.5 do not, so neither do we.
    scope('acr', 'OpenID Connect scope for add acr (authentication context class reference) to the token', consentAttrs(false, undefined, false), [
      mapper('acr loa level', 'oidc-acr-mapper', { 'id.token.claim': T, 'introspection.token.claim': T, 'access.token.claim': T }),
    ]),
    scope('basic', 'OpenID Connect scope for add all basic claims to the token', consentAttrs(false, undefined, false), [
      sessionNoteMapper('auth_time', 'AUTH_TIME', 'auth_time', 'long'),
      mapper('sub', 'oidc-sub-mapper', { 'introspection.token.claim': T, 'access.token.claim': T }),
    ]),
    // No include.in.token.scope attribute at all: Keycloak treats it as true (offline_access shows in `scope`).
    { name: 'offline_access', description: 'OpenID Connect built-in scope: offline_access', protocol: OIDC,
      attributes: { 'consent.screen.text': '${offlineAccessScopeConsentText}', 'display.on.consent.screen': T }, protocolMappers: [] },
    scope('address', 'OpenID Connect built-in scope: address', consentAttrs(true, '${addressScopeConsentText}', true), [
      mapper('address', 'oidc-address-mapper', {
        'user.attribute.formatted': 'formatted', 'user.attribute.country': 'country', 'introspection.token.claim': T,
        'user.attribute.postal_code': 'postal_code', 'userinfo.token.claim': T, 'user.attribute.street': 'street',
        'id.token.claim': T, 'user.attribute.region': 'region', 'access.token.claim': T, 'user.attribute.locality': 'locality',
      }),
    ]),
    scope('phone', 'OpenID Connect built-in scope: phone', consentAttrs(true, '${phoneScopeConsentText}', true), [
      claimMapper('phone number', 'phoneNumber', 'phone_number', 'String'),
      claimMapper('phone number verified', 'phoneNumberVerified', 'phone_number_verified', 'boolean'),
    ]),
    scope('microprofile-jwt', 'Microprofile - JWT built-in scope', consentAttrs(true, undefined, false), [
      claimMapper('upn', 'username', 'upn', 'String'),
      // Unlike the roles scope, MicroProfile's groups claim goes into the ID token too (and not userinfo).
      mapper('groups', 'oidc-usermodel-realm-role-mapper', {
        'introspection.token.claim': T, multivalued: T, 'user.attribute': 'foo', 'id.token.claim': T,
        'access.token.claim': T, 'claim.name': 'groups', 'jsonType.label': 'String',
      }),
    ]),
    // Created in every realm but in neither default list: Keycloak attaches it as a default scope
    // to a client when its service account is enabled.
    scope('service_account', 'Specific scope for a client enabled for service accounts', consentAttrs(false, undefined, false), [
      sessionNoteMapper('Client ID', 'client_id', 'client_id', 'String'),
      sessionNoteMapper('Client Host', 'clientHost', 'clientHost', 'String'),
      sessionNoteMapper('Client IP Address', 'clientAddress', 'clientAddress', 'String'),
    ]),
  ];
  if (organizations) {
    scopes.push(scope('organization', 'Additional claims about the organization a subject belongs to', consentAttrs(true, '${organizationScopeConsentText}', true), [
      mapper('organization', 'oidc-organization-membership-mapper', {
        'id.token.claim': T, 'introspection.token.claim': T, 'access.token.claim': T,
        'claim.name': 'organization', 'jsonType.label': 'String', multivalued: T,
      }),
    ]));
  }
  return scopes;
}

function role(name: string, clientRole: boolean, composites?: { realm?: string[]; client?: Record<string, string[]> }, description = `\${role_${name}}`): RoleRep {
  const rep: RoleRep = { name, description, composite: composites !== undefined, clientRole, attributes: {} };
  if (composites) rep.composites = composites;
  return rep;
}

// Keycloak 26.7 added the three *-organizations roles (AdminRoles.ALL_REALM_ROLES, MigrateTo26_7_0),
// unconditionally, i.e. with or without the Organizations feature; 26.0-26.6 have the other 18.
const ADMIN_ROLES = [
  'create-client', 'impersonation', 'manage-authorization', 'manage-clients', 'manage-events',
  'manage-identity-providers', 'manage-organizations', 'manage-realm', 'manage-users', 'query-clients',
  'query-groups', 'query-organizations', 'query-realms', 'query-users', 'view-authorization',
  'view-clients', 'view-events', 'view-identity-providers', 'view-organizations', 'view-realm', 'view-users',
];
// RealmManager.addQueryCompositeRoles plus the 26.7 organizations pair.
const ADMIN_ROLE_COMPOSITES: Record<string, string[]> = {
  'view-clients': ['query-clients'],
  'view-users': ['query-users', 'query-groups'],
  'view-organizations': ['query-organizations'],
};

function realmManagementRoles(): RoleRep[] {
  const roles = ADMIN_ROLES.map((name) => {
    const children = ADMIN_ROLE_COMPOSITES[name];
    return role(name, true, children ? { client: { 'realm-management': [...children] } } : undefined);
  });
  roles.unshift(role('realm-admin', true, { client: { 'realm-management': [...ADMIN_ROLES] } }));
  return roles;
}

function accountRoles(): RoleRep[] {
  return [
    role('view-profile', true),
    role('manage-account', true, { client: { account: ['manage-account-links'] } }),
    role('manage-account-links', true),
    role('view-applications', true),
    role('view-consent', true),
    role('manage-consent', true, { client: { account: ['view-consent'] } }),
    role('delete-account', true),
    role('view-groups', true),
  ];
}

function defaultRole(realmName: string): RoleRep {
  return role(`default-roles-${realmName.toLowerCase()}`, false, {
    realm: ['offline_access', 'uma_authorization'],
    client: { account: ['view-profile', 'manage-account'] },
  }, '${role_default-roles}');
}

function realmRoles(realmName: string, master: boolean): RoleRep[] {
  const roles = [
    role('offline_access', false, undefined, '${role_offline-access}'),
    role('uma_authorization', false),
    // Beyond Keycloak: lets a user manage their own access keys (CXone's "My Access Key").
    role('manage-own-access-keys', false, undefined, 'Manage own access keys'),
    defaultRole(realmName),
  ];
  if (master) {
    // Keycloak also makes admin a composite of every role of each `<realm>-realm` client in
    // master; those clients are created by whoever creates the realms, so they add that link.
    roles.push(role('admin', false, { realm: ['create-realm'] }), role('create-realm', false));
  }
  return roles;
}

function client(clientId: string, fields: Partial<ClientRep>, defaultScopes: string[], optionalScopes: string[]): ClientRep {
  return {
    clientId,
    name: `\${client_${clientId}}`,
    surrogateAuthRequired: false,
    enabled: true,
    alwaysDisplayInConsole: false,
    clientAuthenticatorType: 'client-secret',
    redirectUris: [],
    webOrigins: [],
    notBefore: 0,
    bearerOnly: false,
    consentRequired: false,
    standardFlowEnabled: true,
    implicitFlowEnabled: false,
    directAccessGrantsEnabled: false,
    serviceAccountsEnabled: false,
    publicClient: false,
    frontchannelLogout: false,
    protocol: OIDC,
    attributes: {},
    authenticationFlowBindingOverrides: {},
    fullScopeAllowed: false,
    nodeReRegistrationTimeout: 0,
    ...fields,
    defaultClientScopes: [...defaultScopes],
    optionalClientScopes: [...optionalScopes],
  };
}

function clients(realmName: string, master: boolean, defaults: string[], optional: string[]): ClientRep[] {
  const accountBase = `/realms/${realmName}/account/`;
  const consoleBase = `/admin/${realmName}/console/`;
  const list = [
    client('account', {
      rootUrl: '${authBaseUrl}', baseUrl: accountBase, redirectUris: [`${accountBase}*`], publicClient: true,
      attributes: { realm_client: F, 'post.logout.redirect.uris': '+' },
    }, defaults, optional),
    client('account-console', {
      rootUrl: '${authBaseUrl}', baseUrl: accountBase, redirectUris: [`${accountBase}*`], publicClient: true,
      attributes: { realm_client: F, 'post.logout.redirect.uris': '+', 'pkce.code.challenge.method': 'S256' },
      // The bare client-level mapper has an empty config, unlike the one in the roles scope.
      protocolMappers: [mapper('audience resolve', 'oidc-audience-resolve-mapper', {})],
    }, defaults, optional),
    // fullScopeAllowed true and lightweight tokens on admin-cli and the admin console are 25+/26
    // behaviour (older exports show fullScopeAllowed false); measured on 26.4.5 and 26.7.1.
    client('admin-cli', {
      standardFlowEnabled: false, directAccessGrantsEnabled: true, publicClient: true, fullScopeAllowed: true,
      attributes: { realm_client: F, 'client.use.lightweight.access.token.enabled': T },
    }, defaults, optional),
    client('broker', { bearerOnly: true, attributes: { realm_client: T } }, defaults, optional),
  ];
  // The master realm manages itself through its `<realm>-realm` clients instead.
  if (!master) list.push(client('realm-management', { bearerOnly: true, attributes: { realm_client: T } }, defaults, optional));
  list.push(client('security-admin-console', {
    rootUrl: '${authAdminUrl}', baseUrl: consoleBase, redirectUris: [`${consoleBase}*`], webOrigins: ['+'],
    publicClient: true, fullScopeAllowed: true,
    attributes: { realm_client: F, 'client.use.lightweight.access.token.enabled': T, 'post.logout.redirect.uris': '+', 'pkce.code.challenge.method': 'S256' },
    protocolMappers: [claimMapper('locale', 'locale', 'locale', 'String')],
  }, defaults, optional));
  return list;
}

function settings(master: boolean): Record<string, unknown> {
  return {
    // ApplianceBootstrap gives master a display name and a 60 s access token.
    ...(master ? { displayName: 'Keycloak', displayNameHtml: '<div class="kc-logo-text"><span>Keycloak</span></div>' } : {}),
    notBefore: 0,
    defaultSignatureAlgorithm: 'RS256',
    revokeRefreshToken: false,
    refreshTokenMaxReuse: 0,
    accessTokenLifespan: master ? 60 : 300,
    accessTokenLifespanForImplicitFlow: 900,
    ssoSessionIdleTimeout: 1800,
    ssoSessionMaxLifespan: 36000,
    ssoSessionIdleTimeoutRememberMe: 0,
    ssoSessionMaxLifespanRememberMe: 0,
    offlineSessionIdleTimeout: 2592000,
    offlineSessionMaxLifespanEnabled: false,
    offlineSessionMaxLifespan: 5184000,
    clientSessionIdleTimeout: 0,
    clientSessionMaxLifespan: 0,
    clientOfflineSessionIdleTimeout: 0,
    clientOfflineSessionMaxLifespan: 0,
    accessCodeLifespan: 60,
    accessCodeLifespanUserAction: 300,
    accessCodeLifespanLogin: 1800,
    actionTokenGeneratedByAdminLifespan: 43200,
    actionTokenGeneratedByUserLifespan: 300,
    oauth2DeviceCodeLifespan: 600,
    oauth2DevicePollingInterval: 5,
    enabled: true,
    sslRequired: 'external',
    registrationAllowed: false,
    registrationEmailAsUsername: false,
    rememberMe: false,
    verifyEmail: false,
    loginWithEmailAllowed: true,
    duplicateEmailsAllowed: false,
    resetPasswordAllowed: false,
    editUsernameAllowed: false,
    bruteForceProtected: false,
    permanentLockout: false,
    maxTemporaryLockouts: 0,
    bruteForceStrategy: 'MULTIPLE',
    maxFailureWaitSeconds: 900,
    minimumQuickLoginWaitSeconds: 60,
    waitIncrementSeconds: 60,
    quickLoginCheckMilliSeconds: 1000,
    maxDeltaTimeSeconds: 43200,
    failureFactor: 30,
    maxSecondaryAuthFailures: 0,
    requiredCredentials: ['password'],
    otpPolicyType: 'totp',
    otpPolicyAlgorithm: 'HmacSHA1',
    otpPolicyInitialCounter: 0,
    otpPolicyDigits: 6,
    otpPolicyLookAheadWindow: 1,
    otpPolicyPeriod: 30,
    otpPolicyCodeReusable: false,
    // Message keys, resolved by the theme.
    otpSupportedApplications: ['totpAppFreeOTPName', 'totpAppGoogleName', 'totpAppMicrosoftAuthenticatorName'],
    localizationTexts: {},
    webAuthnPolicyRpEntityName: 'keycloak',
    webAuthnPolicySignatureAlgorithms: ['ES256', 'RS256'],
    webAuthnPolicyRpId: '',
    webAuthnPolicyAttestationConveyancePreference: 'not specified',
    webAuthnPolicyAuthenticatorAttachment: 'not specified',
    webAuthnPolicyRequireResidentKey: 'not specified',
    // The *ResidentKey fields are 26.7; before that passwordless RequireResidentKey was "Yes".
    webAuthnPolicyResidentKey: 'not specified',
    webAuthnPolicyUserVerificationRequirement: 'not specified',
    webAuthnPolicyCreateTimeout: 0,
    webAuthnPolicyAvoidSameAuthenticatorRegister: false,
    webAuthnPolicyAcceptableAaguids: [],
    webAuthnPolicyExtraOrigins: [],
    webAuthnPolicyPasswordlessRpEntityName: 'keycloak',
    webAuthnPolicyPasswordlessSignatureAlgorithms: ['ES256', 'RS256'],
    webAuthnPolicyPasswordlessRpId: '',
    webAuthnPolicyPasswordlessAttestationConveyancePreference: 'not specified',
    webAuthnPolicyPasswordlessAuthenticatorAttachment: 'not specified',
    webAuthnPolicyPasswordlessRequireResidentKey: 'not specified',
    webAuthnPolicyPasswordlessResidentKey: 'required',
    webAuthnPolicyPasswordlessUserVerificationRequirement: 'required',
    webAuthnPolicyPasswordlessCreateTimeout: 0,
    webAuthnPolicyPasswordlessAvoidSameAuthenticatorRegister: false,
    webAuthnPolicyPasswordlessAcceptableAaguids: [],
    webAuthnPolicyPasswordlessExtraOrigins: [],
    browserSecurityHeaders: {
      contentSecurityPolicyReportOnly: '',
      xContentTypeOptions: 'nosniff',
      referrerPolicy: 'no-referrer',
      xRobotsTag: 'none',
      xFrameOptions: 'SAMEORIGIN',
      contentSecurityPolicy: "frame-src 'self'; frame-ancestors 'self'; object-src 'none';",
      strictTransportSecurity: 'max-age=31536000; includeSubDomains',
    },
    smtpServer: {},
    eventsEnabled: false,
    eventsListeners: ['jboss-logging'],
    enabledEventTypes: [],
    adminEventsEnabled: false,
    adminEventsDetailsEnabled: false,
    internationalizationEnabled: false,
    // Keycloak omits an empty list from exports; kept so a merge has a typed default.
    supportedLocales: [],
    // Names of the built-in flows; the flows themselves are not part of these defaults.
    browserFlow: 'browser',
    registrationFlow: 'registration',
    directGrantFlow: 'direct grant',
    resetCredentialsFlow: 'reset credentials',
    clientAuthenticationFlow: 'clients',
    dockerAuthenticationFlow: 'docker auth',
    firstBrokerLoginFlow: 'first broker login',
    // Stored realm attributes of an untouched 26.7.1 realm (26.4.5 also listed the device-grant
    // values here, which the admin console writes on first save).
    attributes: {
      cibaAuthRequestedUserHint: 'login_hint',
      cibaBackchannelTokenDeliveryMode: 'poll',
      cibaExpiresIn: '120',
      cibaInterval: '5',
      parRequestUriLifespan: '60',
      realmReusableOtpCode: F,
    },
    userManagedAccessAllowed: false,
    organizationsEnabled: false,
    verifiableCredentialsEnabled: false,
    adminPermissionsEnabled: false,
    scimApiEnabled: false,
    clientProfiles: { profiles: [] },
    clientPolicies: { policies: [] },
  };
}

/**
 * What Keycloak 26 creates in a new realm named `realmName`. Pure: every call builds fresh
 * objects, so callers may mutate the result.
 */
export function keycloakRealmDefaults(realmName: string, options?: RealmDefaultsOptions): RealmDefaults {
  const master = options?.master ?? false;
  const organizations = options?.organizations ?? false;
  const defaultScopes = ['profile', 'email', 'roles', 'web-origins', 'acr', 'basic'];
  const optionalScopes = ['offline_access', 'address', 'phone', 'microprofile-jwt', ...(organizations ? ['organization'] : [])];
  // Built-in clients get the realm's scopes in this order (as exported).
  const clientDefaults = ['web-origins', 'acr', 'profile', 'roles', 'basic', 'email'];
  const clientOptional = ['address', 'phone', 'offline_access', ...(organizations ? ['organization'] : []), 'microprofile-jwt'];

  const clientRoles: Record<string, RoleRep[]> = {};
  if (!master) clientRoles['realm-management'] = realmManagementRoles();
  clientRoles['security-admin-console'] = [];
  clientRoles['admin-cli'] = [];
  clientRoles['account-console'] = [];
  clientRoles.broker = [role('read-token', true)];
  clientRoles.account = accountRoles();

  return {
    clientScopes: clientScopes(organizations),
    defaultDefaultClientScopes: defaultScopes,
    defaultOptionalClientScopes: optionalScopes,
    roles: { realm: realmRoles(realmName, master), client: clientRoles },
    defaultRole: defaultRole(realmName),
    clients: clients(realmName, master, clientDefaults, clientOptional),
    scopeMappings: [{ clientScope: 'offline_access', roles: ['offline_access'] }],
    clientScopeMappings: { account: [{ client: 'account-console', roles: ['manage-account', 'view-groups'] }] },
    settings: settings(master),
  };
}
