// Kysely table types: the schema of migrations/ as the compiler sees it.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

type Json = ColumnType<unknown, string | unknown, string | unknown>;
type JsonOf<T> = ColumnType<T, T | string, T | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** Set on insert by default, updated later (last refresh...). */
type Touched = ColumnType<Date, Date | string | undefined, Date | string>;

export type RealmTable = {
  id: string;
  name: string;
  enabled: Generated<boolean>;
  display_name: string | null;
  settings: JsonOf<Record<string, unknown>>;
  not_before: Generated<number>;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
};

export type ClientTable = {
  id: string;
  realm_id: string;
  client_id: string;
  name: string | null;
  description: string | null;
  enabled: Generated<boolean>;
  protocol: Generated<string>;
  public_client: Generated<boolean>;
  bearer_only: Generated<boolean>;
  client_authenticator_type: Generated<string>;
  secret_sealed: string | null;
  standard_flow_enabled: Generated<boolean>;
  implicit_flow_enabled: Generated<boolean>;
  direct_access_grants_enabled: Generated<boolean>;
  service_accounts_enabled: Generated<boolean>;
  consent_required: Generated<boolean>;
  full_scope_allowed: Generated<boolean>;
  frontchannel_logout: Generated<boolean>;
  root_url: string | null;
  base_url: string | null;
  admin_url: string | null;
  redirect_uris: JsonOf<string[]>;
  web_origins: JsonOf<string[]>;
  attributes: JsonOf<Record<string, string>>;
  extra: JsonOf<Record<string, unknown>>;
  created_at: CreatedAt;
};

export type UserTable = {
  id: string;
  realm_id: string;
  username: string;
  email: string | null;
  email_verified: Generated<boolean>;
  enabled: Generated<boolean>;
  first_name: string | null;
  last_name: string | null;
  federation_link: string | null;
  service_account_client_id: string | null;
  application: Generated<boolean>;
  attributes: JsonOf<Record<string, string[]>>;
  required_actions: JsonOf<string[]>;
  not_before: Generated<number>;
  /** The user's own login authenticator; null = the groups' or the realm default. */
  login_authenticator_id: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
};

export type CredentialTable = {
  id: string;
  realm_id: string;
  user_id: string;
  type: string;
  user_label: string | null;
  secret_data: string;
  credential_data: Json;
  priority: Generated<number>;
  created_at: CreatedAt;
};

export type RoleTable = {
  id: string;
  realm_id: string;
  client_id: string | null;
  name: string;
  description: string | null;
  attributes: JsonOf<Record<string, string[]>>;
};

export type RoleCompositeTable = { parent_id: string; child_id: string };

export type GroupTable = {
  id: string;
  realm_id: string;
  parent_id: string | null;
  name: string;
  description: string | null;
  attributes: JsonOf<Record<string, string[]>>;
  login_authenticator_id: ColumnType<string | null, string | null | undefined, string | null>;
};

export type UserRoleTable = { user_id: string; role_id: string };
export type GroupRoleTable = { group_id: string; role_id: string };
export type UserGroupTable = { user_id: string; group_id: string };

export type ClientScopeTable = {
  id: string;
  realm_id: string;
  name: string;
  description: string | null;
  protocol: Generated<string>;
  attributes: JsonOf<Record<string, string>>;
};

export type RealmDefaultClientScopeTable = { realm_id: string; client_scope_id: string; default_scope: boolean };
export type ClientClientScopeTable = { client_id: string; client_scope_id: string; default_scope: boolean };

export type ProtocolMapperTable = {
  id: string;
  realm_id: string;
  client_id: string | null;
  client_scope_id: string | null;
  name: string;
  protocol: Generated<string>;
  protocol_mapper: string;
  config: JsonOf<Record<string, string>>;
};

export type ScopeMappingTable = { client_id: string | null; client_scope_id: string | null; role_id: string };

export type SigningKeyTable = {
  kid: string;
  realm_id: string;
  alg: string;
  public_jwk: JsonOf<Record<string, unknown>>;
  private_jwk_sealed: string;
  status: 'active' | 'passive';
  created_at: CreatedAt;
  retire_at: Timestamp | null;
};

