// Migrations in order. Listed statically (not read from the file system) so they work the same
// under Node's type stripping, vitest and a bundled build.
import type { Migration } from 'kysely/migration';

import * as core from './0001_core.ts';
import * as sessions from './0002_sessions.ts';
import * as admin from './0003_admin.ts';
import * as accessKeys from './0004_access_keys.ts';
import * as loginAuthenticators from './0005_login_authenticators.ts';
import * as ldapFederation from './0006_ldap_federation.ts';
import * as identityBrokering from './0007_identity_brokering.ts';
import * as roleGraphVersions from './0008_role_graph_versions.ts';

export const migrations: Record<string, Migration> = {
  '0001_core': core,
  '0002_sessions': sessions,
  '0003_admin': admin,
  '0004_access_keys': accessKeys,
  '0005_login_authenticators': loginAuthenticators,
  '0006_ldap_federation': ldapFederation,
  '0007_identity_brokering': identityBrokering,
  '0008_role_graph_versions': roleGraphVersions,
};