export type OidcPayloadTable = {
  realm_id: string;
  model: string;
  id: string;
  payload: JsonOf<Record<string, unknown>>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  expires_at: Timestamp | null;
  consumed_at: Timestamp | null;
};

export type EventTable = {
  id: string;
  realm_id: string;
  time: CreatedAt;
  type: string;
  client_id: string | null;
  user_id: string | null;
  session_id: string | null;
  ip_address: string | null;
  error: string | null;
  details: JsonOf<Record<string, unknown>>;
};

export type AdminEventTable = {
  id: string;
  realm_id: string;
  time: CreatedAt;
  operation_type: string;
  resource_type: string;
  resource_path: string;
  auth_realm_id: string | null;
  auth_client_id: string | null;
  auth_user_id: string | null;
  ip_address: string | null;
  representation: Json | null;
  error: string | null;
};

export type UserSessionTable = {
  id: string;
  offline: boolean;
  realm_id: string;
  user_id: string;
  login_username: string;
  ip_address: string | null;
  remember_me: Generated<boolean>;
  auth_time: number;
  started_at: Touched;
  last_refresh_at: Touched;
  expires_at: Timestamp | null;
};

export type ClientSessionTable = {
  user_session_id: string;
  offline: boolean;
  client_id: string;
  realm_id: string;
  grant_id: string | null;
  scope: string;
  started_at: CreatedAt;
  last_refresh_at: Touched;
  current_refresh_jti: string | null;
  refresh_use_count: Generated<number>;
  latest_refresh_jti: string | null;
  rotated_from_jti: string | null;
  rotated_at: Timestamp | null;
  successor_sealed: string | null;
};

export type IdentityProviderTable = {
  internal_id: string;
  realm_id: string;
  alias: string;
  provider_id: string;
  display_name: string | null;
  enabled: Generated<boolean>;
  trust_email: Generated<boolean>;
  store_token: Generated<boolean>;
  link_only: Generated<boolean>;
  hide_on_login: Generated<boolean>;
  config: JsonOf<Record<string, string>>;
  secrets_sealed: string | null;
  extra: JsonOf<Record<string, unknown>>;
};

export type IdentityProviderMapperTable = {
  id: string;
  realm_id: string;
  identity_provider_id: string;
  name: string;
  mapper_type: string;
  config: JsonOf<Record<string, string>>;
};

export type ComponentTable = {
  id: string;
  realm_id: string;
  parent_id: string;
  name: string;
  provider_id: string;
  provider_type: string;
  sub_type: string | null;
  config: JsonOf<Record<string, string[]>>;
  secrets_sealed: string | null;
};

export type FederatedIdentityTable = {
  realm_id: string;
  user_id: string;
  identity_provider: string;
  external_user_id: string;
  external_username: string | null;
  token_sealed: string | null;
};

export type RealmDefaultGroupTable = { realm_id: string; group_id: string };

export type UserConsentTable = {
  user_id: string;
  client_id: string;
  realm_id: string;
  granted_scopes: JsonOf<string[]>;
  created_at: CreatedAt;
  updated_at: Touched;
};

export type LoginFailureTable = {
  realm_id: string;
  user_id: string;
  num_failures: Generated<number>;
  num_temporary_lockouts: Generated<number>;
  /** Epoch milliseconds, as Keycloak reports them. */
  last_failure: ColumnType<number, number | undefined, number>;
  last_ip_failure: string | null;
  failed_login_not_before: ColumnType<number, number | undefined, number>;
};

export type AccessKeyTable = {
  id: string;
  realm_id: string;
  user_id: string;
  secret_digest: string;
  label: string | null;
  enabled: Generated<boolean>;
  created_at: CreatedAt;
  expires_at: Timestamp | null;
  last_used_at: Timestamp | null;
};

export type LoginAuthenticatorTable = {
  id: string;
  realm_id: string;
  name: string;
  description: string | null;
  /** The realm default's Keycloak-mirrored fields live in the realm settings, not here. */
  is_default: Generated<boolean>;
  config: JsonOf<Record<string, unknown>>;
  created_at: CreatedAt;
};

export type ActionTokenTable = {
  /** HMAC-SHA256 of the token (base64url); the token itself is only in the e-mailed link. */
  digest: string;
  realm_id: string;
  user_id: string;
  kind: string;
  payload: JsonOf<Record<string, unknown>>;
  created_at: CreatedAt;
  expires_at: Timestamp;
  used_at: Timestamp | null;
};

export type OtpUsedStepTable = { credential_id: string; step: number; expires_at: Timestamp };

/** A login in flight at an upstream identity provider (src/broker/broker-requests.ts). */
export type BrokerRequestTable = {
  id: string;
  realm_id: string;
  identity_provider: string;
  interaction_uid: string | null;
  client_id: string | null;
  protocol_sealed: string | null;
  identity_sealed: string | null;
  created_at: CreatedAt;
  expires_at: Timestamp;
  consumed_at: Timestamp | null;
};

/** SAML assertion ids seen, kept until the assertion expires (replay protection). */
export type SamlAssertionIdTable = { realm_id: string; identity_provider: string; assertion_id: string; expires_at: Timestamp };

/** The upstream side of a brokered user session (logout propagation). */
export type BrokerSessionTable = {
  session_id: string;
  realm_id: string;
  identity_provider: string;
  user_id: string;
  external_user_id: string;
  external_session: string | null;
  data_sealed: string | null;
  created_at: CreatedAt;
};

export type RealmUserCountTable = { realm_id: string; people: number };

/** Bumped by triggers on every change to a realm's roles, composites, groups or group roles. */
export type RoleGraphVersionTable = { realm_id: string; version: number };

export type Database = {
  realms: RealmTable;
  clients: ClientTable;
  users: UserTable;
  credentials: CredentialTable;
  roles: RoleTable;
  role_composites: RoleCompositeTable;
  groups: GroupTable;
  user_roles: UserRoleTable;
  group_roles: GroupRoleTable;
  user_groups: UserGroupTable;
  client_scopes: ClientScopeTable;
  realm_default_client_scopes: RealmDefaultClientScopeTable;
  client_client_scopes: ClientClientScopeTable;
  protocol_mappers: ProtocolMapperTable;
  scope_mappings: ScopeMappingTable;
  signing_keys: SigningKeyTable;
  oidc_payloads: OidcPayloadTable;
  events: EventTable;
  admin_events: AdminEventTable;
  user_sessions: UserSessionTable;
  client_sessions: ClientSessionTable;
  identity_providers: IdentityProviderTable;
  identity_provider_mappers: IdentityProviderMapperTable;
  components: ComponentTable;
  federated_identities: FederatedIdentityTable;
  realm_default_groups: RealmDefaultGroupTable;
  user_consents: UserConsentTable;
  login_failures: LoginFailureTable;
  access_keys: AccessKeyTable;
  realm_user_counts: RealmUserCountTable;
  role_graph_versions: RoleGraphVersionTable;
  login_authenticators: LoginAuthenticatorTable;
  action_tokens: ActionTokenTable;
  otp_used_steps: OtpUsedStepTable;
  broker_requests: BrokerRequestTable;
  saml_assertion_ids: SamlAssertionIdTable;
  broker_sessions: BrokerSessionTable;
};

export type Realm = Selectable<RealmTable>;
export type Client = Selectable<ClientTable>;
export type NewClient = Insertable<ClientTable>;
export type ClientUpdate = Updateable<ClientTable>;
export type User = Selectable<UserTable>;
export type NewUser = Insertable<UserTable>;
export type Role = Selectable<RoleTable>;
export type ClientScope = Selectable<ClientScopeTable>;
export type ProtocolMapper = Selectable<ProtocolMapperTable>;
export type SigningKey = Selectable<SigningKeyTable>;
export type UserSession = Selectable<UserSessionTable>;
export type ClientSession = Selectable<ClientSessionTable>;
export type IdentityProvider = Selectable<IdentityProviderTable>;
export type Component = Selectable<ComponentTable>;
export type Group = Selectable<GroupTable>;
export type AccessKey = Selectable<AccessKeyTable>;
export type LoginAuthenticator = Selectable<LoginAuthenticatorTable>;
export type Credential = Selectable<CredentialTable>;
